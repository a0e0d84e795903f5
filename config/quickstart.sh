#!/usr/bin/env bash
# Quickstart, on a laptop CPU in a few minutes, offline: self-supervised Rotation
# pretraining on scikit-learn's bundled `digits` images (no labels used), export of the
# TF-Hub module, linear evaluation of its features, printed next to the same network at
# random initialisation and the supervised baseline (all labels).
#
# Usage: bash config/quickstart.sh [--workdir=DIR]   (default /tmp/tfssl_quickstart)
set -euo pipefail
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
WORKDIR=/tmp/tfssl_quickstart
for arg in "$@"; do
  case "$arg" in
    --workdir=*) WORKDIR="${arg#--workdir=}" ;;
    *) echo "unknown argument: $arg (only --workdir=DIR)" >&2; exit 2 ;;
  esac
done

# One network for all three rows: ResNet-18 v2 at width 0.25, 32-px digits, batch 64.
NETWORK=(--model=resnet18_v2 --dataset=digits --config.model_width=0.25
         --config.batch_size=64 --config.lr_base_batch_size=64 --config.learning_rate=0.1
         --config.lr_schedule=cosine --config.warmup_epochs=1 --config.weight_decay=5e-4
         --config.crop_area_min=0.5 --config.steps_per_loop=22
         --config.checkpoint_every_steps=1000 --config.log_every_seconds=10)

# Rotation: every image at 0/90/180/270 degrees, a 4-way classifier; no labels.
python -m tfssl.trainer --method=rotation "${NETWORK[@]}" --workdir="$WORKDIR/rotation" \
  --config.train_epochs=12
# The same network, untrained: what the features are worth before any learning.
python -m tfssl.trainer --method=rotation "${NETWORK[@]}" --workdir="$WORKDIR/random_init" \
  --config.train_epochs=0
# The supervised baseline: the same network trained on all labels.
python -m tfssl.trainer --method=supervised "${NETWORK[@]}" --workdir="$WORKDIR/supervised" \
  --config.train_epochs=10

for run in rotation random_init supervised; do
  python -m tfssl.eval_hub --hub_module="$WORKDIR/$run/export/hub" --protocol=linear \
    --workdir="$WORKDIR/eval/${run}_linear"
done

python -m tfssl.report "$WORKDIR/eval"
