#!/usr/bin/env bash
# Mix Of All Models (MOAM), step 2 of 3, on 10% of ImageNet labels: retraining on step 1's
# pseudo-labels (Zhai et al. 2019, section 5). The S4L repository has no config for steps 2
# and 3; this follows the paper's text on top of config/moam/step1.sh.
#
# Recipe: (a) step 1's module labels every ImageNet train image with the argmax of its class
# logits averaged over 5 crops (4 corners + centre, 224 of 256) x 4 rotations; the labelled
# 10% keep their true labels (as S4L's pseudo-label files do). (b) `moam` is trained again
# exactly as in step 1 (ResNet-50 v2 x4, cross-replica BN, batch 128 + 128, all losses
# 0.4/0.3/0.3/0.3, VAT epsilon 32, lr 0.2 per 256 = 0.1, L2 weight decay 2e-4, Polyak
# averaging) except: it starts from step 1's weights (--init_from), every image has a label,
# its pseudo-label (--pseudo_labels, labels=all), so an epoch is now all 1,281,167 images:
# 18 epochs (about 180k steps), x0.1 after epochs 6 and 12. Warmup (not given in the paper;
# step 1's 10 epochs cannot precede a decay at 6): 1 epoch = 10k steps, as long as step 1's
# warmup, to ramp the lr from step 1's final 1e-4 back to 0.1. The Polyak half-life stays
# one epoch (now 10k steps).
# TPU: v3-128. Paper: 89.96% top-5 (the repo gives no reproduction of steps 2 and 3).
#
# Batch norm as the original's tf.layers defaults: momentum 0.99, epsilon 1e-3.
#
# Usage: STEP1=gs://BUCKET/moam1 bash config/moam/step2.sh --workdir=gs://BUCKET/moam2 \
#            --dataset_dir=gs://BUCKET/imagenet --tpu=NAME
# The labels go to $STEP1/pseudo_labels_crops_rotations.json; set LABELS=FILE to train on an
# existing file instead (e.g. when resuming), skipping the labelling.
# vat_xi=1e-2, not S4L's 1e-6: a 1e-6 finite-difference step is below float32's resolution
# on the pixels (at 224 px no pixel changes), see tfssl/methods/vat.py.
set -euo pipefail
: "${STEP1:?set STEP1=the workdir of config/moam/step1.sh}"
if [[ -z "${LABELS:-}" ]]; then
  LABELS="$STEP1/pseudo_labels_crops_rotations.json"
  python -m tfssl.label \
    --hub_module="$STEP1/export/hub" --average_over=crops_rotations --keep_true_labels \
    --out="$LABELS"
fi
python -m tfssl.trainer \
  --method=moam --model=resnet50_v2 --dataset=imagenet \
  --init_from="$STEP1" --pseudo_labels="$LABELS" \
  --config.model_width=4 --config.batch_size=128 --config.unsup_batch_size=128 \
  --config.eval_batch_size=1024 --config.sync_bn=true \
  --config.bn_momentum=0.99 --config.bn_epsilon=1e-3 \
  --config.sup_weight=0.3 --config.vat_weight=0.3 --config.entmin_weight=0.3 \
  --config.vat_epsilon=32.0 --config.vat_xi=1e-2 --config.vat_power_iterations=1 \
  --config.polyak_averaging=true --config.polyak_half_life_epochs=1.0 \
  --config.crop_area_min=0.05 \
  --config.learning_rate=0.2 --config.lr_scaling=linear --config.lr_base_batch_size=256 \
  --config.warmup_epochs=1 --config.lr_schedule=piecewise --config.decay_epochs=6,12 \
  --config.train_epochs=18 --config.weight_decay=2e-4 --config.weight_decay_mode=l2 \
  --config.steps_per_loop=1000 --config.checkpoint_every_steps=10000 \
  "$@"
