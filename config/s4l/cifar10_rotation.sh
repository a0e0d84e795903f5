#!/usr/bin/env bash
# S4L-Rotation on CIFAR-10 with 4000 labels (32 px, WRN-28-2). S4L publishes no CIFAR
# numbers and no CIFAR config; this is its ImageNet recipe (config/s4l/imagenet_rotation_10pct.sh)
# on the usual CIFAR-10/4000 setting, with one CIFAR recipe shared by every S4L-family
# CIFAR script (config/s4l, config/vat, config/moam) so their results compare:
# batch 64 labelled + 64 unlabelled images (S4L's unsup_batch_mult 1; 64 labelled as
# FixMatch uses with WRN-28-2), lr 0.03 with no batch scaling (S4L's Rotation/VAT value,
# also FixMatch's at batch 64), L2 weight decay 5e-4 (FixMatch's WRN-28-2 value, as in
# our other CIFAR scripts), crops of at least 25% of the image + flip, and S4L's ImageNet
# schedule with every epoch count x8: epochs count labelled images (62 steps each), 40
# warmup epochs, x0.1 at 1120/1280/1440, 1600 epochs = 99k steps = about 127 passes over the
# 50k unlabelled images (S4L's ImageNet 10% runs make about 20; small-data SSL needs more).
# Loss as on ImageNet: CE on all 4 rotations of the labelled images + 1.0 x mean(rotation
# CE unlabelled, rotation CE labelled).
# Hardware: one GPU or a v3-8. No published number for this setting.
#
# Batch norm as the original's tf.layers defaults: momentum 0.99, epsilon 1e-3.
#
# Usage: bash config/s4l/cifar10_rotation.sh --workdir=/tmp/s4l_rotation_cifar10 [--dataset_dir=DIR]
set -euo pipefail
python -m tfssl.trainer \
  --method=s4l_rotation --model=wide_resnet28_2 --dataset=cifar10 --labels=4000 \
  --config.model_width=1 --config.batch_size=64 --config.unsup_batch_size=64 \
  --config.eval_batch_size=500 --config.bn_momentum=0.99 --config.bn_epsilon=1e-3 \
  --config.rotation_loss_weight=1.0 --config.crop_area_min=0.25 \
  --config.learning_rate=0.03 --config.lr_scaling=none \
  --config.warmup_epochs=40 --config.lr_schedule=piecewise --config.decay_epochs=1120,1280,1440 \
  --config.train_epochs=1600 --config.weight_decay=5e-4 --config.weight_decay_mode=l2 \
  --config.steps_per_loop=310 --config.checkpoint_every_steps=3100 \
  "$@"
