#!/usr/bin/env bash
# Supervised ResNet-50 v2 on all of ImageNet: the "Revisiting self-supervised" supervised
# reference (google/revisiting-self-supervised config/supervised/imagenet.sh).
#
# Recipe: ResNet-50 v2 (filters_factor 4 = width 1), batch 256, SGD momentum 0.9,
# lr 0.1 per 256 images, 5 warmup epochs, x0.1 at epochs 30/60/80, 90 epochs,
# L2 weight decay 1e-4, inception crop 224 + flip.
# TPU: v3-8 (the repo's configs target 8 cores). Expected: about 76% top-1 on the
# official validation set (standard ResNet-50; the repo itself reports no number).
#
# Usage: bash config/supervised/imagenet.sh --workdir=gs://BUCKET/sup_imagenet \
#            --dataset_dir=gs://BUCKET/imagenet --tpu=local
set -euo pipefail
python -m tfssl.trainer \
  --method=supervised --model=resnet50_v2 --dataset=imagenet --labels=all \
  --config.batch_size=256 --config.eval_batch_size=800 \
  --config.learning_rate=0.1 --config.lr_scaling=linear --config.lr_base_batch_size=256 \
  --config.warmup_epochs=5 --config.lr_schedule=piecewise --config.decay_epochs=30,60,80 \
  --config.train_epochs=90 --config.weight_decay=1e-4 --config.weight_decay_mode=l2 \
  --config.steps_per_loop=500 --config.checkpoint_every_steps=5000 \
  "$@"
