#!/usr/bin/env bash
# Create a Cloud TPU VM (one host, e.g. v3-8) or a TPU pod slice (several hosts, e.g. v3-32)
# with the TensorFlow TPU software image.
#
# Usage: [TPU_NAME=..] [ZONE=..] [ACCELERATOR_TYPE=..] bash config/tpu/create.sh \
#            [--preemptible | --spot | --on-demand] [other gcloud flags...]
#   --preemptible  (default) preemptible TPU: much cheaper, may be stopped at any time and
#                  after at most 24 hours; uses the preemptible quota.
#   --spot         TPU Spot VM: the successor of preemptible TPUs, same prices, no 24-hour
#                  limit (cloud.google.com/tpu/docs/spot); preemptible quota.
#   --on-demand    never preempted; on-demand quota, several times the price.
# Other flags go to `gcloud compute tpus tpu-vm create` (e.g. --network, --labels).
# Settings (TPU_NAME, ZONE, ACCELERATOR_TYPE, TF_VERSION, RUNTIME_VERSION, PROJECT):
# config/tpu/common.sh. SCOPES (default cloud-platform; empty to leave gcloud's default)
# lets the VM's service account reach Cloud Storage and, on a pod slice, the Cloud TPU API
# that TensorFlow's cluster resolver asks for the workers' addresses.
#
# A preempted TPU stays in state PREEMPTED and cannot be restarted: delete it
# (config/tpu/delete.sh), create it again, install, and rerun config/tpu/launch.sh; the
# trainer resumes from the checkpoints in its gs:// workdir.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PROVISIONING="${PROVISIONING:-preemptible}"
SCOPES="${SCOPES-https://www.googleapis.com/auth/cloud-platform}"
EXTRA=()
for arg in "$@"; do
  case "$arg" in
    --preemptible) PROVISIONING=preemptible ;;
    --spot) PROVISIONING=spot ;;
    --on-demand) PROVISIONING=on-demand ;;
    *) EXTRA+=("$arg") ;;
  esac
done

ARGS=(--accelerator-type="$ACCELERATOR_TYPE" --version="$RUNTIME_VERSION")
case "$PROVISIONING" in
  preemptible) ARGS+=(--preemptible) ;;
  spot) ARGS+=(--spot) ;;
  on-demand) ;;
  *) die "PROVISIONING must be preemptible, spot or on-demand, not '$PROVISIONING'" ;;
esac
[[ -n "$SCOPES" ]] && ARGS+=(--scopes="$SCOPES")

if is_multi_host "$ACCELERATOR_TYPE"; then
  [[ "$RUNTIME_VERSION" == *-pod* ]] || note "warning: $ACCELERATOR_TYPE has several hosts" \
    "but $RUNTIME_VERSION is not a -pod image; TensorFlow on a slice needs tpu-vm-tf-*-pod-*"
else
  [[ "$RUNTIME_VERSION" != *-pod* ]] || note "warning: $ACCELERATOR_TYPE is one host but" \
    "$RUNTIME_VERSION is a -pod image; use tpu-vm-tf-$TF_VERSION-pjrt"
fi

note "creating $TPU_NAME: $ACCELERATOR_TYPE, $RUNTIME_VERSION, $PROVISIONING, zone $ZONE" \
  "${PROJECT:+project $PROJECT}"
tpu_vm create "$TPU_NAME" "${ARGS[@]}" ${EXTRA[@]+"${EXTRA[@]}"}
tpu_vm describe "$TPU_NAME" --format='table(name.basename(),state,acceleratorType,runtimeVersion,networkEndpoints.len():label=HOSTS)'
note "next: bash config/tpu/install.sh"
if [[ -n "$BUCKET" ]]; then
  note "keep $BUCKET in the TPU's region (${ZONE%-*}): gcloud storage buckets describe $BUCKET --format='value(location)'"
fi
