#!/usr/bin/env bash
# Quickstart, on a laptop CPU in a few minutes, offline: train the supervised baseline on
# scikit-learn's bundled `digits` images, export the TF-Hub module, score it with linear
# evaluation and k-NN, and print the results table.
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

python -m tfssl.trainer \
  --method=supervised --model=resnet18_v2 --dataset=digits --workdir="$WORKDIR/supervised" \
  --config.model_width=0.25 --config.batch_size=64 --config.train_epochs=20 \
  --config.learning_rate=0.1 --config.lr_base_batch_size=64 --config.lr_schedule=cosine \
  --config.warmup_epochs=1 --config.weight_decay=5e-4 --config.crop_area_min=0.5 \
  --config.steps_per_loop=22 --config.checkpoint_every_steps=220 --config.log_every_seconds=5

for protocol in linear knn; do
  python -m tfssl.eval_hub --hub_module="$WORKDIR/supervised/export/hub" \
    --protocol="$protocol" --workdir="$WORKDIR/eval/supervised_$protocol"
done

python -m tfssl.report "$WORKDIR/eval"
