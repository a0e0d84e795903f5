#!/usr/bin/env bash
# Linear evaluation of an FNC ImageNet pretraining (google-research/fnc README, the command
# for "fine-tuning the linear head (linear eval)").
#
# Recipe: `fnc` with train_mode=finetune from the pretraining's weights
# (--init_from=$PRETRAIN; support views and false negatives play no part in fine-tuning):
# the whole backbone frozen (fine_tune_after_block 4; frozen blocks stay exactly as
# pretrained), a new zero-initialised linear head on its 2048-d output (ft_proj_selector 0),
# all ImageNet train labels, inception crop of area 0.2-1 (FNC's fine-tuning crop, data.py)
# at 224 + flip only; ResNet-50 v1, cross-replica batch norm (global_bn True); batch 1024,
# SGD with Nesterov momentum 0.9 (the `momentum` optimizer), lr 0.005 x sqrt(1024) = 0.16,
# no warmup, cosine to 0, 90 epochs (about 113k steps), no weight decay. Then `--run_eval`
# gives top-1/top-5 on the official validation set (centre crop, 87.5%).
# TPU: v3-8 or larger (batch 1024; the README names no size).
# Published (FNC README): 74.4% top-1 / 91.8% top-5, from the released pretraining (momentum
# memory bank and RandAugment: config/fnc/imagenet_pretrain.sh as it is).
#
# Usage: PRETRAIN=gs://BUCKET/fnc_pretrain bash config/fnc/imagenet_linear_eval.sh \
#            --workdir=gs://BUCKET/fnc_linear --dataset_dir=gs://BUCKET/imagenet --tpu=NAME
# PRETRAIN: the workdir of config/fnc/imagenet_pretrain.sh (or its export/hub module).
# Results: WORKDIR/eval/results.json.
set -euo pipefail
: "${PRETRAIN:?set PRETRAIN=the workdir of config/fnc/imagenet_pretrain.sh}"
RUN=(--method=fnc --model=resnet50_v1 --dataset=imagenet --labels=all
     --init_from="$PRETRAIN"
     --config.train_mode=finetune --config.fine_tune_after_block=4
     --config.ft_proj_selector=0 --config.zero_init_logits_layer=true
     --config.num_proj_layers=3 --config.proj_out_dim=128 --config.image_size=224
     --config.batch_size=1024 --config.eval_batch_size=1024 --config.sync_bn=true
     --config.crop_area_min=0.2
     --config.optimizer=sgd --config.momentum=0.9 --config.nesterov=true
     --config.learning_rate=0.005 --config.lr_scaling=sqrt
     --config.warmup_epochs=0 --config.lr_schedule=cosine --config.train_epochs=90
     --config.weight_decay=0 --config.weight_decay_mode=l2
     --config.steps_per_loop=500 --config.checkpoint_every_steps=5000)
python -m tfssl.trainer "${RUN[@]}" "$@"
python -m tfssl.trainer "${RUN[@]}" --run_eval "$@"
