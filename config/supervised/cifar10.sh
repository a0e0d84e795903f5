#!/usr/bin/env bash
# Supervised ResNet-50 v2 (CIFAR stem: 3x3 stride-1 first conv, no max-pool) on CIFAR-10.
#
# None of the source repositories publishes a supervised CIFAR-10 recipe; this is the
# common one: batch 128, SGD momentum 0.9, lr 0.1 per 128 images, cosine decay, 1 warmup
# epoch, 200 epochs, L2 weight decay 5e-4, random-resized crop 32 + flip.
# Hardware: one GPU or a v3-8. Expected: about 95% top-1 on the test set (typical for a
# ResNet-50 at 32 px; not measured here).
#
# Usage: bash config/supervised/cifar10.sh --workdir=/tmp/sup_cifar10 [--dataset_dir=DIR]
set -euo pipefail
python -m tfssl.trainer \
  --method=supervised --model=resnet50_v2 --dataset=cifar10 --labels=all \
  --config.batch_size=128 --config.eval_batch_size=500 \
  --config.learning_rate=0.1 --config.lr_scaling=linear --config.lr_base_batch_size=128 \
  --config.warmup_epochs=1 --config.lr_schedule=cosine \
  --config.train_epochs=200 --config.weight_decay=5e-4 --config.weight_decay_mode=l2 \
  --config.steps_per_loop=390 --config.checkpoint_every_steps=3900 \
  "$@"
