#!/usr/bin/env bash
# Install tfssl on every worker of the TPU (gcloud ... ssh --worker=all).
#
# Usage: bash config/tpu/install.sh
#   REPO_URL=https://github.com/USER/tfssl.git [REPO_REF=branch|tag|commit] bash config/tpu/install.sh
# Without REPO_URL the local working tree (tracked and untracked, not ignored, files) is
# copied to every worker with `gcloud compute tpus tpu-vm scp --worker=all`; with it, every
# worker clones (or fetches) the repository. Either way it lands in ~/tfssl (REMOTE_DIR) and
# is installed with `pip install -e`.
#
# The TPU software image already holds TensorFlow (and, on -pod images, the TPU runtime that
# the other workers serve); its version must stay. So the install pins the image's
# TensorFlow, Keras, TensorBoard, protobuf, numpy and libtpu (pip constraints) and installs
# tfssl with --no-deps followed by its other dependencies. It never installs
# cloud-tpu-client: that package downgrades protobuf and `import tensorflow` then fails;
# TensorFlow bundles the TPU cluster resolver. On a pod slice the bundled resolver looks
# the slice up in the Cloud TPU API through google-api-python-client and oauth2client
# (tensorflow/python/tpu/client/client.py), so those two are installed when missing.
#
# TensorFlow drives a pod slice from one Python process on worker 0 (config/tpu/launch.sh);
# the other workers serve their TPU chips and input pipelines through the image's TPU
# runtime. tfssl is installed on every worker all the same (the same tree everywhere, and
# any worker can run a tool by hand).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

REPO_URL="${REPO_URL:-}"
REPO_REF="${REPO_REF:-}"

IFS=$'\t' read -r STATE TYPE RUNTIME < <(describe_tpu) || die "no TPU '$TPU_NAME' in $ZONE (bash config/tpu/create.sh)"
[[ "$STATE" == READY ]] || die "TPU $TPU_NAME is $STATE, not READY"
MULTI_HOST=0
is_multi_host "$TYPE" && MULTI_HOST=1
note "$TPU_NAME: $TYPE ($RUNTIME), $( ((MULTI_HOST)) && echo 'several hosts' || echo 'one host')"

if [[ -n "$REPO_URL" ]]; then
  MODE=git
  SOURCE="$REPO_URL"
else
  MODE=copy
  SOURCE=tfssl_src.tar.gz
  command -v git >/dev/null || die "git is needed to list the working tree (or set REPO_URL)"
  TARBALL="$(mktemp -t tfssl_src.XXXXXX)"
  trap 'rm -f "$TARBALL"' EXIT
  git -C "$TFSSL_ROOT" ls-files -z --cached --others --exclude-standard \
    | tar -C "$TFSSL_ROOT" --null -T - -czf "$TARBALL"
  note "copying the working tree ($(du -h "$TARBALL" | cut -f1)) to every worker"
  tpu_vm scp "$TARBALL" "$TPU_NAME:$SOURCE" --worker=all
fi

read -r -d '' REMOTE_SCRIPT <<'REMOTE' || true
set -euo pipefail
mode="$1"; source="$2"; ref="$3"; dir="$4"; multi_host="$5"
worker="$(hostname)"
cd "$HOME"
if [[ "$mode" == git ]]; then
  if [[ -d "$dir/.git" ]]; then
    git -C "$dir" fetch --quiet --tags origin
    if [[ -n "$ref" ]]; then git -C "$dir" checkout --quiet "$ref"; else git -C "$dir" merge --quiet --ff-only '@{u}'; fi
  else
    [[ ! -e "$dir" ]] || { echo "$worker: ~/$dir exists and is not a git clone; move it away" >&2; exit 2; }
    git clone --quiet "$source" "$dir"
    [[ -z "$ref" ]] || git -C "$dir" checkout --quiet "$ref"
  fi
else
  if [[ -e "$dir" && ! -e "$dir/.tfssl_copied_tree" ]]; then
    echo "$worker: ~/$dir exists and was not made by config/tpu/install.sh; move it away" >&2; exit 2
  fi
  rm -rf "$dir.new"
  mkdir "$dir.new"
  tar -xzf "$source" -C "$dir.new"
  touch "$dir.new/.tfssl_copied_tree"
  rm -rf "$dir"
  mv "$dir.new" "$dir"
  rm -f "$source"
fi

export PATH="$HOME/.local/bin:$PATH"
export TPU_LOAD_LIBRARY=0  # nothing here may take the TPU
PY=python3
plan="$(mktemp)"; constraints="$(mktemp)"
"$PY" - "$dir/pyproject.toml" "$constraints" > "$plan" <<'PY'
import importlib.metadata as md
import re
import sys

