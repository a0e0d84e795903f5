#!/usr/bin/env bash
# SimCLR pretraining of a ResNet-50 on ImageNet (Chen et al. 2020, "A Simple Framework for
# Contrastive Learning of Visual Representations", and SimCLRv2, "Big Self-Supervised Models
# are Strong Semi-Supervised Learners"; google-research/simclr README, the ImageNet
# pretraining command).
#
# Recipe: ResNet-50 v1 (width 1), the last batch norm of every residual block starting at
# gamma 0 (tf2/resnet.py's init_zero, the default zero_init_residual); every image becomes
# two views (inception crop, area 0.08-1, resized bicubically to 224 as tf2/data_util.py
# does, the default crop_resize_method + flip + colour jitter of strength 1.0 with p 0.8 + grayscale p 0.2 +
# Gaussian blur p 0.5), one backbone pass over both; a 3-layer projection head (2048-2048-128,
# batch norm in every layer); NT-Xent at temperature 0.1 whose negatives are the views of the
# whole global batch; cross-replica batch norm (global_bn); batch 4096, LARS (momentum 0.9),
# lr 0.075 x sqrt(4096) = 4.8 (= 0.3 with linear scaling at this batch), 10 warmup epochs
# then cosine to 0, 100 epochs (about 31k steps), weight decay 1e-4 applied by LARS (not to
# batch norm, biases or the linear head). A linear head on the stop-gradient backbone output
# learns the labels at the same time (SimCLRv2's lineareval_while_pretraining): the
# `--run_eval` pass at the end reports its top-1/top-5, a quick check, not the linear
# evaluation protocol (that is config/simclr/imagenet_linear_eval.sh).
# TPU: v3-32 or larger (README: "a batch size of 4096 requires at least 32 TPUs"; 100 epochs
# take about 6 hours on 32 TPU v3 cores).
# Expected: README: this command followed by config/simclr/imagenet_linear_eval.sh gives
# "around 64.5%" top-1. For reference, the SimCLRv2 README table (ResNet-50 1x without SK,
# models pretrained for 800 epochs, not 100): fine-tune on 1% of labels 57.9%, on 10% 68.4%,
# linear evaluation 71.7% top-1.
# Next: config/simclr/imagenet_linear_eval.sh, imagenet_finetune_1pct.sh and
# imagenet_finetune_10pct.sh, with PRETRAIN=this run's workdir.
#
# Usage: bash config/simclr/imagenet_pretrain.sh --workdir=gs://BUCKET/simclr_pretrain \
#            --dataset_dir=gs://BUCKET/imagenet --tpu=NAME
set -euo pipefail
RUN=(--method=simclr --model=resnet50_v1 --dataset=imagenet --labels=all
     --config.train_mode=pretrain --config.image_size=224
     --config.batch_size=4096 --config.eval_batch_size=1024 --config.sync_bn=true
     --config.temperature=0.1 --config.num_proj_layers=3 --config.proj_out_dim=128
     --config.ft_proj_selector=0 --config.online_linear_head=true
     --config.color_jitter_strength=1.0 --config.use_blur=true --config.crop_area_min=0.08
     --config.optimizer=lars --config.learning_rate=0.075 --config.lr_scaling=sqrt
     --config.warmup_epochs=10 --config.lr_schedule=cosine --config.train_epochs=100
     --config.weight_decay=1e-4 --config.weight_decay_mode=decoupled
     --config.steps_per_loop=250 --config.checkpoint_every_steps=2500)
python -m tfssl.trainer "${RUN[@]}" "$@"
python -m tfssl.trainer "${RUN[@]}" --run_eval "$@"
