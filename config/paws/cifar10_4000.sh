#!/usr/bin/env bash
# PAWS on CIFAR-10 with 4000 labels: pretraining, SuNCEt fine-tuning, soft nearest-neighbour
# evaluation (Assran et al., "Semi-Supervised Learning of Visual Features by
# Non-Parametrically Predicting View Assignments with Support Samples", ICCV 2021,
# arXiv 2104.13963; facebookresearch/suncet configs/paws/cifar10_train.yaml and
# configs/paws/cifar10_snn.yaml, src/paws_train.py, src/snn_fine_tune.py, snn_eval.py; the
# README's single-GPU CIFAR-10 commands. The configs' values are per GPU; one GPU, so they
# are global here).
#
# Pretraining: WRN-28-2 as suncet's src/wide_resnet.py builds it (wide_resnet28_2_suncet:
# ReLU, convs with biases and PyTorch's initialisation, the stride on a block's second
# conv, shortcuts from the block's input, final batch norm with torch momentum 0.99,
# CIFAR-10 mean/std standardisation; 128-d output). Every step: a support set of 10 classes x 64
# labelled images x 2 views (1,280 crops) and 256 unlabelled images (the whole train
# split), each as 2 large crops (32 px, area 0.75-1) and 6 small ones (18 px, area
# 0.3-0.75); every crop flipped, colour jitter of strength 0.5 with p 0.8, solarize p 0.2,
# equalize p 0.2 (suncet's CIFAR colour recipe). Projection head fc-BN-ReLU-fc-BN-ReLU-fc,
# 128 wide and 128-d out (proj dims 0 = the backbone width), no prediction head. Each
# view's prediction: softmax of its cosine similarities to the support crops / 0.1 times
# their label-smoothed (0.1) one-hot labels; targets from the other large view, sharpened
# with T 0.25 (small views: the mean of the two); plus mean-entropy maximisation (weight
# 1). LARS (momentum 0.9, trust 0.001, biases and batch norm excluded), lr 3.2 with no
# batch scaling, 10 warmup epochs from 0.8 (x0.25), then cosine to 0.032 (x0.01), 600
# epochs of the unlabelled stream (195 steps each, about 117k steps), weight decay 1e-6
# applied by LARS.
# SuNCEt fine-tuning (train_mode=suncet, --init_from the pretraining): support batches
# only, 10 classes x 64 images x 2 views; each crop's soft-NN prediction over the other
# crops of the support set (temperature 0.1, no label smoothing) learns its class; every
# batch norm in inference mode; LARS lr 0.1, no batch scaling, no warmup, cosine to 0.01
# (x0.1), no weight decay, 30 epochs of 4000 / 640 = 6 steps (180 steps), as suncet counts;
# its views are flipped centre crops (suncet's basic cifar10_fine_tune augmentation).
# Evaluation: soft nearest neighbours (python -m tfssl.eval_hub --protocol=snn, suncet's
# snn_eval.py): each test image's class distribution is the softmax of its cosine
# similarities / 0.1 to the labelled subset's embeddings (the `proj` output, z = h without a
# prediction head; centre view) times their one-hot labels; top-1 on the 10k test images.
# Done for the fine-tuned module (the paper's number) and, for reference, the pretrained one.
#
# Labels: by default 400 images of each class drawn with seed 0 (--labels=400_per_class).
# The paper's split is facebookresearch/suncet cifar10_subsets/spc.4000_split.152.txt
# (4000 integer indices into the CIFAR-10 train order; data_seed 152 in both configs):
# download it and pass LABELS_FILE=PATH, which becomes --labels=file:PATH for every command
# (the integers are matched to our CIFAR example ids by number).
# Hardware: one GPU (suncet README).
# Expected: PAWS paper, CIFAR-10 with 4000 labels, WRN-28-2: 96.0% top-1. PAWS-TF
# (sayakpaul/PAWS-TF, a TF2 port, one V100) reports 73.46% soft-NN top-1 after 50 pretraining
# epochs and 10 fine-tuning epochs, and says it should be around 96.0% with the original
# schedule. The suncet README gives no CIFAR-10 number.
#
# Usage: WORKDIR=/tmp/paws_cifar10 [LABELS_FILE=spc.4000_split.152.txt] \
#            bash config/paws/cifar10_4000.sh [--dataset_dir=DIR]
# The pretraining goes to $WORKDIR/pretrain, the fine-tuning to $WORKDIR/suncet, the soft-NN
# results to $WORKDIR/snn/results.json (fine-tuned) and $WORKDIR/snn_pretrain/results.json.
# Other flags go to both trainer commands; of them, only --dataset_dir reaches tfssl.eval_hub.
set -euo pipefail
: "${WORKDIR:?set WORKDIR=a directory for the pretraining, fine-tuning and evaluation runs}"
EVAL_FLAGS=()
for arg in "$@"; do
  case "$arg" in
    --workdir=*) echo "set WORKDIR=DIR instead of --workdir (several runs go under it)" >&2; exit 2 ;;
    --dataset_dir=*) EVAL_FLAGS+=("$arg") ;;
  esac
