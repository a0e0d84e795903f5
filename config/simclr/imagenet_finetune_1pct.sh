#!/usr/bin/env bash
# Fine-tuning a SimCLR ImageNet pretraining on 1% of the labels (google-research/simclr
# README, the command to "fine-tune the whole network on ImageNet (1% of labels)"; SimCLRv2
# paper, section on semi-supervised fine-tuning).
#
# Recipe: `simclr` with train_mode=finetune from the pretraining's weights
# (--init_from=$PRETRAIN): nothing frozen (fine_tune_after_block -1); the backbone and the
# first layer of the 3-layer projection head (ft_proj_selector 1: SimCLRv2 fine-tunes from
# the middle of the head) plus a new zero-initialised linear head learn the 1% subset (TFDS
# imagenet2012_subset/1pct, 12,811 images) with inception crop (area 0.08-1) at 224 + flip
# only; ResNet-50 v1, cross-replica batch norm; batch 1024, LARS, lr 0.005 x sqrt(1024) =
# 0.16, no warmup, cosine to 0, 60 epochs of the labelled images (about 750 steps), no
# weight decay. Then `--run_eval` gives top-1/top-5 on the official validation set.
# TPU: v3-8 or larger (batch 1024; the README names no size for this step).
# Expected: SimCLRv2 README table, ResNet-50 1x without SK pretrained 800 epochs: 57.9%
# top-1. After the 100-epoch config/simclr/imagenet_pretrain.sh expect less (no published
# number for that pairing).
#
# Usage: PRETRAIN=gs://BUCKET/simclr_pretrain bash config/simclr/imagenet_finetune_1pct.sh \
#            --workdir=gs://BUCKET/simclr_ft1pct --dataset_dir=gs://BUCKET/imagenet --tpu=NAME
# PRETRAIN: the workdir of config/simclr/imagenet_pretrain.sh (or its export/hub module),
# or a SimCLR / FNC release converted by python -m tfssl.convert (then also pass
# --config.input_normalization=raw --config.stem_pool_padding=same: the release's network;
# for a 2x/4x or ResNet-101/152 release also --model and --config.model_width as its
# module_info.json says).
# Results: WORKDIR/eval/results.json.
set -euo pipefail
: "${PRETRAIN:?set PRETRAIN=the workdir of config/simclr/imagenet_pretrain.sh}"
RUN=(--method=simclr --model=resnet50_v1 --dataset=imagenet --labels=1pct
     --init_from="$PRETRAIN"
     --config.train_mode=finetune --config.fine_tune_after_block=-1
     --config.ft_proj_selector=1 --config.zero_init_logits_layer=true
     --config.num_proj_layers=3 --config.proj_out_dim=128 --config.image_size=224
     --config.batch_size=1024 --config.eval_batch_size=1024 --config.sync_bn=true
     --config.crop_area_min=0.08
     --config.optimizer=lars --config.learning_rate=0.005 --config.lr_scaling=sqrt
     --config.warmup_epochs=0 --config.lr_schedule=cosine --config.train_epochs=60
     --config.weight_decay=0 --config.weight_decay_mode=decoupled
     --config.steps_per_loop=50 --config.checkpoint_every_steps=250)
python -m tfssl.trainer "${RUN[@]}" "$@"
python -m tfssl.trainer "${RUN[@]}" --run_eval "$@"
