#!/usr/bin/env bash
# DINO pretraining of a ViT-S/16 on ImageNet, then k-NN and linear evaluation of the exported
# teacher (Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV
# 2021, arXiv 2104.14294; facebookresearch/dino snapshot 7c446df: main_dino.py (flag
# defaults, DINOLoss, schedules, augmentation), utils.py (cosine_scheduler, clip_gradients,
# cancel_gradients_last_layer, get_params_groups), vision_transformer.py (ViT, DINOHead),
# eval_knn.py, eval_linear.py, run_with_submitit.py and the README: model table, "Vanilla DINO
# training", "Boosting DINO performance"). Batch flags there are per GPU; global values here.
#
# RECIPE picks one of three published settings (default released):
#   released  the released ViT-S/16 (dino_deitsmall16_pretrain*.pth, the README's table; the
#             model Daino starts from, config/daino/imagenet_{1,10}pct.sh with
#             INIT=$WORKDIR/train). Its values are the README-linked args.txt
#             (dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/args.txt), which could
#             not be read where this script was written: they come from several third-party
#             copies of it that agree (a lightly-ai benchmark quotes its crops, notes in
#             other repositories the whole file); check them against the file itself.
#   vanilla   the README's single-node command (main_dino.py --arch vit_small, all defaults,
#             8 GPUs x 64 = 512 images a step, 100 epochs).
#   boost     the README's "Boosting DINO performance" command (run_with_submitit.py,
#             2 nodes x 8 GPUs x 64 = 1024, --epochs 300 --teacher_temp 0.07
#             --warmup_teacher_temp_epochs 30 --norm_last_layer false).
#
# Labels: none in training (--labels=all: every train image, its label unused); the
# evaluations use all labels.
# Starting point: random weights; the teacher starts as a copy of the student.
# Training (released): ViT-S/16 (width 384, 12 blocks, 6 heads, qkv biases, LayerNorm eps
# 1e-6). Every step 1024 images (64 per GPU on 16 GPUs), each as 2 global crops (224 px,
# area 0.25-1; the first always blurred, the second blurred with p 0.1 and solarized with
# p 0.2) and 10 local crops (96 px, area 0.05-0.25, blurred with p 0.5), all random-resized
# (torchvision's sampler), flipped, jittered 0.4/0.4/0.2/0.1 with p 0.8, grayscale p 0.2.
# Head (student and teacher): fc(384, 2048)-GELU-fc(2048, 2048)-GELU-fc(2048, 256), no batch
# norm (use_bn_in_head false), L2-normalised, then a weight-normalised bias-free layer of
# 65536 outputs whose magnitudes are learnt (norm_last_layer false). Loss: the teacher's
# outputs of the 2 global crops, centred (momentum 0.9) and sharpened with a temperature
# going linearly from 0.04 to 0.07 over the first 30 epochs, are the targets every other crop
# of the student predicts at temperature 0.1. Student stochastic depth 0.1 (main_dino.py
# keeps the student in training mode: active; DINO's rate grows linearly over the blocks).
# AdamW (0.9, 0.999, eps 1e-8; no decay on biases and norms), lr 5e-4 per 256 images x
# 1024 / 256 = 2e-3, linear warmup from 0 over 10 epochs, cosine to min_lr 1e-5 (x0.005 of
# the peak; min_lr is absolute in DINO, so a different batch_size here also moves the floor);
# weight decay on a cosine from 0.04 to 0.4; no gradient clipping (clip_grad 0); last layer
# frozen for the first epoch. The teacher is an EMA of the student, momentum from 0.996 to 1
# on a cosine over training. 800 epochs of 1251 steps (1,000,800 steps), float32 (use_fp16
# false).
# vanilla: 512 images a step (lr 5e-4 x 2 = 1e-3, min_lr 1e-6 = x0.001), 8 local crops,
# global area 0.4-1, local 0.05-0.4, norm_last_layer true (magnitudes fixed at 1), teacher
# temperature 0.04 throughout, clip_grad 3.0 (each parameter's gradient to norm <= 3),
# 100 epochs of 2502 steps. boost: as vanilla but 1024 a step (peak 2e-3, floor x0.0005),
# teacher 0.04 -> 0.07 over 30 epochs, norm_last_layer false, 300 epochs of 1251 steps.
# Evaluation (the teacher, as DINO's eval_*.py --checkpoint_key teacher): weighted k-NN on
# `default` (the final normed [CLS], eval_knn.py's feature): cosine, k 20, vote weights
# exp(sim / 0.07), train and val as 224 centre crops of the 256 short side - DINO's k-NN
# protocol. Linear evaluation on `default` with python -m tfssl.eval_hub --protocol=linear
# (cached centre crops, Adam, L2 chosen on a held-out 10%): not DINO's protocol, which trains
# SGD (lr 0.001 per 256, 100 epochs, random-resized crops + flips) on the concatenated [CLS]
# of the last 4 blocks (n_last_blocks 4; tfssl exports no such tap); compare with care. Both
# run where the script runs (eval_hub takes no --tpu): 1.33M ViT-S forward passes.
# Not reproduced: for vanilla/boost, fp16 (main_dino.py's default use_fp16 true; float32 here,
# --config.precision=mixed_bfloat16 is the TPU analogue); the last layer while frozen is
# skipped by DINO's optimizer (its gradient set to None, so AdamW's per-parameter step count
# starts at unfreezing) while tfssl zeroes its gradient (Keras AdamW's bias correction runs
# on the global step); the colour jitter is SimCLR's TF implementation, not torchvision's.
# Hardware: released: 16 GPUs (args.txt world_size 16, 2 nodes x 8); vanilla: 1 node x 8
# GPUs, 1.75 days (README); boost: 16 GPUs, 2.6 days (README). Here: TPU v3-32 (32 images,
# i.e. 64 global + 320 local crops, per core) or v3-64; a v3-16 carries the original's 64
# per GPU, which float32 may not fit. A ViT has no batch norm: the per-core split changes
# nothing. 1024 and 512 split evenly over 8 to 512 replicas.
# Expected (README): released: k-NN 74.5%, linear 77.0% top-1; vanilla: k-NN 69.3%, linear
# 74.0%; boost: k-NN 73.3%, linear 76.0% (the README's linear numbers are DINO's protocol).
# Next: Daino, config/daino/imagenet_10pct.sh and imagenet_1pct.sh with INIT=$WORKDIR/train
# (of the released recipe, the paper's starting point).
#
# Usage: WORKDIR=gs://BUCKET/dino_vits16 [RECIPE=released|vanilla|boost] \
#            bash config/dino/imagenet_vits16.sh --dataset_dir=gs://BUCKET/imagenet --tpu=NAME
# Training goes to $WORKDIR/train; results: $WORKDIR/knn/results.json and
# $WORKDIR/linear/results.json. Other flags go to the trainer; of them, only --dataset_dir
# reaches tfssl.eval_hub.
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
RUN=(--method=dino --model=vit_s16 --dataset=imagenet --labels=all
     --workdir="$WORKDIR/train"
     --config.image_size=224 --config.batch_size=1024 --config.precision=float32
     --config.num_local_views=10 --config.local_crop_size=96
     --config.global_crop_area=0.25,1.0 --config.local_crop_area=0.05,0.25
     --config.proj_hidden_dim=2048 --config.proj_out_dim=256 --config.num_prototypes=65536
     --config.norm_last_layer=false --config.head_batch_norm=false
     --config.temperature=0.1 --config.center_momentum=0.9
     --config.warmup_teacher_temperature=0.04 --config.teacher_temperature=0.07
     --config.warmup_teacher_temperature_epochs=30
     --config.teacher_momentum=0.996
     --config.drop_path_rate=0.1 --config.clip_grad=0 --config.freeze_last_layer_epochs=1
     --config.optimizer=adamw --config.adam_beta1=0.9 --config.adam_beta2=0.999
     --config.adam_epsilon=1e-8
     --config.learning_rate=5e-4 --config.lr_scaling=linear --config.lr_base_batch_size=256
     --config.warmup_epochs=10 --config.warmup_start_factor=0
     --config.lr_schedule=cosine --config.end_lr_factor=0.005 --config.train_epochs=800
     --config.weight_decay=0.04 --config.weight_decay_end=0.4
     --config.weight_decay_mode=decoupled --config.weight_decay_skip_bias_and_bn=true
     --config.steps_per_loop=417 --config.checkpoint_every_steps=2502)
