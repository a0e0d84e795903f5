#!/usr/bin/env bash
# Rotation (Gidaris et al. 2018) on ImageNet with RevNet-50 x4: the best model of
# "Revisiting self-supervised visual representation learning" (Kolesnikov et al. 2019;
# google/revisiting-self-supervised config/rotation/imagenet.sh).
#
# Recipe: RevNet-50 v2, widening x4 (filters_factor 16 = width 4), every image fed at
# 0/90/180/270 degrees (batch 64 images = 256 network inputs), slim inception crop 224 +
# flip + colour distortion, SGD momentum 0.9, lr 0.1 per 256 images (0.025 at batch 64),
# 5 linear-warmup epochs, x0.1 at epochs 15 and 25, 35 epochs, L2 weight decay 1e-4.
# TPU: v3-8 as written (the repo's configs target 8 cores; the paper used 32-128 cores).
# Paper: 55.4% top-1 / 77.9% top-5 linear evaluation on ImageNet (pre-logits).
# Score the export with config/evaluation/linear.sh.
#
# Batch norm as the original's tf.layers defaults: momentum 0.99, epsilon 1e-3.
#
# Usage: bash config/rotation/imagenet.sh --workdir=gs://BUCKET/rotation \
#            --dataset_dir=gs://BUCKET/imagenet --tpu=local
set -euo pipefail
python -m tfssl.trainer \
  --method=rotation --model=revnet50 --dataset=imagenet \
  --config.model_width=4 --config.batch_size=64 --config.eval_batch_size=256 \
  --config.bn_momentum=0.99 --config.bn_epsilon=1e-3 \
  --config.crop_area_min=0.05 \
  --config.learning_rate=0.1 --config.lr_scaling=linear --config.lr_base_batch_size=256 \
  --config.warmup_epochs=5 --config.lr_schedule=piecewise --config.decay_epochs=15,25 \
  --config.train_epochs=35 --config.weight_decay=1e-4 --config.weight_decay_mode=l2 \
  --config.steps_per_loop=500 --config.checkpoint_every_steps=5000 \
  "$@"
