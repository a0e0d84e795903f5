#!/usr/bin/env bash
# Suave on ImageNet with 10% of the labels: semi-supervised training from a self-supervised
# ResNet-50, then evaluation of its class-prototype classifier (Fini et al., "Semi-supervised
# learning made simple with self-supervised clustering", CVPR 2023, arXiv 2306.07483;
# pietroastolfi/suave-daino suave/scripts/train_10perc.sh (the values), suave/main_suave.py
# (flag defaults, LARS, schedule, augmentations), src/multicropdataset.py, the README's
# single-node command. The script's values are per GPU; global values here.)
#
# Labels: the 10% subset (TFDS imagenet2012_subset/10pct, 128,116 images, 128-129 per class).
# suave-daino's subsets/10percent.txt is byte for byte the same file (sha256 6d09de11...,
# SimCLR's imagenet_subsets/10percent.txt), so --labels=10pct is the paper's subset; passing
# that file as --labels=file:PATH selects the same images. The unlabelled stream is the
# whole train split.
# Starting point: the original starts from SwAV's 800-epoch ResNet-50
# (swav_800ep_pretrain.pth.tar, --swav_init_ckpt) with the prototypes dropped and, with
# init_proj false, a new projection head. tfssl has no SwAV method and cannot read PyTorch
# checkpoints: INIT is a tfssl self-supervised run of the same --model, e.g. the workdir of
# config/simclr/imagenet_pretrain.sh (or one of its export/hub/STEP modules). --init_from
# loads its backbone only; projection and class prototypes start new, as in the original.
# Expect lower accuracy than from SwAV's 800 epochs.
# Training: ResNet-50 v1 (SwAV's torchvision ResNet-50). Every step: 128 labelled images (16
# per GPU on 8 GPUs; random-resized crop at 224, area 0.08-1, flip, colour jitter
# 0.4/0.4/0.4/0.1 with p 0.8, grayscale p 0.2) and 256 unlabelled images (32 per GPU), each as
# 2 global crops (224 px, area 0.14-1) and 8 local ones (96 px, area 0.05-0.14), all flipped,
# SwAV's colour distortion (jitter 0.8/0.8/0.8/0.2 with p 0.8, grayscale p 0.2) and blur
# p 0.5. The labelled images and the global crops share one backbone pass, the local crops
# get another; cross-replica batch norm (SyncBatchNorm in the original). Head: fc(2048,
# 2048)-BN-ReLU-fc(2048, 128), L2-normalised, then 1000 unit-norm class prototypes (one per
# class, renormalised after every update). Unlabelled loss: swapped prediction, each global
# crop's Sinkhorn-Knopp assignment (epsilon 0.05, 3 iterations, over every replica's crops
# and a queue of the last 3840 global-crop embeddings, used once full, from the first epoch)
# predicted by the other 9 crops at temperature 0.1. Labelled loss: cross-entropy of the
# prototype scores / 0.1 with label smoothing 0.01. The two are weighted by their share of
# the step's crops: 128 / 2688 and 2560 / 2688. LARS (momentum 0.9, eta 0.001; every
# parameter, biases and batch norm included, gets the trust ratio and the 1e-6 weight decay,
# as suave's LARS with exclude_bias_n_norm False), lr 0.4 with no batch scaling, 5 warmup
# epochs from 0, then cosine to 0.001 (x0.0025), 100 epochs of the unlabelled stream (5004
# steps each, about 500k steps). Prototypes learn from the first step.
# Evaluation: `--run_eval` scores the prototype classifier (scores / temperature, the
# `logits` output; what the original validates each epoch) on the 50k validation images,
# top-1/top-5, centre crop. Then, ours and not the paper's: soft nearest neighbours
# (python -m tfssl.eval_hub --protocol=snn) of the `proj` embedding to the 10% subset's,
# temperature 0.1: a classifier-free check that uses only the labelled subset. It runs where
# the script runs (eval_hub takes no --tpu): 178k ResNet-50 forward passes, best on a GPU.
# Fine-tuning afterwards: config/suave/finetune_imagenet_10pct.sh with INIT=$WORKDIR/train.
# Not reproduced (tfssl has no such features): mixup/cutmix (alpha 1, switch prob 0.5) on
# the labelled images (mixup_lab, "extend": the batch gains a mixed copy of itself) and on
# the unlabelled global crops (mixup_unlab, globals), and the share of the loss those mixed
# images carried (the original counts the mixed labelled copies in the labelled share, about
# 256 / 2816 of the loss against 128 / 2688 here); the online evaluation heads (multihead_eval:
# detached linear classifiers on the backbone and projection layers, for monitoring only);
# fp16 training (use_fp16; float32 here, --config.precision=mixed_bfloat16 on TPU is the
# nearest). The colour jitter is SimCLR's TF implementation, not torchvision's.
# Hardware: the original ran on 1 node x 8 GPUs (README). Here: TPU v3-32 (32 cores: 4
# labelled + 8 unlabelled images, i.e. 84 crops, per core; batch norm is cross-replica, so
# its batch stays the global one) or larger; in float32 a v3-8 (16 + 32 per core, as per GPU
# in the original) is likely short of memory. The batches and the queue (3840 = 15 x 256)
# split evenly over 8, 16, 32 or 64 replicas.
# Expected: the suave-daino README gives no accuracy numbers; the paper reports Suave
# ResNet-50 results from the SwAV 800-epoch start (not comparable with a shorter tfssl
# pretraining).
#
# Usage: WORKDIR=gs://BUCKET/suave_10pct INIT=gs://BUCKET/simclr_pretrain \
#            bash config/suave/imagenet_10pct.sh --dataset_dir=gs://BUCKET/imagenet --tpu=NAME
# Training goes to $WORKDIR/train; results: $WORKDIR/train/eval/results.json (prototype
# classifier) and $WORKDIR/snn/results.json (soft-NN). Other flags go to both trainer
# commands; of them, only --dataset_dir reaches tfssl.eval_hub.
set -euo pipefail
: "${WORKDIR:?set WORKDIR=a directory for the training and evaluation runs}"
: "${INIT:?set INIT=a tfssl self-supervised resnet50_v1 run (workdir or export/hub module)}"
EVAL_FLAGS=()
for arg in "$@"; do
  case "$arg" in
    --workdir=*) echo "set WORKDIR=DIR instead of --workdir (several runs go under it)" >&2; exit 2 ;;
    --dataset_dir=*) EVAL_FLAGS+=("$arg") ;;
  esac
