#!/usr/bin/env bash
# VAT on CIFAR-10 with 4000 labels (32 px, WRN-28-2), as S4L's VAT baseline
# (config/vat/imagenet_10pct.sh) on the CIFAR recipe shared by every S4L-family CIFAR
# script (see config/s4l/cifar10_rotation.sh for the reasons). S4L publishes no CIFAR
# numbers and no CIFAR config.
#
# Recipe: batch 64 labelled + 64 unlabelled images; loss = CE + 0.5 x VAT KL on labelled and
# unlabelled images, 1 power iteration, xi 1e-2 (S4L: 1e-6, see below), no entropy term;
# epsilon 5.71 = S4L's 40 x 32/224: S4L's epsilon is an L2 norm over all pixels of a 224 image, so a 32x32 image
# gets the same per-pixel size with epsilon x 32/224 (Miyato et al.'s CIFAR-10 value, 6.0,
# is in ZCA-whitened units, so not directly comparable); lr 0.03 with no
# batch scaling, L2 weight decay 5e-4, crops of at least 25% of the image + flip, S4L's
# ImageNet schedule with every epoch count x8: epochs count labelled images (62 steps each),
# 40 warmup epochs, x0.1 at 1120/1280/1440, 1600 epochs (99k steps).
# VAT + EntMin: add --method=vat_entmin (entropy weight 1.0).
# Hardware: one GPU or a v3-8. No published number for this setting.
#
# Batch norm as the original's tf.layers defaults: momentum 0.99, epsilon 1e-3.
#
# Usage: bash config/vat/cifar10.sh --workdir=/tmp/vat_cifar10 [--dataset_dir=DIR]
# vat_xi=1e-2, not S4L's 1e-6: a 1e-6 finite-difference step is below float32's resolution
# on the pixels (at 224 px no pixel changes), see tfssl/methods/vat.py.
set -euo pipefail
python -m tfssl.trainer \
  --method=vat --model=wide_resnet28_2 --dataset=cifar10 --labels=4000 \
  --config.model_width=1 --config.batch_size=64 --config.unsup_batch_size=64 \
  --config.eval_batch_size=500 --config.bn_momentum=0.99 --config.bn_epsilon=1e-3 \
  --config.vat_weight=0.5 --config.vat_epsilon=5.71 --config.vat_xi=1e-2 \
  --config.vat_power_iterations=1 --config.vat_on_labelled=true \
  --config.crop_area_min=0.25 \
  --config.learning_rate=0.03 --config.lr_scaling=none \
  --config.warmup_epochs=40 --config.lr_schedule=piecewise --config.decay_epochs=1120,1280,1440 \
  --config.train_epochs=1600 --config.weight_decay=5e-4 --config.weight_decay_mode=l2 \
  --config.steps_per_loop=310 --config.checkpoint_every_steps=3100 \
  "$@"
