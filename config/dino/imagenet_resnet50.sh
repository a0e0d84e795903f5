#!/usr/bin/env bash
# DINO pretraining of a ResNet-50 on ImageNet, then k-NN and linear evaluation of the exported
# teacher (Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV
# 2021, arXiv 2104.14294; facebookresearch/dino snapshot 7c446df: main_dino.py (flag
# defaults, DINOLoss, schedules, augmentation, SyncBatchNorm), utils.py (LARS,
# cosine_scheduler, get_params_groups), vision_transformer.py (DINOHead), eval_knn.py,
# eval_linear.py and the README: model table and "ResNet-50 and other convnets trainings").
# Batch flags there are per GPU; global values here.
#
# RECIPE picks one of two published settings (default released):
#   released  the released ResNet-50 (dino_resnet50_pretrain*.pth, the README's table). Its
#             values are the README-linked args.txt
#             (dl.fbaipublicfiles.com/dino/dino_resnet50_pretrain/args.txt), which could not
#             be read where this script was written: they come from third-party copies of it
#             that agree (one config elsewhere sums it up as "51*80=4080, 0.3 lr, 0.0048
#             min_lr, 800 epochs"); check them against the file itself.
#   readme    the README's command (main_dino.py --arch resnet50 --optimizer sgd --lr 0.03
#             --weight_decay 1e-4 --weight_decay_end 1e-4 --global_crops_scale 0.14 1
#             --local_crops_scale 0.05 0.14, other flags default, 8 GPUs x 64 = 512, 100
#             epochs). The README ships its logs and checkpoint but states no accuracy.
#
# Labels: none in training (--labels=all: every train image, its label unused); the
# evaluations use all labels.
# Starting point: random weights (torchvision ResNet-50 = ResNet-50 v1, stride on the 3x3
# conv, residual branches not zero-initialised); the teacher starts as a copy of the student.
# Training (released): every step 4080 images (51 per GPU on 80 GPUs), each as 2 global crops
# (224 px, area 0.14-1; the first always blurred, the second blurred with p 0.1 and
# solarized with p 0.2) and 6 local crops (96 px, area 0.05-0.14, blurred with p 0.5), all
# random-resized (torchvision's sampler), flipped, jittered 0.4/0.4/0.2/0.1 with p 0.8,
# grayscale p 0.2. Global crops and local crops each get one backbone pass; cross-replica
# batch norm in student and teacher (DINO's SyncBatchNorm); the teacher's batch-norm
# statistics are its own (it runs in training mode, its EMA covers parameters only). Head:
# fc(2048, 2048)-BN-GELU-fc(2048, 2048)-BN-GELU-fc(2048, 256) (use_bn_in_head true),
# L2-normalised, then a weight-normalised bias-free layer of 60000 outputs with unit
# magnitudes (norm_last_layer true). Loss: the teacher's outputs of the 2 global crops,
# centred (momentum 0.9) and sharpened with a temperature going linearly from 0.04 to 0.07
# over the first 50 epochs, are the targets every other crop of the student predicts at
# temperature 0.1. LARS (DINO's utils.LARS: momentum 0.9, eta 0.001; biases and batch-norm
# parameters, DINO's 1-d parameters, get neither the trust ratio nor the decay), lr 0.3 per
# 256 images x 4080 / 256 = 4.78125, linear warmup from 0 over 10 epochs, cosine to min_lr
# 0.0048 (x0.00100392 of the peak; min_lr is absolute in DINO, so a different batch_size here
# also moves the floor); weight decay 1e-6 throughout (weight_decay_end = weight_decay in
# args.txt: constant, weight_decay_end=-1 here); no gradient clipping; last layer frozen for
# the first epoch. Teacher EMA momentum from 0.996 to 1 on a cosine over training. 800 epochs
# of 314 steps (251,200 steps), float32 (use_fp16 false).
# readme: 512 images a step, 8 local crops, 65536 outputs, no batch norm in the head
# (use_bn_in_head false), teacher temperature 0.04 throughout, each parameter's gradient
# clipped to norm 3.0, SGD momentum 0.9 with torch's coupled weight decay 1e-4 (= the L2
# term here; biases and norms exempt), lr 0.03 per 256 x 2 = 0.06, cosine to 1e-6
# (x1.66667e-5), 100 epochs of 2502 steps.
# Evaluation (the teacher): weighted k-NN on `default` (the 2048-d average pool, eval_knn.py's
# ResNet feature): cosine, k 20, vote weights exp(sim / 0.07), 224 centre crops of the 256
# short side - DINO's k-NN protocol. Linear evaluation of `default` with python -m
# tfssl.eval_hub --protocol=linear (cached centre crops, Adam, L2 chosen on a held-out 10%):
# DINO's eval_linear.py trains SGD (lr 0.001 per 256, 100 epochs, random-resized crops +
# flips) on the same 2048-d feature; compare with care. Both run where the script runs
# (eval_hub takes no --tpu): 1.33M ResNet-50 forward passes; the feature cache is ~11 GB.
# Not reproduced: DINO's LARS keeps lr outside the momentum buffer (tfssl's inside: equal at
# constant lr); for readme, fp16 (main_dino.py's default; float32 here,
# --config.precision=mixed_bfloat16 is the TPU analogue); the last layer while frozen is
# skipped by DINO's optimizer (gradient None) while tfssl zeroes its gradient; the colour
# jitter is SimCLR's TF implementation, not torchvision's.
# Hardware: released: 80 GPUs (args.txt world_size 80); readme: 1 node x 8 GPUs. Here: 4080
# = 16 x 255 does not split over 32 or more power-of-two replicas, and 255 (v3-16) or 510
# (v3-8) images a core, each with 8 crops, will not fit. On a TPU v3-64 (64 a core) or
# v3-128, pass --config.batch_size=4096 (the lr follows linearly: peak 4.8, floor 0.00482
# instead of 0.0048). readme: 512 a step, a v3-8 (64 a core) or v3-16.
# Expected (README, released): k-NN 67.5%, linear 75.3% top-1 (DINO's protocols). No number
# for readme.
#
# Usage: WORKDIR=gs://BUCKET/dino_resnet50 [RECIPE=released|readme] \
#            bash config/dino/imagenet_resnet50.sh --dataset_dir=gs://BUCKET/imagenet \
#            --tpu=NAME [--config.batch_size=4096]
# Training goes to $WORKDIR/train; results: $WORKDIR/knn/results.json and
# $WORKDIR/linear/results.json. Other flags go to the trainer (after the recipe's, so they
# win); of them, only --dataset_dir reaches tfssl.eval_hub.
set -euo pipefail
: "${WORKDIR:?set WORKDIR=a directory for the training and evaluation runs}"
RECIPE="${RECIPE:-released}"
EVAL_FLAGS=()
for arg in "$@"; do
  case "$arg" in
    --workdir=*) echo "set WORKDIR=DIR instead of --workdir (several runs go under it)" >&2; exit 2 ;;
    --dataset_dir=*) EVAL_FLAGS+=("$arg") ;;
  esac
