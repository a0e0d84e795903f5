#!/usr/bin/env bash
# Suave's semi-supervised fine-tuning on ImageNet with 10% of the labels: a short second
# Suave run from a Suave training, with two crops and light labelled augmentation (Fini et
# al., "Semi-supervised learning made simple with self-supervised clustering", CVPR 2023,
# arXiv 2306.07483; pietroastolfi/suave-daino suave/scripts/finetune_10perc.sh (the values),
# suave/main_suave.py (flag defaults, LARS, schedule, light_augment_lab, color_jit_unlab),
# the README's "Semi-sup finetuning" section. The script's values are per GPU; global values
# here.)
#
# Recipe: the same `suave` method (not a supervised fine-tuning), --init_from the training
# of config/suave/imagenet_10pct.sh (INIT=its $WORKDIR/train): backbone and projection head
# loaded (init_proj true), class prototypes new (the original's --swav_init_ckpt always
# drops module.prototypes.weight), the assignment queue empty. Labels: the 10% subset
# (--labels=10pct = suave-daino subsets/10percent.txt, the same file). Every step: 128
# labelled images (16 per GPU on 8 GPUs) and 256 unlabelled images (32 per GPU) as 2 global
# crops only (224 px, area 0.08-1, flip; no local crops). Light augmentation: the unlabelled
# crops get no colour distortion and no blur (color_jit_unlab false); the labelled images a
# random-resized crop (area 0.08-1), flip and colour jitter 0.1/0.1/0.1/0.025 with p 0.8
# (labelled_color_strength 0.125) plus grayscale p 0.2. Loss as in training: Sinkhorn
# epsilon 0.05, 3 iterations, queue 3840 used once full, temperature 0.1. Labelled
# mixup/CutMix as in training (mixup_lab "extend"): after the light augmentation the 128
# labelled images gain a mixed copy, one draw per step, CutMix with probability 0.5 else
# mixup, lam ~ Beta(1, 1), each image paired with its mirror within its group of 16 (the
# original's per-GPU labelled batch, mixup_lab_group_size 16), soft label lam * its one-hot
# + (1 - lam) * the partner's; the copies share the global crops' pass. Labelled
# cross-entropy, label smoothing 0.001 (applied as torch applies it to soft targets), the
# mean over the 256 clean and mixed rows; weights 256 / 768 (= 1/3) and 512 / 768, the
# mixed copies counted as the original counts them. Head
# fc(2048, 2048)-BN-ReLU-fc(2048, 128), cross-replica batch norm. LARS (momentum 0.9, eta
# 0.001, every parameter gets the trust ratio and the 1e-6 weight decay), lr 0.03 with no
# batch scaling, no warmup, cosine to 0.0003 (x0.01), 5 epochs of the unlabelled stream
# (5004 steps each, about 25k steps). Then `--run_eval` gives the prototype classifier's
# top-1/top-5 on the 50k validation images.
# Not as the original: its light labelled augmentation is jitter 0.1/0.1/0.1/0.1 (p 0.8) with
# no grayscale; here the hue delta is 0.025 and grayscale p 0.2 stays (tfssl's labelled
# augmentation has one strength knob). Not reproduced (tfssl has no such feature): the
# recipe's mixup of unlabelled images (mixup_unlab "globals", as in training: global crop 1
# of each unlabelled image mixed with crop 2 of its mirrored partner, an extra view kept out
# of the SwAV loss and the queue). It matters little: the original weighs it by its count
# of mixed views (1 per GPU), not images, i.e. 1 / 97 = 1% of the loss, so the labelled and
# unlabelled shares are 0.333 and 0.667 here against 0.330 and 0.660 there; it also puts
# those 256 mixed crops into the original's 224 px pass (and its batch-norm batch).
# Not as the original, outside the recipe's values: no online evaluation heads
# (multihead_eval, monitoring only); float32 instead of fp16 (use_fp16). ensemble_eval,
# detach_ensemble and bn_ensemble are false in the original: nothing to reproduce.
# Hardware: the original ran on 1 node x 8 GPUs. Here: a core must hold whole mixup groups
# (16 labelled images), so the 8 groups run on 1, 2, 4 or 8 replicas (more stop the run
# with an error). A TPU v3-8 holds 16 + 16 mixed labelled images and 64 global crops at 224
# per core, as per GPU in the original, which float32 may not fit
# (--config.precision=mixed_bfloat16 would). On a v3-16 add --config.mixup_lab_group_size=8:
# partners then mirror within 8 images instead of 16, pairs as random (the labelled stream
# is shuffled) but not the original's.
# Expected: the README gives no accuracy numbers.
#
# Usage: INIT=gs://BUCKET/suave_10pct/train bash config/suave/finetune_imagenet_10pct.sh \
#            --workdir=gs://BUCKET/suave_10pct_ft --dataset_dir=gs://BUCKET/imagenet --tpu=NAME
# INIT: the training run of config/suave/imagenet_10pct.sh (its $WORKDIR/train, or an
# export/hub/STEP module of it). Results: WORKDIR/eval/results.json.
set -euo pipefail
: "${INIT:?set INIT=the training run of config/suave/imagenet_10pct.sh (its WORKDIR/train)}"
RUN=(--method=suave --model=resnet50_v1 --dataset=imagenet --labels=10pct
     --init_from="$INIT"
     --config.init_projection=true --config.image_size=224
     --config.batch_size=128 --config.unsup_batch_size=256 --config.eval_batch_size=1024
     --config.sync_bn=true
     --config.crop_area_min=0.08 --config.labelled_color_strength=0.125
     --config.num_local_views=0 --config.global_crop_area=0.08,1.0
     --config.color_jitter_unlabelled=false
     --config.temperature=0.1 --config.label_smoothing=0.001
     --config.mixup_lab=true --config.mixup_lab_type=extend --config.mixup_lab_group_size=16
     --config.sinkhorn_epsilon=0.05 --config.sinkhorn_iterations=3
     --config.proj_hidden_dim=2048 --config.proj_out_dim=128
     --config.queue_length=3840 --config.queue_start_epoch=0
     --config.freeze_prototypes_steps=0
     --config.optimizer=lars --config.momentum=0.9 --config.nesterov=false
     --config.lars_eta=0.001 --config.weight_decay_skip_bias_and_bn=false
     --config.learning_rate=0.03 --config.lr_scaling=none
     --config.warmup_epochs=0 --config.lr_schedule=cosine --config.end_lr_factor=0.01
     --config.train_epochs=5
     --config.weight_decay=1e-6 --config.weight_decay_mode=decoupled
     --config.steps_per_loop=500 --config.checkpoint_every_steps=2500)
python -m tfssl.trainer "${RUN[@]}" "$@"
python -m tfssl.trainer "${RUN[@]}" --run_eval "$@"
