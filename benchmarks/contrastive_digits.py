"""Evidence of learning for SimCLR and FNC on real images (`digits`).

1. Pretraining without labels (the online linear head is off, so no label reaches the
   run) on the 1437 training images; linear evaluation (tfssl.eval_hub) of the exported
   `default` features against the same network at its random initialisation.
2. Fine-tuning (`train_mode=finetune`) of each pretrained run on 10% of the labels (144
   images): the whole network (SimCLRv2's ft_proj_selector=1) at two learning rates, and
   a linear head on the frozen backbone; against `supervised` on the same labels with the
   same recipe, steps and learning rate; top-1/top-5 on the 360 test images from
   `--run_eval`. There is no validation split: every learning rate is reported.

    python benchmarks/contrastive_digits.py [--methods=simclr,fnc,fnc_bank] [--workdir=DIR]
                                            [--skip_finetune]

`fnc_bank` is FNC with its released momentum-encoder memory bank (`fnc` is in-batch).

About 30 minutes on 2 CPU cores.
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

MODEL = "resnet18_v2"
# Digits are 8x8 scans: 16 px keeps all their detail.
COMMON = ["model_width=0.25", "image_size=16", "steps_per_loop=25",
          "checkpoint_every_steps=100000", "log_every_seconds=60", "summary_images=0",
          "eval_batch_size=360"]
# As the rows in the README were measured, before SimCLR's bicubic crops and zero residual
# init became its defaults.
_AS_MEASURED = ["crop_resize_method=bilinear", "zero_init_residual=false"]
# SimCLR's CIFAR-10 recipe (LARS, lr 1.0 x B/256, temperature 0.5, colour strength 0.5,
# no blur) at a batch the 2 cores can afford.
PRETRAIN = ["online_linear_head=false", "batch_size=128", "train_epochs=100",
            "warmup_epochs=10", "learning_rate=1.0", "lr_base_batch_size=256",
            "weight_decay=1e-4", "temperature=0.5", "color_jitter_strength=0.5",
            "use_blur=false", "crop_area_min=0.3", "sync_bn=false"] + _AS_MEASURED
PRETRAIN_RECIPES = {
    "simclr": [],
    # Without RandAugment (FNC's default now): its translations of up to 70 px and
    # cutouts of up to 56 px, fixed in pixels, would grey out these 16-px images.
    # In-batch (memory_multiplier=0), as measured before the bank was FNC's default.
    "fnc": ["support_size=2", "fn_topk=10", "fn_threshold=0.7", "use_randaugment=false",
            "memory_multiplier=0"],
    # FNC's released memory bank at its multiplier, 16 x 128 = 2048 momentum-encoder
    # projections (the step's 512 and those of the 3 steps before), with the momentum
    # encoder's decay at 0.99 for these 1100 steps (FNC's 0.999 is made for 31k: here its
    # average would still hold a third of its random start at the end).
    "fnc_bank": ["support_size=2", "fn_topk=10", "fn_threshold=0.7", "use_randaugment=false",
                 "memory_multiplier=16", "moving_average_decay=0.99"],
}
METHOD_OF_RUN = {"fnc_bank": "fnc"}
# The S4L digits benchmark's supervised recipe, for fine-tuning and the baseline alike,
# at each of LEARNING_RATES.
LABELLED = ["labels=10pct", "batch_size=32", "train_steps=600", "optimizer=sgd",
            "lr_base_batch_size=32", "lr_schedule=cosine", "warmup_epochs=0",
            "weight_decay=5e-4", "weight_decay_mode=l2", "crop_area_min=0.5", "sync_bn=false"]
LEARNING_RATES = (0.1, 0.01)
FINETUNE = {  # name: (workdir name, overrides)
    "whole network": ("finetune", ["fine_tune_after_block=-1", "ft_proj_selector=1"] +
                      _AS_MEASURED),
    "backbone frozen": ("frozen", ["fine_tune_after_block=4", "ft_proj_selector=0"] +
                        _AS_MEASURED),
}


def make_config(method, overrides, **fields):
  return config_lib.build_config(methods.get_method(method), COMMON + overrides,
                                 method=method, model=MODEL, dataset="digits", **fields)


def _train(config, workdir):
  start = time.time()
  trainer.train(config, workdir)
  return time.time() - start


def linear_top1(workdir):
  row = eval_hub.evaluate(os.path.join(workdir, "export", "hub"), "linear",
                          os.path.join(workdir, "eval_linear"), representation="default")
  return row["top1"]


def labelled_result(method, workdir, learning_rate, overrides, **fields):
  config = make_config(method, LABELLED + [f"learning_rate={learning_rate}"] + overrides, **fields)
  seconds = _train(config, workdir)
  results = trainer.run_eval(config, workdir)
  final = results[max(results, key=int)]
  return dict(top1=final["top1"], top5=final["top5"], seconds=seconds)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--methods", default="simclr,fnc")
  parser.add_argument("--workdir", default="/tmp/tfssl_bench_contrastive")
  parser.add_argument("--skip_finetune", action="store_true",
                      help="only the label-free pretraining and its linear evaluation")
  args = parser.parse_args()
  logging.set_verbosity(logging.WARNING)
  root = args.workdir
  random_dir = os.path.join(root, "random_init")
  _train(make_config("simclr", PRETRAIN + ["train_epochs=0"]), random_dir)
  random_top1 = linear_top1(random_dir)
  supervised = {} if args.skip_finetune else {
      lr: labelled_result("supervised", os.path.join(root, _lr_dir("supervised", lr)), lr, [])
      for lr in LEARNING_RATES}
  pretrained, tuned = {}, []
  for run in args.methods.split(","):
    method = METHOD_OF_RUN.get(run, run)
    pretrain_dir = os.path.join(root, run, "pretrain")
    seconds = _train(make_config(method, PRETRAIN + PRETRAIN_RECIPES[run]), pretrain_dir)
    pretrained[run] = (linear_top1(pretrain_dir), seconds)
    print(f"{run}: linear top-1 {pretrained[run][0]:.4f} (random init {random_top1:.4f}), "
          f"{seconds:.0f} s", flush=True)
    for setting, (name, overrides) in ({} if args.skip_finetune else FINETUNE).items():
      rates = LEARNING_RATES if setting == "whole network" else LEARNING_RATES[:1]
      for lr in rates:
        # Fine-tuning needs the pretraining run's architecture, so the method's own keys.
        workdir = os.path.join(root, run, _lr_dir(name, lr))
        result = labelled_result(method, workdir, lr,
                                 PRETRAIN_RECIPES[run] + ["train_mode=finetune"] + overrides,
                                 init_from=pretrain_dir)
        tuned.append((run, setting, lr, result))
  print(f"\ndigits, {MODEL} width 0.25, 16 px: linear top-1 of `default` after pretraining "
        f"without labels (random init: {random_top1:.4f})")
  print("method | linear top-1 | gain over random | pretrain s")
  for method, (linear, seconds) in pretrained.items():
    print(f"{method} | {linear:.4f} | {linear - random_top1:+.4f} | {seconds:.0f}")
  print("\nfine-tuned on 10% of the labels (144 images), 600 steps of 32")
  print("method | fine-tuned | lr | top-1 | top-5 | supervised top-1 at that lr | gain")
  for lr, result in supervised.items():
    print(f"supervised | - | {lr} | {result['top1']:.4f} | {result['top5']:.4f} | | ")
  for method, setting, lr, result in tuned:
    baseline = supervised[lr]["top1"]
    print(f"{method} | {setting} | {lr} | {result['top1']:.4f} | {result['top5']:.4f} | "
          f"{baseline:.4f} | {result['top1'] - baseline:+.4f}")


def _lr_dir(name, learning_rate):
  """Workdir name of a labelled run; the first learning rate keeps the plain name."""
  return f"{name}_10pct" if learning_rate == LEARNING_RATES[0] else f"{name}_10pct_lr{learning_rate}"


if __name__ == "__main__":
  main()
