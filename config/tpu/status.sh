#!/usr/bin/env bash
# The TPU's state and the runs config/tpu/launch.sh started on it (worker 0).
#
# Usage: bash config/tpu/status.sh              state, every run (running / exit code), log tails
#        bash config/tpu/status.sh RUN          the last 60 lines of RUN's log
#        bash config/tpu/status.sh --follow=RUN print RUN's log as it grows (Ctrl-C stops)
#        bash config/tpu/status.sh --stop=RUN   SIGTERM to RUN's trainer: it saves a
#                                               checkpoint and exits 42 (rerun launch to resume)
# Exit codes recorded per run: 0 done; 42 or 143 interrupted by SIGTERM (rerun launch.sh with
# the same arguments: the trainer resumes from its workdir); anything else failed (read the log).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ACTION=list
RUN=""
case "${1:-}" in
  "") ;;
  --follow=*) ACTION=follow; RUN="${1#--follow=}" ;;
  --stop=*) ACTION=stop; RUN="${1#--stop=}" ;;
  -*) die "unknown option $1 (RUN, --follow=RUN or --stop=RUN)" ;;
  *) ACTION=show; RUN="$1" ;;
esac
[[ -z "$RUN" || "$RUN" =~ ^[A-Za-z0-9._-]+$ ]] || die "bad run name '$RUN'"

tpu_vm describe "$TPU_NAME" \
  --format='table(name.basename(),state,acceleratorType,runtimeVersion,networkEndpoints.len():label=HOSTS)'
STATE="$(tpu_vm describe "$TPU_NAME" --format='value(state)')"
if [[ "$STATE" != READY ]]; then
  note "$TPU_NAME is $STATE: its runs are gone with it; their copies are under ${BUCKET:-\$BUCKET}/tfssl_logs/"
  exit 0
fi

read -r -d '' REMOTE_SCRIPT <<'REMOTE' || true
set -uo pipefail
action="$1"; run="$2"
runs="$HOME/tfssl_runs"
case "$action" in
  list)
    shopt -s nullglob
    dirs=("$runs"/*/)
    (( ${#dirs[@]} )) || { echo "no runs on $(hostname)"; exit 0; }
    for d in "${dirs[@]}"; do
      name="$(basename "$d")"; pid="$(cat "$d/pid" 2>/dev/null || echo 0)"
      if kill -0 "$pid" 2>/dev/null; then status="running (pid $pid)"
      elif [[ -e "$d/exit_code" ]]; then
        code="$(cat "$d/exit_code")"
        case "$code" in
          0) status="done" ;;
          42|143) status="interrupted (exit $code): rerun launch.sh to resume" ;;
          *) status="failed (exit $code)" ;;
        esac
      else status="ended without an exit code (killed?)"
      fi
      echo "== $name: $status"
      tail -n 5 "$d/log.txt" 2>/dev/null | sed 's/^/   /'
    done ;;
  show) tail -n 60 "$runs/$run/log.txt" ;;
  follow) exec tail -n 60 -f "$runs/$run/log.txt" ;;
  stop)
    pid="$(cat "$runs/$run/pid" 2>/dev/null)" || { echo "no run $run" >&2; exit 2; }
    kill -0 "$pid" 2>/dev/null || { echo "run $run is not running" >&2; exit 0; }
    # The run is its own process group (launch.sh started it with setsid); signal only its
    # tfssl Python processes, so the config script sees the trainer's own exit code.
    if pkill -TERM -g "$pid" -f 'python[0-9.]* -m tfssl\.'; then
      echo "sent SIGTERM to the tfssl processes of run $run (process group $pid)"
    else
      echo "run $run has no tfssl process right now; stopping its process group $pid"
      kill -TERM -- "-$pid"
    fi ;;
esac
REMOTE

remote_bash 0 "$REMOTE_SCRIPT" "$ACTION" "$RUN"
