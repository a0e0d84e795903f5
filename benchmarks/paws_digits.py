"""Evidence of learning for PAWS on real images (`digits`) with a few labels per class.

1. `paws` pretrains on the 1437 training images (all as unlabelled data) with a support
   set drawn from `--labels` (default 5 per class: 50 labelled images); soft
   nearest-neighbour evaluation (`eval_hub --protocol=snn`, the same labelled images as
   support) of its `proj` output, as PAWS reports it, and of its `default` features.
2. The paper's two fine-tunings of that run on the same labels: SuNCEt (CIFAR-10's,
   `train_mode=suncet`, scored with soft-NN on `proj`) and a new head on fc1 + bn1
   (ImageNet's, `train_mode=finetune`, scored by `--run_eval`), each with its recipe.
3. `supervised` trains on the same labelled images for as many steps as PAWS pretrains;
   it is scored with soft-NN on its `default` features and with its own classifier.
4. The same network at its random initialisation, soft-NN on `default`.
Top-1 on the 360 test images.

    python benchmarks/paws_digits.py [--labels=5_per_class] [--epochs=100] [--workdir=DIR]

About 25 minutes on 2 CPU cores. Rerunning with the same --workdir reuses finished runs.
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
from tfssl import experiment  # noqa: E402
from tfssl import methods  # noqa: E402
from tfssl import trainer  # noqa: E402

MODEL = "resnet18_v2"
# Digits are 8x8 scans: 16 px keeps all their detail (small crops: 9 px, the CIFAR ratio).
COMMON = ["model_width=0.25", "image_size=16", "steps_per_loop=25",
          "checkpoint_every_steps=100000", "log_every_seconds=60", "summary_images=0",
          "eval_batch_size=360", "sync_bn=false"]
# suncet's CIFAR-10 recipe (LARS, lr 0.8 -> 3.2 over 10 epochs, cosine to 0.032, tau 0.1,
# T 0.25, me-max, smoothing 0.1, colour strength 0.5, solarize/equalize, 2 + 6 crops) at
# an unlabelled batch the 2 cores can afford; the support set is every class x 5 images
# x 2 views.
PAWS = ["batch_size=64", "support_classes=10", "support_images_per_class=5",
        "support_views=2", "num_local_views=6", "multicrop=cifar"]
# suncet's fine-tunings: cifar10_snn.yaml (SuNCEt: LARS lr 0.1 cosine to 0.01, 30 epochs of
# labelled / support images, no smoothing) and imgnt_fine_tune.yaml (Nesterov SGD lr 0.02
# cosine to 0, no weight decay, 50 epochs of the labelled images).
SUNCET = PAWS[:-2] + ["train_mode=suncet", "learning_rate=0.1", "end_lr_factor=0.1",
                      "warmup_epochs=0", "weight_decay=0", "label_smoothing=0",
                      "train_epochs=30"]
FINETUNE = ["train_mode=finetune", "batch_size=32", "optimizer=sgd", "nesterov=true",
            "learning_rate=0.02", "lr_scaling=none", "lr_schedule=cosine", "end_lr_factor=0",
            "warmup_epochs=0", "weight_decay=0", "crop_area_min=0.08", "train_epochs=50"]
# The S4L digits benchmark's supervised recipe.
SUPERVISED = ["batch_size=32", "optimizer=sgd", "learning_rate=0.1", "lr_base_batch_size=32",
              "lr_schedule=cosine", "warmup_epochs=0", "weight_decay=5e-4",
              "weight_decay_mode=l2", "crop_area_min=0.5"]


def _config(method, overrides, **fields):
  return config_lib.build_config(methods.get_method(method), COMMON + overrides,
                                 method=method, model=MODEL, dataset="digits", **fields)


def _train(config, workdir):
  start = time.time()
  trainer.train(config, workdir)
  return time.time() - start


def score(workdir, protocol, representation, labels):
  row = eval_hub.evaluate(os.path.join(workdir, "export", "hub"), protocol,
                          os.path.join(workdir, f"eval_{protocol}_{representation}"),
                          representation=representation, labels=labels)
  return row["top1"]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--labels", default="5_per_class")
  parser.add_argument("--epochs", type=float, default=100.0)
  parser.add_argument("--workdir", default="/tmp/tfssl_paws_digits")
  args = parser.parse_args()
  logging.set_verbosity(logging.WARNING)

  paws_config = _config("paws", PAWS + [f"train_epochs={args.epochs}"], labels=args.labels)
  steps = experiment.resolve(paws_config).total_steps
  paws_dir = os.path.join(args.workdir, "paws")
  seconds = _train(paws_config, paws_dir)
  print(f"paws: {steps} steps in {seconds:.0f}s", flush=True)

  supervised_dir = os.path.join(args.workdir, "supervised")
  supervised_config = _config("supervised", SUPERVISED + [f"train_steps={steps}"],
                              labels=args.labels)
  seconds = _train(supervised_config, supervised_dir)
  print(f"supervised: {steps} steps in {seconds:.0f}s", flush=True)
  random_dir = os.path.join(args.workdir, "random_init")
  _train(_config("paws", PAWS + ["train_epochs=0"], labels=args.labels), random_dir)

  suncet_dir = os.path.join(args.workdir, "paws_suncet")
  _train(_config("paws", SUNCET, labels=args.labels, init_from=paws_dir), suncet_dir)
  finetune_dir = os.path.join(args.workdir, "paws_finetune")
  finetune_config = _config("paws", FINETUNE, labels=args.labels, init_from=paws_dir)
  _train(finetune_config, finetune_dir)
  finetuned = trainer.run_eval(finetune_config, finetune_dir)

  results = trainer.run_eval(supervised_config, supervised_dir)
  rows = [
      ("paws", "snn", "proj", score(paws_dir, "snn", "proj", args.labels)),
      ("paws", "snn", "default", score(paws_dir, "snn", "default", args.labels)),
      ("paws + SuNCEt fine-tuning", "snn", "proj",
       score(suncet_dir, "snn", "proj", args.labels)),
      ("paws + fine-tuning (fc1 + new head)", "own classifier", "logits",
       finetuned[max(finetuned, key=int)]["top1"]),
      ("supervised", "snn", "default", score(supervised_dir, "snn", "default", args.labels)),
      ("supervised", "own classifier", "logits", results[max(results, key=int)]["top1"]),
      ("random init", "snn", "default", score(random_dir, "snn", "default", args.labels)),
  ]
  print(f"\ndigits, labels={args.labels}, {steps} steps each, top-1 on 360 test images")
  print("run | evaluation | representation | top-1")
  print("--- | ---------- | -------------- | -----")
  for run, protocol, representation, top1 in rows:
    print(f"{run} | {protocol} | {representation} | {top1:.4f}")


if __name__ == "__main__":
  main()
