#!/usr/bin/env bash
# Delete the TPU VM or pod slice (billing stops). The bucket, with every workdir, checkpoint,
# export and the copied logs, stays.
#
# Usage: [TPU_NAME=..] [ZONE=..] bash config/tpu/delete.sh [--quiet] [--async]
#   --quiet  no confirmation prompt; other flags go to `gcloud compute tpus tpu-vm delete`.
# A preempted TPU (state PREEMPTED) still has to be deleted before one of the same name can
# be created again.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

note "deleting $TPU_NAME in $ZONE${PROJECT:+ (project $PROJECT)}"
tpu_vm delete "$TPU_NAME" "$@"
