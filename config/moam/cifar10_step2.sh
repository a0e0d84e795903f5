#!/usr/bin/env bash
# Mix Of All Models (MOAM), step 2 of 3, on CIFAR-10 with 4000 labels: retraining on
# step 1's pseudo-labels, the mechanics of config/moam/step2.sh (S4L paper, section 5; no
# config in the S4L repository) on config/moam/cifar10_step1.sh. No published number.
#
# Recipe: (a) step 1's module labels all 50k train images with the argmax of its class
# logits averaged over 5 crops (32 px of the image resized to 37) x 4 rotations; the 4000
# labelled images keep their true labels. (b) `moam` is trained again as in step 1 (WRN-28-2,
# batch 64 + 64, all losses 0.4/0.3/0.3/0.3, VAT epsilon 4.57, lr 0.03, weight decay 5e-4,
# Polyak averaging) except: it starts from step 1's weights (--init_from), every image has
# its pseudo-label (--pseudo_labels, labels=all), so an epoch is all 50k images (781 steps).
# Schedule: ImageNet's step-2 epoch counts x6: 108 epochs (84k steps, about step 1's length,
# as on ImageNet: 180k vs 200k steps), x0.1 after epochs 36 and 72, 6 warmup epochs (4.7k
# steps, step 1's warmup length), Polyak half-life 6 epochs.
# Hardware: one GPU or a v3-8.
#
# Batch norm as the original's tf.layers defaults: momentum 0.99, epsilon 1e-3.
#
# Usage: STEP1=/tmp/moam1_cifar10 bash config/moam/cifar10_step2.sh \
#            --workdir=/tmp/moam2_cifar10 [--dataset_dir=DIR]
# The labels go to $STEP1/pseudo_labels_crops_rotations.json; set LABELS=FILE to train on an
# existing file instead (e.g. when resuming), skipping the labelling.
# vat_xi=1e-2, not S4L's 1e-6: a 1e-6 finite-difference step is below float32's resolution
# on the pixels (at 224 px no pixel changes), see tfssl/methods/vat.py.
set -euo pipefail
: "${STEP1:?set STEP1=the workdir of config/moam/cifar10_step1.sh}"
if [[ -z "${LABELS:-}" ]]; then
  LABELS="$STEP1/pseudo_labels_crops_rotations.json"
  python -m tfssl.label \
    --hub_module="$STEP1/export/hub" --average_over=crops_rotations --keep_true_labels \
    --out="$LABELS"
fi
python -m tfssl.trainer \
  --method=moam --model=wide_resnet28_2 --dataset=cifar10 \
  --init_from="$STEP1" --pseudo_labels="$LABELS" \
  --config.model_width=1 --config.batch_size=64 --config.unsup_batch_size=64 \
  --config.eval_batch_size=500 --config.bn_momentum=0.99 --config.bn_epsilon=1e-3 \
  --config.sup_weight=0.3 --config.vat_weight=0.3 --config.entmin_weight=0.3 \
  --config.vat_epsilon=4.57 --config.vat_xi=1e-2 --config.vat_power_iterations=1 \
  --config.polyak_averaging=true --config.polyak_half_life_epochs=6 \
  --config.crop_area_min=0.25 \
  --config.learning_rate=0.03 --config.lr_scaling=none \
  --config.warmup_epochs=6 --config.lr_schedule=piecewise --config.decay_epochs=36,72 \
  --config.train_epochs=108 --config.weight_decay=5e-4 --config.weight_decay_mode=l2 \
  --config.steps_per_loop=781 --config.checkpoint_every_steps=7810 \
  "$@"
