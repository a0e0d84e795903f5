"""Evidence of learning for the Revisiting pretext tasks on real images (`digits`).

For each method: pretrain on the digits training split, export, and fit the linear
evaluation (tfssl.eval_hub) on its features; then the same for the same network at its
random initialisation (`--config.train_epochs=0`). Prints linear top-1 of `default` and
of the best tap for both, and the gain.

    python benchmarks/revisiting_digits.py [--methods=rotation,exemplar,...] [--workdir=DIR]

Each method takes a few minutes on 2 CPU cores.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from absl import logging  # noqa: E402

from tfssl import config as config_lib  # noqa: E402
from tfssl import eval_hub  # noqa: E402
from tfssl import methods  # noqa: E402
from tfssl import trainer  # noqa: E402

COMMON = ["model_width=0.25", "batch_size=64", "lr_base_batch_size=64", "learning_rate=0.1",
          "lr_schedule=cosine", "warmup_epochs=1", "weight_decay=5e-4", "steps_per_loop=22",
          "checkpoint_every_steps=100000", "log_every_seconds=30", "summary_images=0"]
# Digits are 32 px: patch methods use a 3x3 grid of 10-px patches with 3 px of jitter,
# through the CIFAR stem (patch_net=false: the ImageNet patch net would leave them 2x2).
PATCHES = ["patch_net=false", "patch_size=10", "patch_jitter=3", "embed_dim=128",
           "head_hidden=256"]
RECIPES = {
    "rotation": ["train_epochs=15", "crop_area_min=0.5"],
    "exemplar": ["train_epochs=15", "crop_area_min=0.3", "exemplar_copies=4", "batch_size=32",
                 "lr_base_batch_size=32", "embed_dim=128"],
    "jigsaw": ["train_epochs=30", "num_permutations=100", "perm_subset_size=8"] + PATCHES,
    "relative_patch_location": ["train_epochs=30"] + PATCHES,
}
MODEL = "resnet18_v2"


def linear_rows(module_dir, workdir):
  rows = eval_hub.evaluate(module_dir, "linear", workdir, representation="all")
  return rows if isinstance(rows, list) else [rows]


def run_method(method, root):
  overrides = COMMON + RECIPES[method]
  results = {}
  for label, extra in (("pretrained", []), ("random_init", ["train_epochs=0"])):
    config = config_lib.build_config(methods.get_method(method), overrides + extra,
                                     method=method, model=MODEL, dataset="digits")
    workdir = os.path.join(root, method, label)
    start = time.time()
    trainer.train(config, workdir)
    seconds = time.time() - start
    rows = linear_rows(os.path.join(workdir, "export", "hub"), os.path.join(workdir, "eval"))
    by_name = {row["representation"]: row["top1"] for row in rows}
    best = max(by_name, key=by_name.get)
    results[label] = dict(default=by_name["default"], best=best, best_top1=by_name[best],
                          train_seconds=seconds)
  return results


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--methods", default=",".join(RECIPES))
  parser.add_argument("--workdir", default="/tmp/tfssl_bench_revisiting")
  args = parser.parse_args()
  logging.set_verbosity(logging.WARNING)
  table = {}
  for method in args.methods.split(","):
    table[method] = run_method(method, args.workdir)
  print(f"\nlinear top-1 on digits test (360 images), {MODEL} width 0.25, 32 px")
  print("method | pretrained default | random default | gain | pretrained best tap | "
        "random best tap | train s")
  for method, r in table.items():
    pre, rnd = r["pretrained"], r["random_init"]
    print(f"{method} | {pre['default']:.4f} | {rnd['default']:.4f} | "
          f"{pre['default'] - rnd['default']:+.4f} | {pre['best']} {pre['best_top1']:.4f} | "
          f"{rnd['best']} {rnd['best_top1']:.4f} | {pre['train_seconds']:.0f}")


if __name__ == "__main__":
  main()
