#!/usr/bin/env bash
# Pseudo-label on CIFAR-10 with 4000 labels (32 px, WRN-28-2), as S4L's "Pseudo-labels"
# baseline (config/pseudo_label/imagenet_10pct.sh). S4L publishes no CIFAR numbers and no
# CIFAR config.
#
# The three steps (the first two are not in this script):
#   1. a supervised model on the 4000 labels, on the same network and crops:
#      bash config/supervised/cifar10.sh --labels=4000 --model=wide_resnet28_2 \
#        --config.crop_area_min=0.25 --workdir=/tmp/sup4000_cifar10
#   2. its labels for all 50k train images (argmax on the whole image; the 4000 keep theirs):
#      python -m tfssl.label --hub_module=/tmp/sup4000_cifar10/export/hub \
#        --out=/tmp/sup4000_cifar10/pseudo_labels.json
#   3. this script: supervised training on all 50k images with those labels.
# Recipe: S4L's pseudo-label schedule as is, with epochs over all 50k images: batch 64
# (781 steps per epoch, the batch of our other S4L-family CIFAR scripts), lr 0.1 per 256
# (0.025), 5 warmup epochs, x0.1 at epochs 30/60/90, 100 epochs (78k steps, about as many
# as the 99k of the two-stream CIFAR scripts), L2 weight decay 5e-4 (FixMatch's WRN-28-2
# value; S4L's 1e-4 was for ImageNet-sized data), crops of at least 25% of the image + flip.
# Hardware: one GPU or a v3-8. No published number for this setting.
#
# Batch norm as the original's tf.layers defaults: momentum 0.99, epsilon 1e-3.
#
# Usage: LABELS=/tmp/sup4000_cifar10/pseudo_labels.json bash config/pseudo_label/cifar10.sh \
#            --workdir=/tmp/pseudo_label_cifar10 [--dataset_dir=DIR]
set -euo pipefail
: "${LABELS:?set LABELS=a pseudo-label file of CIFAR-10 train (python -m tfssl.label)}"
python -m tfssl.trainer \
  --method=pseudo_label --model=wide_resnet28_2 --dataset=cifar10 --pseudo_labels="$LABELS" \
  --config.model_width=1 --config.batch_size=64 --config.eval_batch_size=500 \
  --config.bn_momentum=0.99 --config.bn_epsilon=1e-3 --config.crop_area_min=0.25 \
  --config.learning_rate=0.1 --config.lr_scaling=linear --config.lr_base_batch_size=256 \
  --config.warmup_epochs=5 --config.lr_schedule=piecewise --config.decay_epochs=30,60,90 \
  --config.train_epochs=100 --config.weight_decay=5e-4 --config.weight_decay_mode=l2 \
  --config.steps_per_loop=781 --config.checkpoint_every_steps=7810 \
  "$@"
