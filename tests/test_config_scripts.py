"""Every config script's trainer command builds a valid config: known method, model and
keys, a method config check that passes for the dataset's image size; every
`python -m tfssl.label` command uses flags the labeller defines. Catches a typo in a
published recipe without running it."""

import glob
import inspect
import os
import re
import shlex
import subprocess

import pytest

from tfssl import config as config_lib
from tfssl import label as label_lib
from tfssl import methods
from tfssl import models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_IMAGE_SIZES = {"imagenet": 224, "cifar10": 32, "cifar100": 32, "digits": 32}


def _commands(path, module):
  """The argument lists of every `python -m MODULE` call in a shell script, with bash
  arrays (`NAME=(...)` used as "${NAME[@]}") expanded. Shell variables stay as written
  (`--pseudo_labels="$LABELS"` gives `--pseudo_labels=$LABELS`)."""
  text = open(path).read().replace("\\\n", " ")
  for name, values in re.findall(r"^(\w+)=\((.*?)\)", text, flags=re.M | re.S):
    text = text.replace(f'"${{{name}[@]}}"', " ".join(values.split()))
  commands = []
  for line in text.splitlines():
    line = line.split(" #")[0].strip()
    if line.startswith(f"python -m {module}"):
      args = shlex.split(line.replace('"$@"', ""), posix=True)[3:]
      commands.append([a for a in args if a.startswith("--")])
  return commands


def _trainer_commands(path):
  return _commands(path, "tfssl.trainer")


ALL_SCRIPTS = sorted(glob.glob(os.path.join(REPO, "config", "**", "*.sh"), recursive=True))
SCRIPTS = [p for p in ALL_SCRIPTS if _trainer_commands(p)]
LABEL_SCRIPTS = [p for p in ALL_SCRIPTS if _commands(p, "tfssl.label")]
# Trainer flags passed to build_config as fields (besides method, model and dataset).
FIELD_FLAGS = ("labels", "pseudo_labels", "init_from")


def _flag_values(args):
  flags, overrides = {}, []
  for arg in args:
    key, _, value = arg[2:].partition("=")
    if key.startswith("config."):
      overrides.append(f"{key[len('config.'):]}={value}")
    else:
      flags[key] = value
  return flags, overrides


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: os.path.relpath(p, REPO))
def test_config_script_builds_a_valid_config(script):
  for args in _trainer_commands(script):
    flags, overrides = _flag_values(args)
    method_cls = methods.get_method(flags["method"])
    models.MODELS.get(flags["model"])
    fields = {key: flags[key] for key in FIELD_FLAGS if key in flags}
    config = config_lib.build_config(method_cls, overrides, method=flags["method"],
                                     model=flags["model"], dataset=flags["dataset"], **fields)
    image_size = config.image_size or DEFAULT_IMAGE_SIZES[flags["dataset"]]
    method_cls.check_config(config, image_size)


def _label_flag_names():
  """{flag name: enum values or None} of python -m tfssl.label, read from its definitions
  (defining them would clash with flags another test may have defined)."""
  source = inspect.getsource(label_lib.define_flags)
  names = {}
  for kind, name in re.findall(r'flags\.DEFINE_(\w+)\(\s*"(\w+)"', source):
    names[name] = label_lib.AVERAGE_OVER if name == "average_over" else None
    if kind == "bool":
      names[f"no{name}"] = None
  return names


@pytest.mark.parametrize("script", LABEL_SCRIPTS, ids=lambda p: os.path.relpath(p, REPO))
def test_label_commands_use_known_flags(script):
  known = _label_flag_names()
  assert "hub_module" in known and "average_over" in known
  for args in _commands(script, "tfssl.label"):
    for arg in args:
      name, _, value = arg[2:].partition("=")
      assert name in known, (f"{os.path.relpath(script, REPO)}: unknown tfssl.label flag "
                             f"--{name}")
      if known[name] is not None:
        assert value in known[name], f"--{name}={value} is not one of {known[name]}"


def test_scripts_were_found():
  names = {os.path.relpath(p, REPO) for p in SCRIPTS}
  for method in ("rotation", "exemplar", "jigsaw", "relative_patch_location"):
    assert {f"config/{method}/imagenet.sh", f"config/{method}/cifar10.sh"} <= names
  s4l = {"config/s4l/imagenet_rotation_10pct.sh", "config/s4l/imagenet_exemplar_10pct.sh",
         "config/s4l/cifar10_rotation.sh", "config/s4l/cifar10_exemplar.sh",
         "config/vat/imagenet_10pct.sh", "config/vat/imagenet_entmin_10pct.sh",
         "config/vat/cifar10.sh",
         "config/pseudo_label/imagenet_10pct.sh", "config/pseudo_label/cifar10.sh",
         "config/moam/step1.sh", "config/moam/step2.sh", "config/moam/step3.sh",
         "config/moam/cifar10_step1.sh", "config/moam/cifar10_step2.sh",
         "config/moam/cifar10_step3.sh"}
  assert s4l <= names
  contrastive = {f"config/{method}/{name}.sh" for method in ("simclr", "fnc")
                 for name in ("imagenet_pretrain", "imagenet_linear_eval",
                              "imagenet_finetune_1pct", "imagenet_finetune_10pct",
                              "cifar10_pretrain")}
  assert contrastive <= names
  paws = {"config/paws/cifar10_4000.sh", "config/paws/imagenet_10pct.sh",
          "config/paws/imagenet_1pct.sh"}
  assert paws <= names
  suave_daino = {"config/suave/imagenet_1pct.sh", "config/suave/imagenet_10pct.sh",
                 "config/suave/cifar100.sh", "config/suave/finetune_imagenet_1pct.sh",
                 "config/suave/finetune_imagenet_10pct.sh",
                 "config/daino/imagenet_1pct.sh", "config/daino/imagenet_10pct.sh"}
  assert suave_daino <= names
  label_names = {os.path.relpath(p, REPO) for p in LABEL_SCRIPTS}
  assert {"config/pseudo_label/imagenet_label.sh", "config/moam/step2.sh",
          "config/moam/cifar10_step2.sh"} <= label_names


def test_tpu_scripts_parse():
  """config/tpu/ runs on Cloud TPU only; here bash checks every script and the parts it
  sends to the workers."""
  result = subprocess.run(["bash", os.path.join(REPO, "config", "tpu", "lint.sh")],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, SHELLCHECK="0"))
  assert result.returncode == 0, result.stdout + result.stderr
  assert "launch.sh (remote part)" in result.stdout
