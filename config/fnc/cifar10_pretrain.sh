#!/usr/bin/env bash
# FNC on CIFAR-10: pretraining, then linear evaluation. FNC publishes no CIFAR recipe or
# number; this recipe is ours: SimCLR's CIFAR-10 recipe (config/simclr/cifar10_pretrain.sh,
# from the SimCLR README) plus FNC's ImageNet false-negative settings (support_size 8,
# fn_topk 10, fn_threshold 0.7, fn_strategy attraction; see config/fnc/imagenet_pretrain.sh),
# in-batch (no momentum memory bank, no RandAugment), so that it compares with SimCLR's.
#
# Pretraining: ResNet-18 v1 with the CIFAR stem (3x3 stride-1 first conv, no max-pool:
# automatic at 32 px); 2 + 8 support views per image (inception crop, area 0.08-1, at 32 +
# flip + colour jitter of strength 0.5 with p 0.8 + grayscale p 0.2, no blur); 3-layer
# projection head to 128-d, temperature 0.5; per image the top 10 candidate negatives whose
# largest cosine similarity to its views exceeds 0.7 become extra positives; cross-replica
# batch norm; batch 512, LARS, lr 1.0 x 512/256 = 2.0 (linear scaling, as SimCLR's CIFAR
# command; FNC's default would be sqrt), 10 warmup epochs then cosine to 0, 1000 epochs
# (about 98k steps), weight decay 1e-4 applied by LARS.
# Linear evaluation, as SimCLR's CIFAR-10 command: train_mode=finetune from the
# pretraining, the backbone frozen (fine_tune_after_block 4), a new zero-initialised linear
# head on its 512-d output, all 50k labels, crop (area 0.08-1) + flip; per-replica batch
# norm; batch 512, SGD with Nesterov momentum 0.9, lr 0.1 x 512/256 = 0.2, no warmup, cosine
# to 0, 100 epochs, no weight decay. `--run_eval` then gives top-1/top-5 on the 10k test
# images.
# Hardware: one GPU (each step runs 10 x 512 views: about 5x SimCLR's CIFAR step).
# No published number; SimCLR's CIFAR-10 recipe gives "around 91%" (SimCLR README).
#
# Usage: WORKDIR=/tmp/fnc_cifar10 bash config/fnc/cifar10_pretrain.sh [--dataset_dir=DIR]
# The pretraining goes to $WORKDIR/pretrain, the linear evaluation to $WORKDIR/linear_eval
# (results: $WORKDIR/linear_eval/eval/results.json). Other flags go to every command.
set -euo pipefail
: "${WORKDIR:?set WORKDIR=a directory for the pretraining and linear evaluation runs}"
for arg in "$@"; do
  case "$arg" in
    --workdir=*) echo "set WORKDIR=DIR instead of --workdir (two runs go under it)" >&2; exit 2 ;;
  esac
done
PRETRAIN_RUN=(--method=fnc --model=resnet18_v1 --dataset=cifar10 --labels=all
              --workdir="$WORKDIR/pretrain"
              --config.train_mode=pretrain --config.image_size=32
              --config.batch_size=512 --config.eval_batch_size=512 --config.sync_bn=true
              --config.temperature=0.5 --config.num_proj_layers=3 --config.proj_out_dim=128
              --config.support_size=8 --config.fn_topk=10 --config.fn_threshold=0.7
              --config.use_randaugment=false --config.memory_multiplier=0
              --config.fn_strategy=attraction
              --config.ft_proj_selector=0 --config.online_linear_head=true
              --config.color_jitter_strength=0.5 --config.use_blur=false
              --config.crop_area_min=0.08
              --config.optimizer=lars --config.learning_rate=1.0 --config.lr_scaling=linear
              --config.lr_base_batch_size=256
              --config.warmup_epochs=10 --config.lr_schedule=cosine --config.train_epochs=1000
              --config.weight_decay=1e-4 --config.weight_decay_mode=decoupled
              --config.steps_per_loop=200 --config.checkpoint_every_steps=10000)
LINEAR_RUN=(--method=fnc --model=resnet18_v1 --dataset=cifar10 --labels=all
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
