#!/usr/bin/env bash
# SimCLR on CIFAR-10: pretraining, then linear evaluation (google-research/simclr README,
# the single-GPU CIFAR-10 pretraining and linear-head commands).
#
# Pretraining: ResNet-18 v1 with the CIFAR stem (3x3 stride-1 first conv, no max-pool:
# automatic at 32 px); two views per image (inception crop, area 0.08-1, at 32 + flip +
# colour jitter of strength 0.5 with p 0.8 + grayscale p 0.2, no blur); 3-layer projection
# head to 128-d, NT-Xent at temperature 0.5; cross-replica batch norm (global_bn, the
# default; one GPU has one replica anyway); batch 512, LARS, lr 1.0 x 512/256 = 2.0, 10
# warmup epochs (run.py's default) then cosine to 0, 1000 epochs (about 98k steps), weight
# decay 1e-4 applied by LARS.
# Linear evaluation: train_mode=finetune from the pretraining, the backbone frozen
# (fine_tune_after_block 4), a new zero-initialised linear head on its 512-d output, all
# 50k labels, crop (area 0.08-1) + flip; per-replica batch norm (global_bn False); batch
# 512, SimCLR's `momentum` optimizer (SGD with Nesterov momentum 0.9), lr 0.1 x 512/256 =
# 0.2, no warmup, cosine to 0, 100 epochs, no weight decay. `--run_eval` then gives
# top-1/top-5 on the 10k test images.
# Hardware: one GPU (README). Expected: README: "around 91%" top-1 for the two commands.
#
# Usage: WORKDIR=/tmp/simclr_cifar10 bash config/simclr/cifar10_pretrain.sh [--dataset_dir=DIR]
# The pretraining goes to $WORKDIR/pretrain, the linear evaluation to $WORKDIR/linear_eval
# (results: $WORKDIR/linear_eval/eval/results.json). Other flags go to every command.
set -euo pipefail
: "${WORKDIR:?set WORKDIR=a directory for the pretraining and linear evaluation runs}"
for arg in "$@"; do
  case "$arg" in
    --workdir=*) echo "set WORKDIR=DIR instead of --workdir (two runs go under it)" >&2; exit 2 ;;
  esac
done
PRETRAIN_RUN=(--method=simclr --model=resnet18_v1 --dataset=cifar10 --labels=all
              --workdir="$WORKDIR/pretrain"
              --config.train_mode=pretrain --config.image_size=32
              --config.batch_size=512 --config.eval_batch_size=512 --config.sync_bn=true
              --config.temperature=0.5 --config.num_proj_layers=3 --config.proj_out_dim=128
              --config.ft_proj_selector=0 --config.online_linear_head=true
              --config.color_jitter_strength=0.5 --config.use_blur=false
              --config.crop_area_min=0.08
              --config.optimizer=lars --config.learning_rate=1.0 --config.lr_scaling=linear
              --config.lr_base_batch_size=256
              --config.warmup_epochs=10 --config.lr_schedule=cosine --config.train_epochs=1000
              --config.weight_decay=1e-4 --config.weight_decay_mode=decoupled
              --config.steps_per_loop=200 --config.checkpoint_every_steps=10000)
LINEAR_RUN=(--method=simclr --model=resnet18_v1 --dataset=cifar10 --labels=all
            --workdir="$WORKDIR/linear_eval" --init_from="$WORKDIR/pretrain"
            --config.train_mode=finetune --config.fine_tune_after_block=4
            --config.ft_proj_selector=0 --config.zero_init_logits_layer=true
            --config.num_proj_layers=3 --config.proj_out_dim=128 --config.image_size=32
            --config.batch_size=512 --config.eval_batch_size=512 --config.sync_bn=false
            --config.crop_area_min=0.08
            --config.optimizer=sgd --config.momentum=0.9 --config.nesterov=true
            --config.learning_rate=0.1 --config.lr_scaling=linear --config.lr_base_batch_size=256
            --config.warmup_epochs=0 --config.lr_schedule=cosine --config.train_epochs=100
            --config.weight_decay=0 --config.weight_decay_mode=l2
            --config.steps_per_loop=200 --config.checkpoint_every_steps=2000)
python -m tfssl.trainer "${PRETRAIN_RUN[@]}" "$@"
python -m tfssl.trainer "${LINEAR_RUN[@]}" "$@"
python -m tfssl.trainer "${LINEAR_RUN[@]}" --run_eval "$@"
