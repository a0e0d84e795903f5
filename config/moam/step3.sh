#!/usr/bin/env bash
# Mix Of All Models (MOAM), step 3 of 3, on 10% of ImageNet labels: fine-tuning step 2's
# network on the original labels only (Zhai et al. 2019, section 5). The S4L repository has
# no config for steps 2 and 3; this follows the paper's text on top of config/moam/step2.sh.
#
# Recipe: `supervised` (cross-entropy on the 10% labelled images, unrotated) starting from
# step 2's weights (--init_from; its Polyak averages); ResNet-50 v2 x4, cross-replica BN,
# inception crop (area 0.05-1) 224 + flip; SGD momentum 0.9, lr 5e-4 (no batch scaling),
# no warmup, x0.1 every 5 epochs (after 5, 10, 15), 20 epochs of the labelled images, L2
# weight decay 3e-3 (all from the paper). Not given in the paper, kept from steps 1-2:
# batch 128, batch-norm settings; no Polyak averaging (the paper names none for the
# fine-tuning; --config.polyak_averaging=true to add it).
# TPU: v3-128. Paper: 91.23% top-5 (the repo gives no reproduction of steps 2 and 3).
# Note: --labels=10pct must be the subset step 1 was trained on.
#
# Batch norm as the original's tf.layers defaults: momentum 0.99, epsilon 1e-3.
#
# Usage: STEP2=gs://BUCKET/moam2 bash config/moam/step3.sh --workdir=gs://BUCKET/moam3 \
#            --dataset_dir=gs://BUCKET/imagenet --tpu=NAME
set -euo pipefail
: "${STEP2:?set STEP2=the workdir of config/moam/step2.sh}"
python -m tfssl.trainer \
  --method=supervised --model=resnet50_v2 --dataset=imagenet --labels=10pct \
  --init_from="$STEP2" \
  --config.model_width=4 --config.batch_size=128 --config.eval_batch_size=1024 \
  --config.sync_bn=true --config.bn_momentum=0.99 --config.bn_epsilon=1e-3 \
  --config.crop_area_min=0.05 \
  --config.learning_rate=5e-4 --config.lr_scaling=none \
  --config.warmup_epochs=0 --config.lr_schedule=piecewise --config.decay_epochs=5,10,15 \
  --config.train_epochs=20 --config.weight_decay=3e-3 --config.weight_decay_mode=l2 \
  --config.steps_per_loop=1000 --config.checkpoint_every_steps=10000 \
  "$@"
