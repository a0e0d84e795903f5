#!/usr/bin/env bash
# Supervised baseline on 1% of ImageNet labels: S4L's "Supervised (1%)" row
# (google-research/s4l config/supervised_imagenet_1p.sh).
#
# Recipe: ResNet-50 v2, batch 256 labelled images, SGD momentum 0.9, lr 0.01 per 256,
# 5 warmup epochs, x0.1 at epochs 700/800/900, 1000 epochs of the labelled images,
# L2 weight decay 1e-2 (strong: the set is tiny), inception crop (area 0.05-1, TF's
# default, which S4L's inception_crop uses) 224 + flip + S4L's HSV noise (`hsvnoise` of its
# preprocessing string: hue shifted by U(-0.1, 0.1), saturation and value each
# 2^U(-0.5, 0.5) x s^(2^U(-2, 2)) + U(-0.1, 0.1)), dataset cached.
# Batch norm as the original's tf.layers defaults: momentum 0.99, epsilon 1e-3.
# TPU: v3-8. Paper: 48.43% top-5; S4L repo reproduction: 25.09% top-1 / 48.31% top-5.
# Note: --labels=1pct is TFDS's imagenet2012_subset list (12,811 images); S4L's own list
# has 13,000 (13 per class): pass it with --labels=file:PATH.
#
# Usage: bash config/supervised/imagenet_1pct.sh --workdir=gs://BUCKET/sup1 \
#            --dataset_dir=gs://BUCKET/imagenet --tpu=local
set -euo pipefail
python -m tfssl.trainer \
  --method=supervised --model=resnet50_v2 --dataset=imagenet --labels=1pct \
  --config.batch_size=256 --config.eval_batch_size=800 \
  --config.learning_rate=0.01 --config.lr_scaling=linear --config.lr_base_batch_size=256 \
  --config.warmup_epochs=5 --config.lr_schedule=piecewise --config.decay_epochs=700,800,900 \
  --config.train_epochs=1000 --config.weight_decay=1e-2 --config.weight_decay_mode=l2 \
  --config.bn_momentum=0.99 --config.bn_epsilon=1e-3 \
  --config.crop_area_min=0.05 --config.hsv_noise=true \
  --config.cache_dataset=true --config.steps_per_loop=50 --config.checkpoint_every_steps=5000 \
  "$@"
