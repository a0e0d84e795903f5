#!/usr/bin/env bash
# DINO pretraining of a ViT-B/16 on ImageNet, then k-NN and linear evaluation of the exported
# teacher (Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV
# 2021, arXiv 2104.14294; facebookresearch/dino snapshot 7c446df: main_dino.py (flag
# defaults, DINOLoss, schedules, augmentation), utils.py, vision_transformer.py,
# eval_knn.py, eval_linear.py, run_with_submitit.py and the README: model table and the
# "DINO with ViT-base network" command). Batch flags there are per GPU; global values here.
#
# RECIPE picks one of two published settings (default released):
#   released  the released ViT-B/16 (dino_vitbase16_pretrain*.pth, the README's table). Its
#             values are the README-linked args.txt
#             (dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/args.txt), which could not
#             be read where this script was written: they come from third-party copies of it
#             that agree; check them against the file itself.
#   readme    the README's command (run_with_submitit.py --nodes 2 --ngpus 8 --use_volta32
#             --arch vit_base): main_dino.py's defaults on 16 GPUs x 64 = 1024, 100 epochs.
#             The README states no accuracy for it.
#
# Labels: none in training (--labels=all: every train image, its label unused); the
# evaluations use all labels.
# Starting point: random weights; the teacher starts as a copy of the student.
# Training (released): ViT-B/16 (width 768, 12 blocks, 12 heads, qkv biases, LayerNorm eps
# 1e-6). Every step 1024 images (32 per GPU on 32 GPUs), each as 2 global crops (224 px,
# area 0.25-1; the first always blurred, the second blurred with p 0.1 and solarized with
# p 0.2) and 10 local crops (96 px, area 0.05-0.25, blurred with p 0.5), all random-resized
# (torchvision's sampler), flipped, jittered 0.4/0.4/0.2/0.1 with p 0.8, grayscale p 0.2.
# Head (student and teacher): fc(768, 2048)-GELU-fc(2048, 2048)-GELU-fc(2048, 256), no batch
# norm, L2-normalised, then a weight-normalised bias-free layer of 65536 outputs with unit
# magnitudes (norm_last_layer true: the README says removing it is "only safe with
# vit_small"). Loss: the teacher's outputs of the 2 global crops, centred (momentum 0.9) and
# sharpened with a temperature going linearly from 0.04 to 0.07 over the first 50 epochs, are
# the targets every other crop of the student predicts at temperature 0.1. Student
# stochastic depth 0.1 (active in DINO; its rate grows linearly over the blocks). AdamW
# (0.9, 0.999, eps 1e-8; no decay on biases and norms), lr 7.5e-4 per 256 images x 1024 /
# 256 = 3e-3, linear warmup from 0 over 10 epochs, cosine to min_lr 2e-6 (x0.000666667 of
# the peak; min_lr is absolute in DINO, so a different batch_size here also moves the
# floor); weight decay on a cosine from 0.04 to 0.4; each parameter's gradient clipped to
# norm 0.3 (clip_grad); last layer frozen for the first 3 epochs. The teacher is an EMA of
# the student, momentum from 0.996 to 1 on a cosine over training. 400 epochs of 1251 steps
# (500,400 steps), float32 (use_fp16 false).
# readme: lr 5e-4 per 256 (peak 2e-3), min_lr 1e-6 (x0.0005), 8 local crops, global area
# 0.4-1, local 0.05-0.4, teacher temperature 0.04 throughout, clip_grad 3.0, last layer frozen
# for 1 epoch, 100 epochs; otherwise as released (norm_last_layer true, drop path 0.1).
# Evaluation (the teacher): weighted k-NN on `default` (the final normed [CLS], eval_knn.py's
# feature): cosine, k 20, vote weights exp(sim / 0.07), 224 centre crops of the 256 short
# side - DINO's k-NN protocol. Linear evaluation on `default` with python -m tfssl.eval_hub
# --protocol=linear (cached centre crops, Adam, L2 chosen on a held-out 10%): not DINO's
# protocol, which for ViT-B trains SGD (lr 0.001 per 256, 100 epochs, random-resized crops
# + flips) on the last block's [CLS] concatenated with its average patch token
# (--n_last_blocks 1 --avgpool_patchtokens true; tfssl exports no such tap); compare with
# care. Both run where the script runs (eval_hub takes no --tpu): 1.33M ViT-B forward passes.
# Not reproduced: for readme, fp16 (main_dino.py's default; float32 here,
# --config.precision=mixed_bfloat16 is the TPU analogue); the last layer while frozen is
# skipped by DINO's optimizer (gradient None; AdamW's per-parameter step count starts at
# unfreezing) while tfssl zeroes its gradient (Keras AdamW's bias correction runs on the
# global step); the colour jitter is SimCLR's TF implementation, not torchvision's.
# Hardware: released: 32 GPUs (args.txt: 4 nodes x 8, 32 images each); readme: 2 nodes x 8
# V100 32 GB (--use_volta32). Here: TPU v3-64 (16 images, i.e. 32 global + 160 local crops,
# per core) or v3-32 (32 per core, the released run's per-GPU load; float32 may not fit a
# v3 core's 16 GB, mixed_bfloat16 should). 1024 splits evenly over 8 to 1024 replicas.
# Expected (README, released): k-NN 76.1%, linear 78.2% top-1 (DINO's protocols). No number
# for readme.
#
# Usage: WORKDIR=gs://BUCKET/dino_vitb16 [RECIPE=released|readme] \
#            bash config/dino/imagenet_vitb16.sh --dataset_dir=gs://BUCKET/imagenet --tpu=NAME
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
RUN=(--method=dino --model=vit_b16 --dataset=imagenet --labels=all
     --workdir="$WORKDIR/train"
     --config.image_size=224 --config.batch_size=1024 --config.precision=float32
     --config.num_local_views=10 --config.local_crop_size=96
     --config.global_crop_area=0.25,1.0 --config.local_crop_area=0.05,0.25
     --config.proj_hidden_dim=2048 --config.proj_out_dim=256 --config.num_prototypes=65536
     --config.norm_last_layer=true --config.head_batch_norm=false
     --config.temperature=0.1 --config.center_momentum=0.9
     --config.warmup_teacher_temperature=0.04 --config.teacher_temperature=0.07
     --config.warmup_teacher_temperature_epochs=50
     --config.teacher_momentum=0.996
     --config.drop_path_rate=0.1 --config.clip_grad=0.3 --config.freeze_last_layer_epochs=3
     --config.optimizer=adamw --config.adam_beta1=0.9 --config.adam_beta2=0.999
     --config.adam_epsilon=1e-8
     --config.learning_rate=7.5e-4 --config.lr_scaling=linear --config.lr_base_batch_size=256
     --config.warmup_epochs=10 --config.warmup_start_factor=0
     --config.lr_schedule=cosine --config.end_lr_factor=0.000666667 --config.train_epochs=400
     --config.weight_decay=0.04 --config.weight_decay_end=0.4
     --config.weight_decay_mode=decoupled --config.weight_decay_skip_bias_and_bn=true
     --config.steps_per_loop=417 --config.checkpoint_every_steps=2502)
case "$RECIPE" in
  released) ;;
  readme)
    RUN+=(--config.train_epochs=100 --config.num_local_views=8
          --config.global_crop_area=0.4,1.0 --config.local_crop_area=0.05,0.4
          --config.teacher_temperature=0.04 --config.warmup_teacher_temperature_epochs=0
          --config.clip_grad=3.0 --config.freeze_last_layer_epochs=1
          --config.learning_rate=5e-4 --config.end_lr_factor=0.0005) ;;
  *) echo "RECIPE=$RECIPE: expected released or readme" >&2; exit 2 ;;
esac
python -m tfssl.trainer "${RUN[@]}" "$@"
python -m tfssl.eval_hub --hub_module="$WORKDIR/train/export/hub" --protocol=knn \
  --representation=default --config.knn_k=20 --config.knn_temperature=0.07 \
  --workdir="$WORKDIR/knn" "${EVAL_FLAGS[@]}"
python -m tfssl.eval_hub --hub_module="$WORKDIR/train/export/hub" --protocol=linear \
  --representation=default --workdir="$WORKDIR/linear" "${EVAL_FLAGS[@]}"