case "$RECIPE" in
  released) ;;
  vanilla)
    RUN+=(--config.batch_size=512 --config.train_epochs=100
          --config.num_local_views=8
          --config.global_crop_area=0.4,1.0 --config.local_crop_area=0.05,0.4
          --config.norm_last_layer=true
          --config.teacher_temperature=0.04 --config.warmup_teacher_temperature_epochs=0
          --config.clip_grad=3.0 --config.end_lr_factor=0.001) ;;
  boost)
    RUN+=(--config.batch_size=1024 --config.train_epochs=300
          --config.num_local_views=8
          --config.global_crop_area=0.4,1.0 --config.local_crop_area=0.05,0.4
          --config.norm_last_layer=false
          --config.teacher_temperature=0.07 --config.warmup_teacher_temperature_epochs=30
          --config.clip_grad=3.0 --config.end_lr_factor=0.0005) ;;
  *) echo "RECIPE=$RECIPE: expected released, vanilla or boost" >&2; exit 2 ;;
esac
python -m tfssl.trainer "${RUN[@]}" "$@"
python -m tfssl.eval_hub --hub_module="$WORKDIR/train/export/hub" --protocol=knn \
  --representation=default --config.knn_k=20 --config.knn_temperature=0.07 \
  --workdir="$WORKDIR/knn" "${EVAL_FLAGS[@]}"
python -m tfssl.eval_hub --hub_module="$WORKDIR/train/export/hub" --protocol=linear \
  --representation=default --workdir="$WORKDIR/linear" "${EVAL_FLAGS[@]}"
