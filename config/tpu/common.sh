# Settings and helpers shared by config/tpu/*.sh (sourced, not run).
#
# Every setting can be overridden from the environment, e.g.
#   TPU_NAME=simclr ACCELERATOR_TYPE=v3-32 BUCKET=gs://my-bucket bash config/tpu/create.sh
#
#   TPU_NAME          name of the TPU VM / pod slice                (default: tfssl)
#   ZONE              zone; v3 pod slices are in europe-west4-a, v4 in us-central2-b
#                                                                  (default: europe-west4-a)
#   ACCELERATOR_TYPE  v3-8 (one host), v3-32 / v3-64 / v3-128, v4-8, v4-32, ...
#                                                                  (default: v3-8)
#   TF_VERSION        TensorFlow of the TPU software image          (default: 2.16.1)
#   RUNTIME_VERSION   TPU software version; default from the two above:
#                     tpu-vm-tf-$TF_VERSION-pjrt on one host, tpu-vm-tf-$TF_VERSION-pod-pjrt
#                     on a multi-host slice (cloud.google.com/tpu/docs/runtimes:
#                     tpu-vm-tf-x.y.z[-pod][-pjrt|-se], "-pod" = multi-host slice)
#   PROJECT           Google Cloud project (default: gcloud config get-value project)
#   BUCKET            gs://bucket for data, runs and logs (no default; launch copies logs
#                     to $BUCKET/tfssl_logs/RUN when it is set)
#
# shellcheck shell=bash

TPU_NAME="${TPU_NAME:-tfssl}"
ZONE="${ZONE:-europe-west4-a}"
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v3-8}"
TF_VERSION="${TF_VERSION:-2.16.1}"
if [[ -z "${PROJECT:-}" ]] && command -v gcloud >/dev/null 2>&1; then
  PROJECT="$(gcloud config get-value project 2>/dev/null || true)"
fi
PROJECT="${PROJECT:-}"
BUCKET="${BUCKET:-}"
if [[ -n "$BUCKET" && "$BUCKET" != gs://* ]]; then
  BUCKET="gs://$BUCKET"
fi
BUCKET="${BUCKET%/}"

# The repository root (config/tpu/../..), where the config scripts live.
TFSSL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Where install.sh puts the repository on every worker (relative to the remote home).
REMOTE_DIR="${REMOTE_DIR:-tfssl}"

die() { echo "error: $*" >&2; exit 2; }
note() { echo "[tpu] $*" >&2; }

# Multi-host slice or one host. The number in the accelerator type counts TensorCores
# (v2, v3, v4, v5p) or chips (v5litepod, v6e); every family holds at most 8 of them on one
# host, so more than 8 means several TPU VMs (workers).
is_multi_host() {
  local count="${1##*-}"
  [[ "$count" =~ ^[0-9]+$ ]] || die "cannot read the size of accelerator type '$1'"
  (( count > 8 ))
}

default_runtime_version() {
  if is_multi_host "$ACCELERATOR_TYPE"; then
    echo "tpu-vm-tf-${TF_VERSION}-pod-pjrt"
  else
    echo "tpu-vm-tf-${TF_VERSION}-pjrt"
  fi
}
RUNTIME_VERSION="${RUNTIME_VERSION:-$(default_runtime_version)}"

# gcloud compute tpus tpu-vm SUBCOMMAND ... with the zone and project.
tpu_vm() {
  local sub="$1"; shift
  local args=(compute tpus tpu-vm "$sub" "$@" --zone="$ZONE")
  [[ -n "$PROJECT" ]] && args+=(--project="$PROJECT")
  gcloud "${args[@]}"
}

# Run a bash script (given as text) on the TPU's workers: remote_bash WORKER SCRIPT [ARGS...]
# WORKER is a worker index or "all". The script travels base64-encoded, so no quoting of
# its text is needed; ARGS are quoted with printf %q.
remote_bash() {
  local worker="$1" script="$2"; shift 2
  local encoded quoted_args=""
  encoded="$(printf '%s' "$script" | base64 | tr -d '\n')"
  if (( $# )); then
    quoted_args="$(printf ' %q' "$@")"
  fi
  tpu_vm ssh "$TPU_NAME" --worker="$worker" \
    --command="echo $encoded | base64 -d > /tmp/tfssl_remote.sh && bash /tmp/tfssl_remote.sh$quoted_args"
}

# state, acceleratorType and runtimeVersion of the existing TPU (tab-separated).
describe_tpu() {
  tpu_vm describe "$TPU_NAME" --format='value(state,acceleratorType,runtimeVersion)'
}
