#!/usr/bin/env bash
# SwAV pretraining of a ResNet-50 on ImageNet, 800 epochs, then linear and k-NN evaluation of
# the exported module (Caron et al., "Unsupervised Learning of Visual Features by Contrasting
# Cluster Assignments", NeurIPS 2020, arXiv 2006.09882; facebookresearch/swav snapshot
# 06b1b7c: scripts/swav_800ep_pretrain.sh (the values; per GPU, global values here),
# main_swav.py (flag defaults, LARC, schedule, queue, prototype freezing, loss),
# src/resnet50.py (head), src/multicropdataset.py (crops), eval_linear.py, the README's model
# table and running times). This is the start of Suave's published recipe
# (config/suave/imagenet_{1,10}pct.sh, INIT=$WORKDIR/train).
#
# Labels: none in training (--labels=all: every train image, its label unused; 312 steps of
# 4096 per epoch, as SwAV's drop_last loader on 64 GPUs). The evaluations use all labels.
# Starting point: random weights (torchvision-layout ResNet-50 v1, stride on the 3x3 conv,
# residual branches not zero-initialised, as src/resnet50.py).
# Training: every step 4096 images (64 per GPU on 64 GPUs), each as 2 global crops (224 px,
# area 0.14-1) and 6 local crops (96 px, area 0.05-0.14), all random-resized (torchvision's
# sampler), flipped, colour-jittered 0.8/0.8/0.8/0.2 with p 0.8, grayscale p 0.2, blurred
# with p 0.5. Global crops and local crops each get one backbone pass. Head fc(2048,
# 2048)-BN-ReLU-fc(2048, 128), L2-normalised, then 3000 unit-norm prototypes (renormalised
# after every update; SwAV before every step). Loss: for each global crop, Sinkhorn-Knopp
# assignments (epsilon 0.05, 3 iterations, sums over every replica) that the other 7 crops
# predict at temperature 0.1; the two averaged. No queue: the script passes queue_length 0
# (main_swav.py would anyway round a queue down to a multiple of the global batch,
# `queue_length -= queue_length % (batch_size * world_size)`: 3840 at 4096 would be 0);
# queue_start_epoch 15 is main_swav.py's default, inert here. Prototypes frozen for the
# first 313 updates (freeze_prototypes_niters). LARS as SwAV's LARC (SGD momentum 0.9,
# trust coefficient 0.001, no clipping): one parameter group, so every parameter (biases and
# batch norm included) gets the trust ratio and the 1e-6 weight decay folded into its
# gradient. lr 4.8 for the global batch (no batch scaling in main_swav.py), linear warmup
# from 0.3 (x0.0625, start_warmup) over 10 epochs, then cosine to 0.0048 (x0.001) over the
# other 790. Cross-replica batch norm. 800 epochs: 249,600 steps.
# Evaluation (the README's numbers are linear top-1): linear evaluation of the exported
# `default` (2048-d average pool, as SwAV's eval_linear.py global_pooling) with
# python -m tfssl.eval_hub --protocol=linear, and, ours, weighted cosine k-NN (k 20,
# temperature 0.07: DINO's protocol) on the same features. tfssl's linear protocol is not
# SwAV's: eval_linear.py trains 100 epochs of SGD (lr 0.3, batch 256, momentum 0.9, wd 1e-6,
# cosine) on random-resized crops + flips; eval_hub fits on cached centre crops (Adam, L2
# chosen on a held-out 10%; config/evaluation/linear.sh). The gap between the two protocols
# is not measured here. Both run where the script runs (eval_hub takes no --tpu): 1.33M
# ResNet-50 forward passes, best on a GPU; the feature cache is ~11 GB.
# Not reproduced: fp16 (apex amp O1; float32 here, --config.precision=mixed_bfloat16 is the
# TPU analogue); apex's synchronised batch norm in groups of 8 GPUs (syncbn_process_group_size
# 8: statistics over 512 images; here over the whole 4096); LARC's exact formula (trust
# ratio eta*|w|/(|g| + wd*|w|), lr outside the momentum buffer; tfssl's LARS uses
# eta*|w|/|g + wd*w| and keeps lr inside); frozen prototypes skipped by the optimizer (SwAV
# sets their gradient to None; tfssl zeroes it, so LARS's decay term still moves them along
# themselves, which the renormalisation undoes); the colour jitter is SimCLR's TF
# implementation, not torchvision's; SwAV's input normalisation (std 0.228/0.224/0.225).
# Hardware: the original ran on 8 nodes x 8 GPUs (64 GPUs); the README: 3 min 40 s per epoch
# at batch 4096, about 49 h for 800 epochs (the sbatch asks 50 h). Here: TPU v3-64 (64
# images, i.e. 128 global + 384 local crops, per core, the original's per-GPU load; float32
# may not fit, mixed_bfloat16 should) or v3-128 (32 per core). 4096 splits evenly over any
# power-of-two slice.
# Expected: README (800 epochs, batch 4096, 2x224 + 6x96): linear top-1 75.3%. The same
# script with EPOCHS=100 / 200 / 400 is swav_{100,200,400}ep_pretrain.sh (they differ from
# the 800-epoch script in --epochs only): 72.1% / 73.9% / 74.6%. The README gives no k-NN
# number (the k-NN run is ours).
# Next: Suave, config/suave/imagenet_10pct.sh and imagenet_1pct.sh with INIT=$WORKDIR/train.
#
# Usage: WORKDIR=gs://BUCKET/swav [EPOCHS=800] bash config/swav/imagenet.sh \
#            --dataset_dir=gs://BUCKET/imagenet --tpu=NAME
# Training goes to $WORKDIR/train; results: $WORKDIR/linear/results.json and
# $WORKDIR/knn/results.json. Other flags go to the trainer; of them, only --dataset_dir
# reaches tfssl.eval_hub.
set -euo pipefail
: "${WORKDIR:?set WORKDIR=a directory for the training and evaluation runs}"
EVAL_FLAGS=()
for arg in "$@"; do
  case "$arg" in
    --workdir=*) echo "set WORKDIR=DIR instead of --workdir (several runs go under it)" >&2; exit 2 ;;
    --dataset_dir=*) EVAL_FLAGS+=("$arg") ;;
  esac
