#!/usr/bin/env bash
# Linear evaluation of a SimCLR ImageNet pretraining (google-research/simclr README, the
# command for "fine-tuning a linear head on ImageNet").
#
# Recipe: `simclr` with train_mode=finetune from the pretraining's weights
# (--init_from=$PRETRAIN): the whole backbone frozen (fine_tune_after_block 4; frozen blocks
# stay exactly as pretrained), a new zero-initialised linear head on its 2048-d output
# (ft_proj_selector 0), all ImageNet train labels, inception crop (area 0.08-1) at 224 + flip
# only; ResNet-50 v1, per-replica batch norm (global_bn False); batch 4096, SimCLR's
# `momentum` optimizer (SGD with Nesterov momentum 0.9), lr 0.1 x 4096/256 = 1.6, no warmup,
# cosine to 0, 90 epochs (about 28k steps), L2 weight decay 1e-6 (the README's ImageNet
# command; its CIFAR-10 command uses 0). Then `--run_eval` gives top-1/top-5 on the official
# validation set (centre crop, 87.5%).
# TPU: v3-32, as the pretraining (the README names no size for this step).
# Expected: README: "around 64.5%" top-1 after config/simclr/imagenet_pretrain.sh (100
# epochs). SimCLRv2 README table: 71.7% for ResNet-50 1x (no SK) pretrained 800 epochs.
#
# Usage: PRETRAIN=gs://BUCKET/simclr_pretrain bash config/simclr/imagenet_linear_eval.sh \
#            --workdir=gs://BUCKET/simclr_linear --dataset_dir=gs://BUCKET/imagenet --tpu=NAME
# PRETRAIN: the workdir of config/simclr/imagenet_pretrain.sh (or its export/hub module).
# Results: WORKDIR/eval/results.json.
set -euo pipefail
: "${PRETRAIN:?set PRETRAIN=the workdir of config/simclr/imagenet_pretrain.sh}"
RUN=(--method=simclr --model=resnet50_v1 --dataset=imagenet --labels=all
     --init_from="$PRETRAIN"
     --config.train_mode=finetune --config.fine_tune_after_block=4
     --config.ft_proj_selector=0 --config.zero_init_logits_layer=true
     --config.num_proj_layers=3 --config.proj_out_dim=128 --config.image_size=224
     --config.batch_size=4096 --config.eval_batch_size=1024 --config.sync_bn=false
     --config.crop_area_min=0.08
     --config.optimizer=sgd --config.momentum=0.9 --config.nesterov=true
     --config.learning_rate=0.1 --config.lr_scaling=linear --config.lr_base_batch_size=256
     --config.warmup_epochs=0 --config.lr_schedule=cosine --config.train_epochs=90
     --config.weight_decay=1e-6 --config.weight_decay_mode=l2
     --config.steps_per_loop=250 --config.checkpoint_every_steps=2500)
python -m tfssl.trainer "${RUN[@]}" "$@"
python -m tfssl.trainer "${RUN[@]}" --run_eval "$@"
