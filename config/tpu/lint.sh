#!/usr/bin/env bash
# Syntax check of the TPU scripts, without a TPU or gcloud: `bash -n` on every
# config/tpu/*.sh and on the scripts they send to the workers (the <<'REMOTE' blocks), and
# shellcheck when it is installed.
#
# Usage: bash config/tpu/lint.sh        (SHELLCHECK=0: bash -n only)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

status=0
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for script in *.sh; do
  if bash -n "$script"; then echo "ok    bash -n $script"; else echo "FAIL  bash -n $script"; status=1; fi
  # The block between `read -r -d '' VAR <<'REMOTE' || true` and the line `REMOTE`.
  if grep -q "^read -r -d '' [A-Z_]* <<'REMOTE'" "$script"; then
    awk "/^read -r -d '' [A-Z_]+ <<'REMOTE'/{on=1; next} /^REMOTE\$/{on=0} on" "$script" \
      > "$tmp/${script%.sh}.remote.sh"
    if bash -n "$tmp/${script%.sh}.remote.sh"; then
      echo "ok    bash -n $script (remote part)"
    else
      echo "FAIL  bash -n $script (remote part)"; status=1
    fi
  fi
done
if [[ "${SHELLCHECK:-1}" == 1 ]] && command -v shellcheck >/dev/null 2>&1; then
  shellcheck -x -S warning ./*.sh "$tmp"/*.sh || status=1
fi
exit "$status"
