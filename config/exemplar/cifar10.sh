#!/usr/bin/env bash
# Exemplar with a triplet loss on CIFAR-10 (32 px, CIFAR stem). The Revisiting repository
# has no CIFAR-10 config: this is its ImageNet recipe (8 copies, gray p 0.66, 1000-d
# embedding, margin 0.5, batch-hard mining) on ResNet-50 v1 at width 1, with a CIFAR
# schedule: batch 128 images (1024 crops), lr 0.1 per 256, 5 warmup epochs, x0.1 at
# epochs 120 and 160, 200 epochs, weight decay 5e-4, crops of at least 25% of the image.
# Hardware: one GPU or a v3-8. No published number for this setting; score it with
# config/evaluation/linear.sh.
#
# Batch norm as the original's tf.layers defaults: momentum 0.99, epsilon 1e-3.
#
# Usage: bash config/exemplar/cifar10.sh --workdir=/tmp/exemplar_cifar10 [--dataset_dir=DIR]
set -euo pipefail
python -m tfssl.trainer \
  --method=exemplar --model=resnet50_v1 --dataset=cifar10 \
  --config.model_width=1 --config.batch_size=128 --config.eval_batch_size=500 \
  --config.bn_momentum=0.99 --config.bn_epsilon=1e-3 \
  --config.exemplar_copies=8 --config.grayscale_probability=0.66 --config.embed_dim=1000 \
  --config.triplet_margin=0.5 --config.triplet_mining=batch_hard --config.crop_area_min=0.25 \
  --config.learning_rate=0.1 --config.lr_scaling=linear --config.lr_base_batch_size=256 \
  --config.warmup_epochs=5 --config.lr_schedule=piecewise --config.decay_epochs=120,160 \
  --config.train_epochs=200 --config.weight_decay=5e-4 \
  --config.steps_per_loop=390 --config.checkpoint_every_steps=3900 \
  "$@"
