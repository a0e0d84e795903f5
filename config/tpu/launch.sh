#!/usr/bin/env bash
# Run one of tfssl's config scripts on the TPU, detached from the ssh session.
#
# Usage: bash config/tpu/launch.sh [--run=NAME] [--follow] [--force] [KEY=VALUE ...] \
#            CONFIG_SCRIPT [FLAGS...]
# e.g.
#   bash config/tpu/launch.sh config/simclr/imagenet_pretrain.sh \
#       --workdir=gs://B/simclr --dataset_dir=gs://B/imagenet --config.precision=mixed_bfloat16
#   bash config/tpu/launch.sh WORKDIR=gs://B/paws config/paws/imagenet_10pct.sh \
#       --dataset_dir=gs://B/imagenet
#
#   KEY=VALUE   environment for the config script (WORKDIR, INIT, PRETRAIN, STEP1, STEP2,
#               LABELS, EPOCHS: see the script's header).
#   FLAGS       passed through to the config script (which passes them to the trainer).
#               --tpu is added: --tpu=local on one host, --tpu=$TPU_NAME on a pod slice
#               (unless given, or the script runs no trainer: eval_hub and label take no --tpu).
#   --run=NAME  name of the run (default: <family>_<script>, e.g. simclr_imagenet_pretrain);
#               its log is ~/tfssl_runs/NAME/log.txt on worker 0 and, with BUCKET set,
#               $BUCKET/tfssl_logs/NAME/<start time>/log.txt (copied every 10 minutes).
#   --follow    stay and print the log (Ctrl-C stops following, not the run).
#   --force     start even if another run is still alive on this TPU.
#
# Where it runs: worker 0 only, also on a pod slice (not --worker=all). TensorFlow 2 on a
# Cloud TPU VM slice is single-client: one Python process on worker 0, started with
# TPU_NAME=<slice name> and TPU_LOAD_LIBRARY=0 (so that it does not open the local chips
# itself), resolves the slice with TPUClusterResolver(tpu=<name>), connects to the TPU
# runtime every worker of a tpu-vm-tf-*-pod image serves, and drives all of them; the
# per-host input pipelines of distribute_datasets_from_function run on each worker's CPU.
# Google's own TF pod tests launch this way (GoogleCloudPlatform/ml-auto-solutions,
# dags/solutions_team/configs/tensorflow: all_workers=not is_pod, TPU_LOAD_LIBRARY=0 on
# pods). Starting the trainer on every worker would make several clients initialise the
# same TPU system. (JAX and PyTorch/XLA are multi-client and do use --worker=all.)
# On a pod, data and workdir must be gs:// paths: the other workers' input pipelines cannot
# read worker 0's disk.
#
# Preemption: the trainer checkpoints to its workdir and saves on SIGTERM; a preempted TPU
# must be deleted and created again (config/tpu/create.sh, install.sh), then rerun this
# command unchanged: the trainer resumes from the workdir's checkpoints. Exit code 42 (or
# 143, killed by SIGTERM) in config/tpu/status.sh means "interrupted, rerun".
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RUN=""
FOLLOW=0
FORCE=0
ENVS=()
while (( $# )); do
  case "$1" in
    --run=*) RUN="${1#--run=}"; shift ;;
    --follow) FOLLOW=1; shift ;;
    --force) FORCE=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    [A-Za-z_]*=*)
      [[ "${1%%=*}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || break
      ENVS+=("$1"); shift ;;
    *) break ;;
  esac
done
(( $# )) || die "no config script given (bash config/tpu/launch.sh --help)"
SCRIPT_ARG="$1"; shift
FLAGS=("$@")

# The script, relative to the repository root (the same path on the workers).
if [[ -f "$SCRIPT_ARG" ]]; then
  SCRIPT_ABS="$(cd "$(dirname "$SCRIPT_ARG")" && pwd)/$(basename "$SCRIPT_ARG")"
elif [[ -f "$TFSSL_ROOT/$SCRIPT_ARG" ]]; then
  SCRIPT_ABS="$TFSSL_ROOT/$SCRIPT_ARG"
else
  die "no config script '$SCRIPT_ARG'"
fi
[[ "$SCRIPT_ABS" == "$TFSSL_ROOT"/* ]] || die "$SCRIPT_ARG is not inside $TFSSL_ROOT"
SCRIPT_REL="${SCRIPT_ABS#"$TFSSL_ROOT"/}"
[[ "$SCRIPT_REL" != config/tpu/* ]] || die "give an experiment script, not $SCRIPT_REL"
if [[ -z "$RUN" ]]; then
  RUN="$(basename "$(dirname "$SCRIPT_REL")")_$(basename "$SCRIPT_REL" .sh)"
fi
[[ "$RUN" =~ ^[A-Za-z0-9._-]+$ ]] || die "--run=NAME takes letters, digits, '.', '_', '-'"

# Variables the script requires (`: "${VAR:?...}"`) must come as KEY=VALUE.
env_value() {  # the value given for $1 in ENVS, or nothing
  local kv
  for kv in ${ENVS[@]+"${ENVS[@]}"}; do
    [[ "${kv%%=*}" == "$1" ]] && { echo "${kv#*=}"; return 0; }
  done
  return 1
}
for var in $(grep -o ': "\${[A-Za-z_][A-Za-z0-9_]*:?' "$SCRIPT_ABS" | sed 's/.*{//; s/:?//'); do
  env_value "$var" >/dev/null || die "$SCRIPT_REL needs $var: bash config/tpu/launch.sh $var=gs://... $SCRIPT_REL ..."
done

IFS=$'\t' read -r STATE TYPE RUNTIME < <(describe_tpu) || die "no TPU '$TPU_NAME' in $ZONE"
if [[ "$STATE" != READY ]]; then
  echo "TPU $TPU_NAME is $STATE, not READY." >&2
  if [[ "$STATE" == PREEMPTED || "$STATE" == TERMINATED ]]; then
    echo "Recreate it and rerun this command (the run resumes from its workdir):" >&2
    echo "  bash config/tpu/delete.sh --quiet && bash config/tpu/create.sh && bash config/tpu/install.sh" >&2
  fi
  exit 3
fi
MULTI_HOST=0
is_multi_host "$TYPE" && MULTI_HOST=1

# Paths the workers must all read: warn about local ones.
check_path() {  # check_path WHAT VALUE
  [[ -z "$2" || "$2" == gs://* ]] && return 0
  if (( MULTI_HOST )); then
    die "$1=$2 is not a gs:// path: on a pod slice every worker reads the data and the workdir"
  elif [[ "$1" == *workdir* || "$1" == WORKDIR ]]; then
    note "warning: $1=$2 is on the TPU VM's disk, which a preemption deletes; use gs://"
  fi
  return 0
}
for flag in ${FLAGS[@]+"${FLAGS[@]}"}; do
  case "$flag" in
    --workdir=*|--dataset_dir=*|--init_from=*) check_path "${flag%%=*}" "${flag#*=}" ;;
  esac
done
for var in WORKDIR INIT PRETRAIN STEP1 STEP2; do
  check_path "$var" "$(env_value "$var" || true)"
done

# TPU flag and environment.
PJRT=0
ADD_TPU=1
grep -q 'tfssl\.trainer' "$SCRIPT_ABS" || ADD_TPU=0
for flag in ${FLAGS[@]+"${FLAGS[@]}"}; do
  [[ "$flag" == --tpu=* || "$flag" == --tpu ]] && ADD_TPU=0
done
if (( MULTI_HOST )); then
  TPU_FLAG="--tpu=$TPU_NAME"
  ENVS+=("TPU_NAME=$TPU_NAME" "TPU_LOAD_LIBRARY=0")
else
  TPU_FLAG="--tpu=local"
  # One host, PJRT image: TensorFlow reaches libtpu as a PJRT plugin (as ml-auto-solutions'
  # export_env_variables does for single-host PJRT runs).
  if [[ "$RUNTIME" == *pjrt* ]]; then
    PJRT=1
  fi
fi
if (( ADD_TPU )); then
  FLAGS+=("$TPU_FLAG")
elif ! grep -q 'tfssl\.trainer' "$SCRIPT_ABS"; then
  note "$SCRIPT_REL runs no trainer: no --tpu added; it runs on worker 0's CPU"
fi

LOG_URI=""
if [[ -n "$BUCKET" ]]; then
  LOG_URI="$BUCKET/tfssl_logs/$RUN/$(date -u +%Y%m%dT%H%M%SZ)"
fi

read -r -d '' STARTER <<'REMOTE' || true
set -euo pipefail
run="$1"; dir="$2"; log_uri="$3"; pjrt="$4"; force="$5"; script="$6"; shift 6
envs=()
while (( $# )) && [[ "$1" != -- ]]; do envs+=("$1"); shift; done
shift
runs="$HOME/tfssl_runs"
mkdir -p "$runs"
[[ -d "$HOME/$dir" ]] || { echo "no ~/$dir on worker 0: bash config/tpu/install.sh" >&2; exit 2; }
for pidfile in "$runs"/*/pid; do
  [[ -e "$pidfile" ]] || continue
  pid="$(cat "$pidfile")"; other="$(basename "$(dirname "$pidfile")")"
  if kill -0 "$pid" 2>/dev/null; then
    if [[ "$force" == 1 ]]; then
      echo "warning: run $other (pid $pid) is still running" >&2
    else
      echo "run $other (pid $pid) is still running on this TPU (one TensorFlow client at a" \
           "time): bash config/tpu/status.sh --stop=$other, or --force" >&2
      exit 3
    fi
  fi
done
rundir="$runs/$run"
mkdir -p "$rundir"
rm -f "$rundir/exit_code"
{
  echo "#!/usr/bin/env bash"
  printf 'cd %q\n' "$HOME/$dir"
  printf 'export PATH=%q:"$PATH"\n' "$HOME/.local/bin"
  for kv in ${envs[@]+"${envs[@]}"}; do printf 'export %q\n' "$kv"; done
  if [[ "$pjrt" == 1 && -e /lib/libtpu.so ]]; then
    echo 'export NEXT_PLUGGABLE_DEVICE_USE_C_API="${NEXT_PLUGGABLE_DEVICE_USE_C_API:-true}"'
    echo 'export TF_PLUGGABLE_DEVICE_LIBRARY_PATH="${TF_PLUGGABLE_DEVICE_LIBRARY_PATH:-/lib/libtpu.so}"'
  fi
  # The config scripts call `python`; some images only have python3.
  if ! command -v python >/dev/null 2>&1; then
    mkdir -p "$HOME/.tfssl_bin" && ln -sf "$(command -v python3)" "$HOME/.tfssl_bin/python"
    printf 'export PATH=%q:"$PATH"\n' "$HOME/.tfssl_bin"
  fi
  printf 'exec bash %q' "$script"
  (( $# == 0 )) || printf ' %q' "$@"
  echo
} > "$rundir/cmd.sh"
cat > "$rundir/run.sh" <<'RUNNER'
#!/usr/bin/env bash
# Runs cmd.sh, records its exit code and copies the log to the bucket.
rundir="$1"; log_uri="$2"
copy_log() {
  [[ -n "$log_uri" ]] || return 0
  local files=("$rundir/log.txt" "$rundir/cmd.sh")
  [[ -e "$rundir/exit_code" ]] && files+=("$rundir/exit_code")
  if command -v gcloud >/dev/null 2>&1; then
    gcloud storage cp --quiet "${files[@]}" "$log_uri/" >/dev/null 2>&1 || true
  elif command -v gsutil >/dev/null 2>&1; then
    gsutil -q cp "${files[@]}" "$log_uri/" >/dev/null 2>&1 || true
  fi
}
( while sleep 600; do copy_log; done ) &
copier=$!
echo "[tpu] $(date -u +%FT%TZ) start on $(hostname): $(tail -n 1 "$rundir/cmd.sh" | sed "s/^exec //")"
bash "$rundir/cmd.sh"
code=$?
echo "$code" > "$rundir/exit_code"
case "$code" in
  0) echo "[tpu] $(date -u +%FT%TZ) done (exit code 0)" ;;
  42|143) echo "[tpu] $(date -u +%FT%TZ) interrupted (exit code $code: SIGTERM, preemption" \
               "or stop); rerun config/tpu/launch.sh with the same arguments to resume" ;;
  *) echo "[tpu] $(date -u +%FT%TZ) failed (exit code $code)" ;;
esac
{ pkill -P "$copier"; kill "$copier"; wait "$copier"; } 2>/dev/null  # the copier and its sleep
copy_log
exit "$code"
RUNNER
# A new session (setsid): the run survives the ssh disconnect and its process group id is
# the pid recorded here (config/tpu/status.sh --stop uses it).
nohup setsid bash "$rundir/run.sh" "$rundir" "$log_uri" >> "$rundir/log.txt" 2>&1 < /dev/null &
echo $! > "$rundir/pid"
sleep 2
echo "started run $run (pid $(cat "$rundir/pid")) on $(hostname):"
tail -n 3 "$rundir/log.txt"
REMOTE

note "$TPU_NAME: $TYPE ($RUNTIME), $( ((MULTI_HOST)) && echo "pod slice: worker 0 drives all workers" || echo 'one host')"
note "run $RUN: $SCRIPT_REL ${FLAGS[*]+"${FLAGS[*]}"}"
remote_bash 0 "$STARTER" "$RUN" "$REMOTE_DIR" "$LOG_URI" "$PJRT" "$FORCE" "$SCRIPT_REL" \
  ${ENVS[@]+"${ENVS[@]}"} -- ${FLAGS[@]+"${FLAGS[@]}"}
note "log:    bash config/tpu/status.sh $RUN   (or --follow=$RUN)"
[[ -z "$LOG_URI" ]] || note "copy:   $LOG_URI/log.txt"
note "stop:   bash config/tpu/status.sh --stop=$RUN   (SIGTERM: the trainer saves, exits 42)"
if (( FOLLOW )); then
  tpu_vm ssh "$TPU_NAME" --worker=0 --command="tail -n +1 -f ~/tfssl_runs/$RUN/log.txt"
fi
