#!/usr/bin/env bash
# Mix Of All Models (MOAM), step 3 of 3, on CIFAR-10 with 4000 labels: fine-tuning step 2's
# network on the 4000 labels only, the mechanics of config/moam/step3.sh (S4L paper,
# section 5; no config in the S4L repository). No published number.
#
# Recipe: `supervised` from step 2's weights (--init_from); WRN-28-2, batch 64, crops of at
# least 25% of the image + flip; the paper's fine-tuning values: lr 5e-4 (no batch scaling),
# no warmup, L2 weight decay 3e-3, x0.1 at a quarter, half and three quarters of the run;
# length: ImageNet's 20 labelled epochs x8 (as step 1's schedule): 160 epochs of the 4000
# labelled images (62 steps each, 9.9k steps, a tenth of step 1 as on ImageNet), x0.1 after
# epochs 40, 80 and 120. No Polyak averaging.
# Note: --labels=4000 with the default seed is the subset step 1 was trained on.
# Hardware: one GPU or a v3-8.
#
# Batch norm as the original's tf.layers defaults: momentum 0.99, epsilon 1e-3.
#
# Usage: STEP2=/tmp/moam2_cifar10 bash config/moam/cifar10_step3.sh \
#            --workdir=/tmp/moam3_cifar10 [--dataset_dir=DIR]
set -euo pipefail
: "${STEP2:?set STEP2=the workdir of config/moam/cifar10_step2.sh}"
python -m tfssl.trainer \
  --method=supervised --model=wide_resnet28_2 --dataset=cifar10 --labels=4000 \
  --init_from="$STEP2" \
  --config.model_width=1 --config.batch_size=64 --config.eval_batch_size=500 \
  --config.bn_momentum=0.99 --config.bn_epsilon=1e-3 --config.crop_area_min=0.25 \
  --config.learning_rate=5e-4 --config.lr_scaling=none \
  --config.warmup_epochs=0 --config.lr_schedule=piecewise --config.decay_epochs=40,80,120 \
  --config.train_epochs=160 --config.weight_decay=3e-3 --config.weight_decay_mode=l2 \
  --config.steps_per_loop=310 --config.checkpoint_every_steps=3100 \
  "$@"
