"""Evidence of learning for S4L's semi-supervised methods on real images (`digits`).

Every method trains the same network for the same number of steps on the same 10% of
the labels (144 of 1437 training images, one labelled batch per step, S4L's 1:1
unlabelled batch), and is scored by its own classifier on the digits test split (360
images), top-1 / top-5, as S4L's table is. `supervised` is the baseline: the labelled
images alone. `pseudo_label` trains on all images labelled by that baseline's module
(`python -m tfssl.label`). MOAM runs its three steps as the paper does (step 2: 18 epochs
of every pseudo-labelled image from step 1's weights; step 3: 20 epochs of the labelled
images at learning rate / 200, and again at 1e-2: see run_method), so its budget is
larger than the others'.

    python benchmarks/s4l_digits.py [--methods=supervised,s4l_rotation,...] [--steps=600]

About 40 minutes on 2 CPU cores for every method.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tensorflow as tf  # noqa: E402
from absl import logging  # noqa: E402

from tfssl import config as config_lib  # noqa: E402
from tfssl import experiment  # noqa: E402
from tfssl import label  # noqa: E402
from tfssl import methods  # noqa: E402
from tfssl import trainer  # noqa: E402

MODEL = "resnet18_v2"
# Digits are 8x8 scans: 16 px keeps all their detail at a quarter of 32 px's cost.
COMMON = ["model_width=0.25", "image_size=16", "batch_size=32", "lr_base_batch_size=32",
          "learning_rate=0.1", "lr_schedule=cosine", "warmup_epochs=0", "weight_decay=5e-4",
          "crop_area_min=0.5", "steps_per_loop=25", "checkpoint_every_steps=100000",
          "log_every_seconds=60", "summary_images=0", "eval_batch_size=360"]
LABELLED = ["labels=10pct"]
# S4L's epsilons (40 for VAT, 32 for MOAM at 224 px) at the same per-pixel size for 16 px.
VAT_EPSILON = 40.0 * 16 / 224
MOAM_EPSILON = 32.0 * 16 / 224
RECIPES = {
    "supervised": LABELLED,
    "pseudo_label": [],
    "s4l_rotation": LABELLED,
    "s4l_exemplar": LABELLED + ["exemplar_copies=4", "embed_dim=128"],
    "vat": LABELLED + [f"vat_epsilon={VAT_EPSILON}"],
    "vat_entmin": LABELLED + [f"vat_epsilon={VAT_EPSILON}"],
    "moam": LABELLED + [f"vat_epsilon={MOAM_EPSILON}"],
}
ORDER = ("supervised", "pseudo_label", "s4l_rotation", "s4l_exemplar", "vat", "vat_entmin",
         "moam")


def _config(method, overrides, **fields):
  return config_lib.build_config(methods.get_method(method), COMMON + overrides,
                                 method=method, model=MODEL, dataset="digits", **fields)


def train_and_score(config, workdir):
  """Trains (or resumes) a run and scores its own classifier on the test split."""
  start = time.time()
  run = trainer.train(config, workdir)
  seconds = time.time() - start
  exp = experiment.resolve(config)
  scores = trainer.Evaluator(exp, workdir, tf.distribute.get_strategy()).evaluate(
      run.manager.latest_checkpoint)
  return dict(scores, train_seconds=round(seconds), steps=run.step)


def run_method(method, root, steps):
  workdir = lambda name: os.path.join(root, name)
  budget = [f"train_steps={steps}"]
  if method == "pseudo_label":
    labels = label.label(workdir("supervised"), os.path.join(root, "supervised_labels.json"))
    result = train_and_score(
        _config(method, RECIPES[method] + budget,
                pseudo_labels=os.path.join(root, "supervised_labels.json")),
        workdir(method))
    return {method: dict(result, pseudo_label_accuracy=labels["accuracy_on_the_rest"])}
  if method != "moam":
    return {method: train_and_score(_config(method, RECIPES[method] + budget), workdir(method))}
  results = {"moam_step1": train_and_score(_config("moam", RECIPES["moam"] + budget),
                                           workdir("moam_step1"))}
  labels_path = os.path.join(root, "moam_step1_labels.json")
  labels = label.label(workdir("moam_step1"), labels_path, average_over="crops_rotations")
  step2 = [f"vat_epsilon={MOAM_EPSILON}", "train_epochs=18", "lr_schedule=piecewise",
           "decay_epochs=6,12"]
  results["moam_step2"] = dict(
      train_and_score(_config("moam", step2, pseudo_labels=labels_path,
                              init_from=workdir("moam_step1")), workdir("moam_step2")),
      pseudo_label_accuracy=labels["accuracy_on_the_rest"])
  step3 = LABELLED + ["train_epochs=20", "weight_decay=3e-3", "lr_schedule=piecewise",
                      "decay_epochs=5,10,15"]
  results["moam_step3"] = train_and_score(
      _config("supervised", step3 + ["learning_rate=5e-4"], init_from=workdir("moam_step2")),
      workdir("moam_step3"))
  # Steps 1-2 normalise batches of all four rotations; step 3's upright batches move the
  # BN statistics, and the paper's lr (5e-4, for 20k steps on ImageNet) cannot re-adapt
  # the weights in 80 steps. The same 80 steps at 1e-2 (one value tried, after that
  # result; there is no validation split) show what step 3 does once it can.
  results["moam_step3_lr1e-2"] = train_and_score(
      _config("supervised", step3 + ["learning_rate=1e-2"], init_from=workdir("moam_step2")),
      workdir("moam_step3_lr1e-2"))
  return results


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--methods", default=",".join(ORDER))
  parser.add_argument("--steps", type=int, default=600)
  parser.add_argument("--workdir", default="/tmp/tfssl_bench_s4l")
  args = parser.parse_args()
  logging.set_verbosity(logging.WARNING)
  table = {}
  for method in args.methods.split(","):
    table.update(run_method(method, args.workdir, args.steps))
    with open(os.path.join(args.workdir, "results.json"), "w") as f:
      json.dump(table, f, indent=2)
  print_table(table, f"digits, 10% labels (144 images), {MODEL} width 0.25 at 16 px, "
              f"{args.steps} steps of 32 labelled (+32 unlabelled) images; own classifier "
              "on the test split (360)")


def print_table(table, title, baseline="supervised"):
  """Rows of {method: train_and_score result}, with each top-1's gain over `baseline`'s."""
  print(f"\n{title}")
  print("method | top-1 | top-5 | vs supervised top-1 | steps | train s")
  base = table.get(baseline, {}).get("top1")
  for name, r in table.items():
    gain = f"{r['top1'] - base:+.4f}" if base is not None else "-"
    print(f"{name} | {r['top1']:.4f} | {r['top5']:.4f} | {gain} | {r['steps']} | "
          f"{r['train_seconds']}")


if __name__ == "__main__":
  main()
