#!/usr/bin/env bash
# Mix Of All Models (MOAM), step 1 of 3, on CIFAR-10 with 4000 labels (32 px, WRN-28-2):
# S4L-Rotation + VAT + entropy minimisation, the mechanics of config/moam/step1.sh on the
# CIFAR recipe shared by every S4L-family CIFAR script (see config/s4l/cifar10_rotation.sh
# for the reasons). S4L publishes no CIFAR numbers and no CIFAR config.
# Next: config/moam/cifar10_step2.sh, cifar10_step3.sh.
#
# Recipe: batch 64 labelled + 64 unlabelled images, each at 0/90/180/270 degrees; loss =
# 0.4 x rotation CE + 0.3 x class CE + 0.3 x VAT KL + 0.3 x entropy (VAT and entropy on the
# rotated unlabelled images), VAT epsilon 4.57 = S4L's 32 x 32/224 (S4L's epsilon is an L2
# norm over all pixels of a 224 image: the same per-pixel size on 32x32), 1 power
# iteration, xi 1e-2 (S4L: 1e-6, see below); lr 0.03 with no batch scaling, L2 weight
# decay 5e-4, crops of at least
# 25% of the image + flip; MOAM's ImageNet schedule with every epoch count x8: epochs count
# labelled images (62 steps each), 80 warmup epochs, x0.1 at 800/1200/1520, 1600 epochs
# (99k steps); Polyak averaging with a half-life of 8 epochs (ImageNet's 1, x8: the same
# share of the run). Batch norm per device (ImageNet's cross-replica BN was for one image
# per TPU core; add --config.sync_bn=true on several GPUs with small per-device batches).
# Hardware: one GPU or a v3-8. No published number for this setting.
#
# Batch norm as the original's tf.layers defaults: momentum 0.99, epsilon 1e-3.
#
# Usage: bash config/moam/cifar10_step1.sh --workdir=/tmp/moam1_cifar10 [--dataset_dir=DIR]
# vat_xi=1e-2, not S4L's 1e-6: a 1e-6 finite-difference step is below float32's resolution
# on the pixels (at 224 px no pixel changes), see tfssl/methods/vat.py.
set -euo pipefail
python -m tfssl.trainer \
  --method=moam --model=wide_resnet28_2 --dataset=cifar10 --labels=4000 \
  --config.model_width=1 --config.batch_size=64 --config.unsup_batch_size=64 \
  --config.eval_batch_size=500 --config.bn_momentum=0.99 --config.bn_epsilon=1e-3 \
  --config.sup_weight=0.3 --config.vat_weight=0.3 --config.entmin_weight=0.3 \
  --config.vat_epsilon=4.57 --config.vat_xi=1e-2 --config.vat_power_iterations=1 \
  --config.polyak_averaging=true --config.polyak_half_life_epochs=8 \
  --config.crop_area_min=0.25 \
  --config.learning_rate=0.03 --config.lr_scaling=none \
  --config.warmup_epochs=80 --config.lr_schedule=piecewise --config.decay_epochs=800,1200,1520 \
  --config.train_epochs=1600 --config.weight_decay=5e-4 --config.weight_decay_mode=l2 \
  --config.steps_per_loop=310 --config.checkpoint_every_steps=3100 \
  "$@"
