#!/usr/bin/env bash
# Suave on ImageNet with 1% of the labels: semi-supervised training from a self-supervised
# ResNet-50, then evaluation of its class-prototype classifier (Fini et al., "Semi-supervised
# learning made simple with self-supervised clustering", CVPR 2023, arXiv 2306.07483;
# pietroastolfi/suave-daino suave/scripts/train_1perc.sh (the values), suave/main_suave.py
# (flag defaults, LARS, schedule, augmentations), src/multicropdataset.py, the README's
# single-node command. The script's values are per GPU; global values here.)
# train_1perc.sh is train_10perc.sh with labels_perc 1: the same recipe on the 1% subset.
#
# Labels: the 1% subset (TFDS imagenet2012_subset/1pct, 12,811 images, 12-13 per class).
# suave-daino's subsets/1percent.txt is byte for byte the same file (sha256 71e82a48...,
# SimCLR's imagenet_subsets/1percent.txt), so --labels=1pct is the paper's subset; passing
# that file as --labels=file:PATH selects the same images. The unlabelled stream is the
# whole train split.
# Starting point: the original starts from SwAV's 800-epoch ResNet-50
# (swav_800ep_pretrain.pth.tar, --swav_init_ckpt) with the prototypes dropped and, with
# init_proj false, a new projection head. INIT is that model retrained: the training of
# config/swav/imagenet.sh (its $WORKDIR/train, or one of its export/hub/STEP modules), the
# same published recipe (swav_800ep_pretrain.sh) run with tfssl's swav method. --init_from
# loads its backbone only; projection and class prototypes start new, as in the original.
# Suave's accuracy rests on that run: check its linear top-1 against SwAV's published 75.3%
# first. Or start from the released checkpoint itself: INIT=the module of
# `python -m tfssl.convert --from=swav --checkpoint=swav_800ep_pretrain.pth.tar
# --model=resnet50_v1 --out=DIR`, and pass --config.input_normalization=imagenet.
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
# predicted by the other 9 crops at temperature 0.1. Labelled mixup/CutMix (mixup_lab
# "extend", src/mixup.py's CollateMixup): the 128 augmented labelled images gain a mixed
# copy of themselves. One draw per step: CutMix with probability 0.5 (switch prob), else
# mixup, lam ~ Beta(1, 1) (alpha 1 for both). Each image is mixed with its mirror (image i
# with image 15 - i) within its group of 16, the original's per-GPU labelled batch
# (mixup_lab_group_size 16): mixup blends the two, CutMix pastes one box of the partner
# (lam corrected to the area kept). The copy's soft label is lam * its one-hot + (1 - lam) *
# the partner's. The copies join the labelled images in the global crops' pass (and
# batch-norm batch). Labelled loss: cross-entropy of the prototype scores / 0.1 with label
# smoothing 0.01 (as torch smooths soft targets: 0.99 * label + 0.01 / 1000), the mean over
# the 256 clean and mixed rows. The two losses are weighted by their share of the step's
# crops, the mixed copies counted as labelled crops as in the original: 256 / 2816 (= 1/11)
# and 2560 / 2816. LARS (momentum 0.9, eta 0.001; every
# parameter, biases and batch norm included, gets the trust ratio and the 1e-6 weight decay,
# as suave's LARS with exclude_bias_n_norm False), lr 0.4 with no batch scaling, 5 warmup
# epochs from 0, then cosine to 0.001 (x0.0025), 100 epochs of the unlabelled stream (5004
# steps each, about 500k steps). Prototypes learn from the first step.
# Evaluation: `--run_eval` scores the prototype classifier (scores / temperature, the
# `logits` output; what the original validates each epoch) on the 50k validation images,
# top-1/top-5, centre crop. Then, ours and not the paper's: soft nearest neighbours
# (python -m tfssl.eval_hub --protocol=snn) of the `proj` embedding to the 1% subset's,
# temperature 0.1: a classifier-free check that uses only the labelled subset. It runs where
# the script runs (eval_hub takes no --tpu): 63k ResNet-50 forward passes, best on a GPU.
# Fine-tuning afterwards: config/suave/finetune_imagenet_1pct.sh with INIT=$WORKDIR/train.
# Not reproduced (tfssl has no such feature): the recipe's mixup of unlabelled images
# (mixup_unlab "globals": global crop 1 of each unlabelled image mixed, as above, with crop 2
# of its mirrored partner, an extra view kept out of the SwAV loss and the queue that
# predicts lam * q1 + (1 - lam) * the partner's q2, q being the Sinkhorn targets). It
# matters little: the original weighs that term by its count of mixed views (1 per GPU),
# not images, i.e. 1 / 353 = 0.28% of the loss, so without it the labelled and unlabelled
# shares are 0.0909 and 0.9091 here against 0.0907 and 0.9065 there. It also puts those 256
# mixed crops into the original's 224 px pass (and its batch-norm batch), absent here.
# Not as the original, outside the recipe's values: no online evaluation heads
# (multihead_eval: detached linear classifiers on the backbone and projection layers, for
# monitoring only); float32 instead of fp16 (use_fp16; --config.precision=mixed_bfloat16 on
# TPU is the nearest); the colour jitter is SimCLR's TF implementation, not torchvision's.
# Hardware: the original ran on 1 node x 8 GPUs (README). Here: a core must hold whole
# mixup groups (16 labelled images), so the 8 groups run on 1, 2, 4 or 8 replicas (more stop
# the run with an error). A TPU v3-8 carries the original's per-GPU load (16 + 16 mixed
# labelled + 32 unlabelled images, i.e. 352 crops, per core), for which float32 is likely
# short of memory (--config.precision=mixed_bfloat16 may fit). On a v3-32 (4 + 4 mixed
# labelled + 8 unlabelled images, 88 crops, per core) add --config.mixup_lab_group_size=4:
# partners then mirror within 4 images instead of 16, pairs as random (the labelled stream
# is shuffled) but not the original's. Batch norm is cross-replica, so its batch stays the
# global one. The batches and the queue (3840 = 15 x 256) split evenly over 8, 16, 32 or 64
# replicas.
# Expected: the suave-daino README gives no accuracy numbers; the paper's Suave ResNet-50
# results start from SwAV's released 800-epoch model, of which INIT is a retraining with the
# same recipe: they are the target, within the SwAV run's own gap to SwAV's 75.3%.
#
# Usage: WORKDIR=gs://BUCKET/suave_1pct INIT=gs://BUCKET/swav/train \
#            bash config/suave/imagenet_1pct.sh --dataset_dir=gs://BUCKET/imagenet --tpu=NAME
# Training goes to $WORKDIR/train; results: $WORKDIR/train/eval/results.json (prototype
# classifier) and $WORKDIR/snn/results.json (soft-NN). Other flags go to both trainer
# commands; of them, only --dataset_dir reaches tfssl.eval_hub.
set -euo pipefail
: "${WORKDIR:?set WORKDIR=a directory for the training and evaluation runs}"
: "${INIT:?set INIT=the training of config/swav/imagenet.sh (its WORKDIR/train, or an export/hub module)}"
EVAL_FLAGS=()
for arg in "$@"; do
  case "$arg" in
    --workdir=*) echo "set WORKDIR=DIR instead of --workdir (several runs go under it)" >&2; exit 2 ;;
    --dataset_dir=*) EVAL_FLAGS+=("$arg") ;;
  esac
done
RUN=(--method=suave --model=resnet50_v1 --dataset=imagenet --labels=1pct
     --workdir="$WORKDIR/train" --init_from="$INIT"
     --config.init_projection=false --config.image_size=224
     --config.batch_size=128 --config.unsup_batch_size=256 --config.eval_batch_size=1024
     --config.sync_bn=true
     --config.crop_area_min=0.08 --config.labelled_color_strength=0.5
     --config.num_local_views=8 --config.local_crop_size=96
     --config.global_crop_area=0.14,1.0 --config.local_crop_area=0.05,0.14
     --config.color_jitter_unlabelled=true
     --config.temperature=0.1 --config.label_smoothing=0.01
     --config.mixup_lab=true --config.mixup_lab_type=extend --config.mixup_lab_group_size=16
     --config.sinkhorn_epsilon=0.05 --config.sinkhorn_iterations=3
     --config.proj_hidden_dim=2048 --config.proj_out_dim=128
     --config.queue_length=3840 --config.queue_start_epoch=0
     --config.freeze_prototypes_steps=0
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
  --labels=1pct --representation=proj --config.snn_temperature=0.1 \
  --workdir="$WORKDIR/snn" "${EVAL_FLAGS[@]}"