done
RUN=(--method=suave --model=resnet50_v1 --dataset=imagenet --labels=10pct
     --workdir="$WORKDIR/train" --init_from="$INIT"
     --config.init_projection=false --config.image_size=224
     --config.batch_size=128 --config.unsup_batch_size=256 --config.eval_batch_size=1024
     --config.sync_bn=true
     --config.crop_area_min=0.08 --config.labelled_color_strength=0.5
     --config.num_local_views=8 --config.local_crop_size=96
     --config.global_crop_area=0.14,1.0 --config.local_crop_area=0.05,0.14
     --config.color_jitter_unlabelled=true
     --config.temperature=0.1 --config.label_smoothing=0.01
     --config.sinkhorn_epsilon=0.05 --config.sinkhorn_iterations=3
     --config.proj_hidden_dim=2048 --config.proj_out_dim=128
     --config.queue_length=3840 --config.freeze_prototypes_steps=0
     --config.optimizer=lars --config.momentum=0.9 --config.nesterov=false
     --config.lars_eta=0.001 --config.weight_decay_skip_bias_and_bn=false
     --config.learning_rate=0.4 --config.lr_scaling=none
     --config.warmup_epochs=5 --config.warmup_start_factor=0
     --config.lr_schedule=cosine --config.end_lr_factor=0.0025 --config.train_epochs=100
     --config.weight_decay=1e-6 --config.weight_decay_mode=decoupled
     --config.steps_per_loop=500 --config.checkpoint_every_steps=5000)
python -m tfssl.trainer "${RUN[@]}" "$@"
python -m tfssl.trainer "${RUN[@]}" --run_eval "$@"
python -m tfssl.eval_hub --hub_module="$WORKDIR/train/export/hub" --protocol=snn \
  --labels=10pct --representation=proj --config.snn_temperature=0.1 \
  --workdir="$WORKDIR/snn" "${EVAL_FLAGS[@]}"