done
if [[ -n "${LABELS_FILE:-}" ]]; then
  LABELS="file:$LABELS_FILE"
else
  LABELS=400_per_class
fi
PRETRAIN_RUN=(--method=paws --model=wide_resnet28_2_suncet --dataset=cifar10 --labels="$LABELS"
              --workdir="$WORKDIR/pretrain"
              --config.train_mode=pretrain --config.image_size=32
              --config.batch_size=256 --config.sync_bn=true
              --config.support_classes=10 --config.support_images_per_class=64
              --config.support_views=2 --config.num_local_views=6 --config.multicrop=cifar
              --config.temperature=0.1 --config.sharpen_temperature=0.25
              --config.me_max_weight=1.0 --config.label_smoothing=0.1
              --config.color_jitter_strength=0.5
              --config.proj_hidden_dim=0 --config.proj_out_dim=0 --config.use_pred_head=false
              --config.optimizer=lars --config.momentum=0.9 --config.nesterov=false
              --config.learning_rate=3.2 --config.lr_scaling=none
              --config.warmup_epochs=10 --config.warmup_start_factor=0.25
              --config.lr_schedule=cosine --config.end_lr_factor=0.01 --config.train_epochs=600
              --config.weight_decay=1e-6 --config.weight_decay_mode=decoupled
              --config.steps_per_loop=195 --config.checkpoint_every_steps=1950)
SUNCET_RUN=(--method=paws --model=wide_resnet28_2_suncet --dataset=cifar10 --labels="$LABELS"
            --workdir="$WORKDIR/suncet" --init_from="$WORKDIR/pretrain"
            --config.train_mode=suncet --config.image_size=32 --config.sync_bn=true
            --config.support_classes=10 --config.support_images_per_class=64
            --config.support_views=2 --config.multicrop=cifar
            --config.temperature=0.1 --config.label_smoothing=0
            --config.color_jitter_strength=0.5
            --config.proj_hidden_dim=0 --config.proj_out_dim=0 --config.use_pred_head=false
            --config.optimizer=lars --config.momentum=0.9 --config.nesterov=false
            --config.learning_rate=0.1 --config.lr_scaling=none
            --config.warmup_epochs=0 --config.lr_schedule=cosine --config.end_lr_factor=0.1
            --config.train_epochs=30
            --config.weight_decay=0 --config.weight_decay_mode=decoupled
            --config.steps_per_loop=6 --config.checkpoint_every_steps=60)
python -m tfssl.trainer "${PRETRAIN_RUN[@]}" "$@"
python -m tfssl.trainer "${SUNCET_RUN[@]}" "$@"
python -m tfssl.eval_hub --hub_module="$WORKDIR/suncet/export/hub" --protocol=snn \
  --labels="$LABELS" --representation=proj --config.snn_temperature=0.1 \
  --workdir="$WORKDIR/snn" "${EVAL_FLAGS[@]}"
python -m tfssl.eval_hub --hub_module="$WORKDIR/pretrain/export/hub" --protocol=snn \
  --labels="$LABELS" --representation=proj --config.snn_temperature=0.1 \
  --workdir="$WORKDIR/snn_pretrain" "${EVAL_FLAGS[@]}"
