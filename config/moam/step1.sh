#!/usr/bin/env bash
# Mix Of All Models (MOAM), step 1 of 3, on 10% of ImageNet labels: S4L-Rotation + VAT +
# entropy minimisation in one network (Zhai et al. 2019, section 5; google-research/s4l
# config/moam_step_1.sh, task rotation_vat). Steps 2 and 3: config/moam/step2.sh, step3.sh.
#
# Recipe: ResNet-50 v2 x4 (filters_factor 16 = width 4), cross-replica batch norm; every step
# a batch of 128 labelled images and 128 images of all of train (unsup_batch_mult 1), each at
# 0/90/180/270 degrees; loss = 0.4 x rotation CE (mean of unlabelled and labelled) + 0.3 x
# class CE on the 4 rotations of the labelled images + 0.3 x VAT KL + 0.3 x entropy, VAT
# and entropy on the rotated unlabelled images (the config sets apply_vat_to_labeled, which
# rotation_vat ignores), VAT epsilon 32 on the [-1, 1] pixels, 1 power iteration, xi 1e-2
# (S4L: 1e-6, see below);
# inception crop (area 0.05-1) 224 + flip; SGD momentum 0.9, lr 0.2 per 256 (0.1 at batch
# 128), 10 warmup epochs, x0.1 at epochs 100/150/190, 200 epochs (epochs count labelled
# images: about 200k steps), L2 weight decay 2e-4; evaluation and export use the Polyak
# average of the weights (half-life one epoch).
# TPU: v3-128 (one labelled + one unlabelled image per core, hence cross-replica BN).
# Paper: 88.80% top-5; S4L repo reproduction: 69.46% top-1 / 88.70% top-5 (class logits
# averaged over the 4 rotations: our rotation_averaged_top1/5).
# Note: --labels=10pct is TFDS's imagenet2012_subset list (128,116 images, as SimCLR/FNC/PAWS
# use); S4L's own list has 128,000 images (128 per class): pass it with --labels=file:PATH.
#
# Batch norm as the original's tf.layers defaults: momentum 0.99, epsilon 1e-3.
#
# Usage: bash config/moam/step1.sh --workdir=gs://BUCKET/moam1 \
#            --dataset_dir=gs://BUCKET/imagenet --tpu=NAME
# vat_xi=1e-2, not S4L's 1e-6: a 1e-6 finite-difference step is below float32's resolution
# on the pixels (at 224 px no pixel changes), see tfssl/methods/vat.py.
set -euo pipefail
python -m tfssl.trainer \
  --method=moam --model=resnet50_v2 --dataset=imagenet --labels=10pct \
  --config.model_width=4 --config.batch_size=128 --config.unsup_batch_size=128 \
  --config.eval_batch_size=1024 --config.sync_bn=true \
  --config.bn_momentum=0.99 --config.bn_epsilon=1e-3 \
  --config.sup_weight=0.3 --config.vat_weight=0.3 --config.entmin_weight=0.3 \
  --config.vat_epsilon=32.0 --config.vat_xi=1e-2 --config.vat_power_iterations=1 \
  --config.polyak_averaging=true --config.polyak_half_life_epochs=1.0 \
  --config.crop_area_min=0.05 \
  --config.learning_rate=0.2 --config.lr_scaling=linear --config.lr_base_batch_size=256 \
  --config.warmup_epochs=10 --config.lr_schedule=piecewise --config.decay_epochs=100,150,190 \
  --config.train_epochs=200 --config.weight_decay=2e-4 --config.weight_decay_mode=l2 \
  --config.steps_per_loop=1000 --config.checkpoint_every_steps=10000 \
  "$@"
