#!/usr/bin/env bash
# TensorBoard on your own machine, reading the runs' summaries straight from the bucket.
#
# Usage: bash config/tpu/tensorboard.sh [LOGDIR] [tensorboard flags...]
#   LOGDIR defaults to $BUCKET (every run under it); give one workdir to see one run, e.g.
#   bash config/tpu/tensorboard.sh gs://B/simclr --port=6007
# Then open http://localhost:6006. Needs `tensorboard` locally (pip install tensorboard; it
# reads gs:// through TensorFlow, installed with tfssl, or through gcsfs) and Google
# application-default credentials that can read the bucket:
#   gcloud auth application-default login
# Each workdir holds summaries/train and summaries/eval (losses, learning rate, accuracy,
# steps/s, images/s); eval/results.json holds the --run_eval scores.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

LOGDIR="$BUCKET"
if (( $# )) && [[ "$1" != -* ]]; then
  LOGDIR="$1"; shift
fi
[[ -n "$LOGDIR" ]] || die "give a LOGDIR (gs://BUCKET/run) or set BUCKET=gs://..."
command -v tensorboard >/dev/null 2>&1 || die "no tensorboard here: pip install tensorboard (or pip install -e . in tfssl)"
if [[ "$LOGDIR" == gs://* ]] && command -v gcloud >/dev/null 2>&1 \
    && ! gcloud auth application-default print-access-token >/dev/null 2>&1; then
  note "warning: no application-default credentials; run: gcloud auth application-default login"
fi
note "TensorBoard on $LOGDIR: http://localhost:6006 (or the --port given)"
exec tensorboard --logdir "$LOGDIR" "$@"
