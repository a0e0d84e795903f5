#!/usr/bin/env bash
# Supervised baseline on 10% of ImageNet labels: S4L's "Supervised" row
# (google-research/s4l config/supervised_imagenet_10p.sh).
#
# Recipe: ResNet-50 v2, batch 256 labelled images, SGD momentum 0.9, lr 0.1 per 256,
# 5 warmup epochs, x0.1 at epochs 140/160/180, 200 epochs (epochs count labelled images:
# about 100k steps), L2 weight decay 1e-3, inception crop 224 + flip, pixels in [-1, 1].
# Batch norm as the original's tf.layers defaults: momentum 0.99, epsilon 1e-3.
# TPU: v3-8. Paper: 80.43% top-5; S4L repo reproduction: 56.36% top-1 / 80.42% top-5.
# Note: --labels=10pct is TFDS's imagenet2012_subset list (128,116 images, as SimCLR/FNC/PAWS
# use); S4L's own list has 128,000 images (128 per class): pass it with --labels=file:PATH.
#
# Usage: bash config/supervised/imagenet_10pct.sh --workdir=gs://BUCKET/sup10 \
#            --dataset_dir=gs://BUCKET/imagenet --tpu=local
set -euo pipefail
python -m tfssl.trainer \
  --method=supervised --model=resnet50_v2 --dataset=imagenet --labels=10pct \
  --config.batch_size=256 --config.eval_batch_size=800 \
  --config.learning_rate=0.1 --config.lr_scaling=linear --config.lr_base_batch_size=256 \
  --config.warmup_epochs=5 --config.lr_schedule=piecewise --config.decay_epochs=140,160,180 \
  --config.train_epochs=200 --config.weight_decay=1e-3 --config.weight_decay_mode=l2 \
  --config.bn_momentum=0.99 --config.bn_epsilon=1e-3 \
  --config.steps_per_loop=500 --config.checkpoint_every_steps=5000 \
  "$@"