done
RUN=(--method=swav --model=resnet50_v1 --dataset=imagenet --labels=all
     --workdir="$WORKDIR/train"
     --config.image_size=224 --config.batch_size=4096 --config.sync_bn=true
     --config.precision=float32
     --config.num_local_views=6 --config.local_crop_size=96
     --config.global_crop_area=0.14,1.0 --config.local_crop_area=0.05,0.14
     --config.color_jitter_unlabelled=true
     --config.temperature=0.1
     --config.sinkhorn_epsilon=0.05 --config.sinkhorn_iterations=3
     --config.proj_hidden_dim=2048 --config.proj_out_dim=128 --config.num_prototypes=3000
     --config.queue_length=0 --config.queue_start_epoch=15
     --config.freeze_prototypes_steps=313
     --config.optimizer=lars --config.momentum=0.9 --config.nesterov=false
     --config.lars_eta=0.001 --config.weight_decay_skip_bias_and_bn=false
     --config.learning_rate=4.8 --config.lr_scaling=none
     --config.warmup_epochs=10 --config.warmup_start_factor=0.0625
     --config.lr_schedule=cosine --config.end_lr_factor=0.001 --config.train_epochs=800
     --config.weight_decay=1e-6 --config.weight_decay_mode=decoupled
     --config.steps_per_loop=312 --config.checkpoint_every_steps=1560)
if [[ -n "${EPOCHS:-}" ]]; then
  RUN+=(--config.train_epochs="$EPOCHS")
fi
python -m tfssl.trainer "${RUN[@]}" "$@"
python -m tfssl.eval_hub --hub_module="$WORKDIR/train/export/hub" --protocol=linear \
  --representation=default --workdir="$WORKDIR/linear" "${EVAL_FLAGS[@]}"
python -m tfssl.eval_hub --hub_module="$WORKDIR/train/export/hub" --protocol=knn \
  --representation=default --config.knn_k=20 --config.knn_temperature=0.07 \
  --workdir="$WORKDIR/knn" "${EVAL_FLAGS[@]}"
