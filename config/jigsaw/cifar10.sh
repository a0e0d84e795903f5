#!/usr/bin/env bash
# Jigsaw puzzles (Noroozi & Favaro 2016) on CIFAR-10. The Revisiting repository has no
# CIFAR-10 config: this is its ImageNet recipe scaled to 32-px images: the image resized
# to 45 px, a random 39-px crop, 3x3 cells of 13 px, 10-px patches (jitter 3, the
# ImageNet ratio of gap to patch), gray p 0.66, per-patch standardisation, ResNet-50 v1 at
# width 1 with the CIFAR stem; batch 128 images, lr 0.1 per 256, 5 warmup epochs, x0.1 at
# epochs 120 and 160, 200 epochs, weight decay 5e-4 (head 5e-4).
# Hardware: one GPU or a v3-8. No published number for this setting; score it with
# config/evaluation/linear.sh.
#
# Batch norm as the original's tf.layers defaults: momentum 0.99, epsilon 1e-3. Patches of
# 10 px go through the CIFAR stem (3x3/1, no pool; --config.patch_net=false), not the
# ImageNet patch net's 7x7/1 conv + max-pool, which would leave them 2x2 by stage 3.
#
# Usage: bash config/jigsaw/cifar10.sh --workdir=/tmp/jigsaw_cifar10 [--dataset_dir=DIR]
set -euo pipefail
python -m tfssl.trainer \
  --method=jigsaw --model=resnet50_v1 --dataset=cifar10 \
  --config.model_width=1 --config.batch_size=128 --config.eval_batch_size=500 \
  --config.bn_momentum=0.99 --config.bn_epsilon=1e-3 \
  --config.patch_net=false --config.patch_size=10 --config.patch_jitter=3 \
  --config.grayscale_probability=0.66 \
  --config.embed_dim=1000 --config.head_hidden=4096 --config.head_dropout=0.5 \
  --config.head_weight_decay=5e-4 --config.num_permutations=100 --config.perm_subset_size=8 \
  --config.learning_rate=0.1 --config.lr_scaling=linear --config.lr_base_batch_size=256 \
  --config.warmup_epochs=5 --config.lr_schedule=piecewise --config.decay_epochs=120,160 \
  --config.train_epochs=200 --config.weight_decay=5e-4 \
  --config.steps_per_loop=390 --config.checkpoint_every_steps=3900 \
  "$@"
