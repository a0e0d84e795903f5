#!/usr/bin/env bash
# Exemplar (Dosovitskiy et al. 2014) with a triplet loss on ImageNet, ResNet-50 v1 x3: the
# Revisiting paper's best Exemplar model (google/revisiting-self-supervised
# config/exemplar/imagenet.sh).
#
# Recipe: ResNet-50 v1, widening x3 (filters_factor 12 = width 3); 8 copies of every
# image, each an independent slim inception crop 224 + flip + colour distortion, the
# whole image gray with probability 0.66, per-image standardisation; 1000-d embedding,
# triplet loss margin 0.5 with batch-hard mining on Euclidean distances (Hermans et al.;
# the released code used semi-hard mining on squared distances:
# --config.triplet_mining=semi_hard); batch 64 images (512 crops), SGD momentum 0.9, lr 0.1
# per 256 images (0.025), 5 warmup epochs, x0.1 at 15 and 25, 35 epochs, weight decay 1e-4.
# TPU: v3-8 as written (the paper used 32-128 cores).
# Paper: 46.0% top-1 / 68.8% top-5 linear evaluation on ImageNet.
#
# Batch norm as the original's tf.layers defaults: momentum 0.99, epsilon 1e-3.
#
# Usage: bash config/exemplar/imagenet.sh --workdir=gs://BUCKET/exemplar \
#            --dataset_dir=gs://BUCKET/imagenet --tpu=local
set -euo pipefail
python -m tfssl.trainer \
  --method=exemplar --model=resnet50_v1 --dataset=imagenet \
  --config.model_width=3 --config.batch_size=64 --config.eval_batch_size=256 \
  --config.bn_momentum=0.99 --config.bn_epsilon=1e-3 \
  --config.exemplar_copies=8 --config.grayscale_probability=0.66 --config.embed_dim=1000 \
  --config.triplet_margin=0.5 --config.triplet_mining=batch_hard --config.crop_area_min=0.05 \
  --config.learning_rate=0.1 --config.lr_scaling=linear --config.lr_base_batch_size=256 \
  --config.warmup_epochs=5 --config.lr_schedule=piecewise --config.decay_epochs=15,25 \
  --config.train_epochs=35 --config.weight_decay=1e-4 --config.weight_decay_mode=l2 \
  --config.steps_per_loop=500 --config.checkpoint_every_steps=5000 \
  "$@"
