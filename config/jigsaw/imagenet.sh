#!/usr/bin/env bash
# Jigsaw puzzles (Noroozi & Favaro 2016) on ImageNet, ResNet-50 v1 x2: the Revisiting paper's
# best model for the task (google/revisiting-self-supervised config/jigsaw/imagenet.sh).
#
# Recipe: ResNet-50 v1, widening x2 (filters_factor 8 = width 2), one backbone shared by
# all patches; image resized to 292x292, gray with probability 0.66, random 255x255 crop,
# 3x3 grid of 85-px cells, one 64-px patch at a random offset in each (jitter 21, so
# neighbours are separated by a random gap), per-patch standardisation; 1000-d patch
# embedding; the 9 patch embeddings concatenated in the order of one of 100 permutations (our
# deterministic maximal-Hamming set, offline; Revisiting's README downloads Noroozi's
# permutations_100_max.bin from MehdiNoroozi/JigsawPuzzleSolver, which
# --config.permutations_file=PATH reads), 8 distinct permutations per image per step, 100-way classification; head fc 4096 -
# BN - ReLU - dropout 0.5 - fc with weight decay 5e-4; batch 128 images, SGD momentum 0.9,
# lr 0.1 per 256 images (0.05), 5 warmup epochs, x0.1 at 15 and 25, 35 epochs, weight
# decay 1e-4. The exported module takes whole images and averages each representation over
# the 3x3 grid of central 64-px patches (the paper's evaluation).
# TPU: v3-8 as written (the paper used 32-128 cores).
# Paper: 44.6% top-1 / 68.0% top-5 linear evaluation on ImageNet.
#
# Batch norm as the original's tf.layers defaults: momentum 0.99, epsilon 1e-3. The patch
# net (`patch_net`) downsamples as the original's (root_conv_stride=1, strides=(2, 2, 1)):
# 7x7/1 root conv + 3x3/2 max-pool, last stage stride 1, so a 64-px patch ends at 8x8.
#
# Usage: bash config/jigsaw/imagenet.sh --workdir=gs://BUCKET/jigsaw \
#            --dataset_dir=gs://BUCKET/imagenet --tpu=local
set -euo pipefail
python -m tfssl.trainer \
  --method=jigsaw --model=resnet50_v1 --dataset=imagenet \
  --config.model_width=2 --config.batch_size=128 --config.eval_batch_size=256 \
  --config.bn_momentum=0.99 --config.bn_epsilon=1e-3 \
  --config.patch_net=true --config.patch_size=64 --config.patch_jitter=21 \
  --config.grayscale_probability=0.66 \
  --config.embed_dim=1000 --config.head_hidden=4096 --config.head_dropout=0.5 \
  --config.head_weight_decay=5e-4 --config.num_permutations=100 --config.perm_subset_size=8 \
  --config.learning_rate=0.1 --config.lr_scaling=linear --config.lr_base_batch_size=256 \
  --config.warmup_epochs=5 --config.lr_schedule=piecewise --config.decay_epochs=15,25 \
  --config.train_epochs=35 --config.weight_decay=1e-4 --config.weight_decay_mode=l2 \
  --config.steps_per_loop=500 --config.checkpoint_every_steps=5000 \
  "$@"
