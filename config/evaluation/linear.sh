#!/usr/bin/env bash
# Linear evaluation of an exported module on every representation tap, as in "Revisiting
# self-supervised visual representation learning" (Kolesnikov et al. 2019): the pre-logits
# (`default`) and the intermediate blocks (`stem`, `block1`..`block4`) in one call, one
# results row per tap (`logits` of supervised modules is skipped).
#
# Original recipe (google/revisiting-self-supervised config/evaluation/rotation_or_exemplar.sh
# and jigsaw_or_relative_patch_location.sh, run by self_supervision/linear_eval.py): one
# linear softmax layer per tap on the frozen module, trained on ImageNet trainval (all of
# train) and tested on the official validation set; SGD momentum 0.9, batch 512, lr 0.1 per
# 256 images (0.2), no warmup, x0.1 at epochs 30 and 50, 70 epochs, no weight decay.
# Taps of more than 9000 values are max pooled (--pool_mode max, utils.adaptive_pool) with
# a square window = stride s = ceil(sqrt(H * W * C / 9000)), VALID padding, leaving at most
# 9000 values (ResNet-50 at 224 px: block3 14x14x1024 -> s=5 -> 2x2x1024); smaller taps are
# flattened whole. Training views: short side 256, random 224 crop, [-1, 1] (rotation,
# exemplar); patch models: short side 224, crop 192, 3x3 grid of 64-px patches, per-patch
# standardisation, each tap pooled per patch, then averaged over the 9 patches.
# Both scripts note: the reported results used batch 2048, x0.1 at epochs 480 and 500 and
# 520 epochs, on 4x4 TPUs (32 cores).
#
# What tfssl.eval_hub does differently: each tap is computed once per image on the module's
# eval view (centre 224 crop of the 256 short side at ImageNet scale; no training
# augmentation), pooled batch by batch, cached in host memory and standardised. Softmax
# classifiers are then fit on the cache (Adam, cosine decay, --config.linear_epochs=100 and at
# least --config.linear_min_steps=1000 steps, batch 1024), one per --config.linear_l2_values
# entry at once; the L2 strength is chosen on a held-out 10% of train and the classifier refit
# on all of train. Patch-model modules
# (jigsaw, relative patch location) export taps already averaged over the 9 patches, so the
# max pooling here comes after the patch average (the original pooled each patch first).
#
# Memory: a tap's cache holds (train + eval examples) x its pooled dims float32, up to
# ~48 GB on ImageNet at 9000 dims, and the linear fit keeps a few copies. eval_hub refuses
# up front above --config.feature_cache_max_gb=16: raise it on a big host, lower
# --config.pool_max_dims, or pick taps, e.g. --representation=default,block3.
#
# Usage: bash config/evaluation/linear.sh --hub_module=RUN/export/hub --workdir=EVAL \
#            [--dataset_dir=DIR] [more eval_hub flags, e.g. --config.pool_mode=avg]
# Flags given here come last, so they override the defaults below.
set -euo pipefail
python -m tfssl.eval_hub \
  --protocol=linear --representation=all \
  --config.pool_mode=max --config.pool_max_dims=9000 \
  "$@"
