"""Every config script's trainer command builds a valid config: known method, model and
keys, a method config check that passes for the dataset's image size. Catches a typo in a
published recipe without running it."""

import glob
import os
import re
import shlex

import pytest

from tfssl import config as config_lib
from tfssl import methods
from tfssl import models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_IMAGE_SIZES = {"imagenet": 224, "cifar10": 32, "cifar100": 32, "digits": 32}


def _trainer_commands(path):
  """The argument lists of every `python -m tfssl.trainer` call in a shell script, with
  bash arrays (`NAME=(...)` used as "${NAME[@]}") expanded."""
  text = open(path).read().replace("\\\n", " ")
  for name, values in re.findall(r"^(\w+)=\((.*?)\)", text, flags=re.M | re.S):
    text = text.replace(f'"${{{name}[@]}}"', " ".join(values.split()))
  commands = []
  for line in text.splitlines():
    line = line.split(" #")[0].strip()
    if line.startswith("python -m tfssl.trainer"):
      args = shlex.split(line.replace('"$@"', ""), posix=True)[3:]
      commands.append([a for a in args if a.startswith("--")])
  return commands


SCRIPTS = sorted(p for p in glob.glob(os.path.join(REPO, "config", "**", "*.sh"), recursive=True)
                 if _trainer_commands(p))


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
    config = config_lib.build_config(method_cls, overrides, method=flags["method"],
                                     model=flags["model"], dataset=flags["dataset"])
    image_size = config.image_size or DEFAULT_IMAGE_SIZES[flags["dataset"]]
    method_cls.check_config(config, image_size)


def test_scripts_were_found():
  names = {os.path.relpath(p, REPO) for p in SCRIPTS}
  for method in ("rotation", "exemplar", "jigsaw", "relative_patch_location"):
    assert {f"config/{method}/imagenet.sh", f"config/{method}/cifar10.sh"} <= names