pyproject, constraints = sys.argv[1], sys.argv[2]
installed = {}
for dist in md.distributions():
  name = (dist.metadata["Name"] or "").lower().replace("_", "-")
  if name:
    installed[name] = dist.version
tf_dist = next((n for n in ("tensorflow", "tensorflow-tpu", "tensorflow-cpu", "tf-nightly",
                            "tf-nightly-tpu") if n in installed), None)
if tf_dist is None:
  sys.exit("no TensorFlow on this worker: create the TPU with a tpu-vm-tf-* software version")
version = installed[tf_dist]
major_minor = tuple(int(x) for x in re.findall(r"\d+", version)[:2])
if major_minor < (2, 16):
  sys.exit(f"{tf_dist} {version} on this worker; tfssl needs TensorFlow >= 2.16: recreate the "
           "TPU with RUNTIME_VERSION=tpu-vm-tf-2.16.1-pjrt (one host) or -pod-pjrt (slice)")
# Pin what the image's TensorFlow was built with.
pinned = re.compile(r"^(tensorflow|tensorflow-tpu|tensorflow-cpu|tensorflow-io-gcs-filesystem|"
                    r"tf-nightly.*|tf-keras|keras|tensorboard|tensorboard-data-server|protobuf|"
                    r"numpy|ml-dtypes|libtpu.*)$")
lines = [f"{n}=={v}" for n, v in sorted(installed.items()) if pinned.match(n)]
if "tf-keras" not in installed and "nightly" not in tf_dist:
  lines.append(f"tf-keras~={major_minor[0]}.{major_minor[1]}.0")
open(constraints, "w").write("\n".join(lines) + "\n")
# tfssl's dependencies but TensorFlow itself (pyproject.toml [project] dependencies).
text = open(pyproject).read()
block = re.search(r"^dependencies\s*=\s*\[(.*?)\]", text, re.S | re.M).group(1)
deps = [d.replace(" ", "") for d in re.findall(r"[\"']([^\"']+)[\"']", block)]
def dep_name(spec):
  return re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower().replace("_", "-")
deps = [d for d in deps if dep_name(d) != "tensorflow"]
# Packages that require the distribution named "tensorflow" get --no-deps when the image's
# TensorFlow is another distribution (tensorflow-tpu ...), or pip would add a second one.
no_deps = {"tf-keras", "tensorflow-hub"} if tf_dist != "tensorflow" else set()
print("TF", tf_dist, version)
print("DEPS", " ".join(d for d in deps if dep_name(d) not in no_deps))
print("NODEPS", " ".join(d for d in deps if dep_name(d) in no_deps))
print("CLOUD_TPU_CLIENT", installed.get("cloud-tpu-client", ""))
PY
read -r _ tf_dist tf_version < <(grep '^TF ' "$plan")
read -r -a deps <<< "$(grep '^DEPS' "$plan" | cut -d' ' -f2-)"
read -r -a nodeps <<< "$(grep '^NODEPS' "$plan" | cut -d' ' -f2-)"
cloud_tpu_client="$(grep '^CLOUD_TPU_CLIENT' "$plan" | cut -d' ' -f2-)"
echo "$worker: $tf_dist $tf_version; pinned: $(tr '\n' ' ' < "$constraints")"
if [[ -n "$cloud_tpu_client" ]]; then
  echo "$worker: WARNING: cloud-tpu-client $cloud_tpu_client is installed; it downgrades" \
       "protobuf and breaks 'import tensorflow'. Remove it: $PY -m pip uninstall -y cloud-tpu-client" >&2
fi
pip_install() { "$PY" -m pip install --quiet --disable-pip-version-check -c "$constraints" "$@"; }
pip_install --no-deps -e "$dir"
pip_install "${deps[@]}"
(( ${#nodeps[@]} == 0 )) || pip_install --no-deps "${nodeps[@]}"
if [[ "$multi_host" == 1 ]] && ! "$PY" -c "import googleapiclient.discovery, oauth2client.client" 2>/dev/null; then
  echo "$worker: installing google-api-python-client and oauth2client (the TPU name lookup)"
  pip_install google-api-python-client oauth2client
fi
"$PY" -c "import tensorflow as tf, tfssl; print('$worker: tfssl installed, TensorFlow', tf.__version__)"
rm -f "$plan" "$constraints"
REMOTE

note "installing on every worker of $TPU_NAME"
remote_bash all "$REMOTE_SCRIPT" "$MODE" "$SOURCE" "$REPO_REF" "$REMOTE_DIR" "$MULTI_HOST"
note "next: bash config/tpu/launch.sh config/<method>/<experiment>.sh --workdir=gs://... --dataset_dir=gs://..."
