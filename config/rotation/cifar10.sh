#!/usr/bin/env bash
# Rotation on CIFAR-10 (32 px, CIFAR stem). The Revisiting repository has no CIFAR-10
# config; this uses its ImageNet recipe's mechanics with the CIFAR schedule of Gidaris et
# al. (RotNet): batch 128 images (512 rotated inputs), SGD momentum 0.9, lr 0.1 per 128,
# x0.2 at epochs 30, 60, 80, 100 epochs, weight decay 5e-4; RevNet-50 at width 1 (a
# laptop-GPU size; --config.model_width=4 for the paper's widest).
# Hardware: one GPU or a v3-8. No published linear-evaluation number for this exact
# setting; score it with: bash config/evaluation/linear.sh --hub_module=RUN/export/hub ...
#
# Batch norm as the original's tf.layers defaults: momentum 0.99, epsilon 1e-3.
#
# Usage: bash config/rotation/cifar10.sh --workdir=/tmp/rotation_cifar10 [--dataset_dir=DIR]
set -euo pipefail
python -m tfssl.trainer \
  --method=rotation --model=revnet50 --dataset=cifar10 \
  --config.model_width=1 --config.batch_size=128 --config.eval_batch_size=500 \
  --config.bn_momentum=0.99 --config.bn_epsilon=1e-3 \
  --config.crop_area_min=0.25 \
  --config.learning_rate=0.1 --config.lr_scaling=linear --config.lr_base_batch_size=128 \
  --config.warmup_epochs=0 --config.lr_schedule=piecewise --config.decay_epochs=30,60,80 \
  --config.decay_factor=0.2 --config.train_epochs=100 --config.weight_decay=5e-4 \
  --config.steps_per_loop=390 --config.checkpoint_every_steps=3900 \
  "$@"