done
RUN=(--method=dino --model=resnet50_v1 --dataset=imagenet --labels=all
     --workdir="$WORKDIR/train"
     --config.image_size=224 --config.batch_size=4080 --config.sync_bn=true
     --config.precision=float32
     --config.num_local_views=6 --config.local_crop_size=96
     --config.global_crop_area=0.14,1.0 --config.local_crop_area=0.05,0.14
     --config.proj_hidden_dim=2048 --config.proj_out_dim=256 --config.num_prototypes=60000
     --config.norm_last_layer=true --config.head_batch_norm=true
     --config.temperature=0.1 --config.center_momentum=0.9
     --config.warmup_teacher_temperature=0.04 --config.teacher_temperature=0.07
     --config.warmup_teacher_temperature_epochs=50
     --config.teacher_momentum=0.996
     --config.drop_path_rate=0 --config.clip_grad=0 --config.freeze_last_layer_epochs=1
     --config.optimizer=lars --config.momentum=0.9 --config.nesterov=false
     --config.lars_eta=0.001 --config.weight_decay_skip_bias_and_bn=true
     --config.learning_rate=0.3 --config.lr_scaling=linear --config.lr_base_batch_size=256
     --config.warmup_epochs=10 --config.warmup_start_factor=0
     --config.lr_schedule=cosine --config.end_lr_factor=0.00100392 --config.train_epochs=800
     --config.weight_decay=1e-6 --config.weight_decay_end=-1
     --config.weight_decay_mode=decoupled
     --config.steps_per_loop=314 --config.checkpoint_every_steps=1570)
case "$RECIPE" in
  released) ;;
  readme)
    RUN+=(--config.batch_size=512 --config.train_epochs=100 --config.num_local_views=8
          --config.num_prototypes=65536 --config.head_batch_norm=false
          --config.teacher_temperature=0.04 --config.warmup_teacher_temperature_epochs=0
          --config.clip_grad=3.0
          --config.optimizer=sgd --config.learning_rate=0.03 --config.end_lr_factor=1.66667e-5
          --config.weight_decay=1e-4 --config.weight_decay_mode=l2
          --config.steps_per_loop=417 --config.checkpoint_every_steps=2502) ;;
  *) echo "RECIPE=$RECIPE: expected released or readme" >&2; exit 2 ;;
esac
python -m tfssl.trainer "${RUN[@]}" "$@"
python -m tfssl.eval_hub --hub_module="$WORKDIR/train/export/hub" --protocol=knn \
  --representation=default --config.knn_k=20 --config.knn_temperature=0.07 \
  --workdir="$WORKDIR/knn" "${EVAL_FLAGS[@]}"
python -m tfssl.eval_hub --hub_module="$WORKDIR/train/export/hub" --protocol=linear \
  --representation=default --workdir="$WORKDIR/linear" "${EVAL_FLAGS[@]}"
