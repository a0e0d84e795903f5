"""Train-step images/s per backbone with and without XLA, and the GFLOP/s achieved.

    python benchmarks/model_throughput.py
    python benchmarks/model_throughput.py --models resnet18_v2:32,resnet50_v2:64:imagenet \
        --batch 32 --steps 3 --rounds 3

A model is `name:size[:stem]`, stem `cifar` or `imagenet` (default: the builder's choice,
CIFAR for <= 64 px). The step is forward + backward + SGD-momentum update of the
backbone and a 10-way head on synthetic data, one `tf.function` with
`jit_compile=True` and one without, timed in alternating rounds in one run (best round
per mode) so the ratio is comparable on a shared, noisy machine. FLOPs per image are the
conv/dense multiply-adds of the forward pass (from layer shapes) x 2 (FLOPs) x 3
(forward + backward).

Target (DESIGN.md): a ResNet/WRN step at >= 70% of the machine's 3x3-conv GFLOP/s.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfssl import models  # noqa: E402

_DEFAULT_MODELS = "resnet18_v2:32,resnet50_v2:64:imagenet,wide_resnet28_2:32"
_STEMS = {None: None, "cifar": True, "imagenet": False}


def parse_model(entry):
  name, size, *stem = entry.split(":")
  stem = stem[0] if stem else None
  if stem not in _STEMS:
    raise SystemExit(f"Unknown stem {stem!r} in {entry!r}: use cifar or imagenet.")
  return name, int(size), stem


def stem_label(model, size):
  if "stem" not in model.output:
    return "-"
  return "3x3/1" if model.output["stem"].shape[1] == size else "7x7/2+mp"


def train_step(name, size, cifar_stem, batch, jit_compile):
  """A fresh model per mode, so the two modes share no traced state."""
  model = models.build_model(name, image_size=size, cifar_stem=cifar_stem)
  head = keras.layers.Dense(10, name="head")
  head.build(model.output["default"].shape)
  variables = model.trainable_variables + head.trainable_variables
  optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
  optimizer.build(variables)
  images = tf.random.uniform([batch, size, size, 3])
  labels = tf.random.uniform([batch], maxval=10, dtype=tf.int32)

  @tf.function(jit_compile=jit_compile)
  def step(images, labels):
    with tf.GradientTape() as tape:
      logits = head(model(images, training=True)["default"])
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  def run(steps):
    for _ in range(steps):
      loss = step(images, labels)
    loss.numpy()

  run(2)  # trace, compile, warm up
  return run, model


def best_images_per_second(runs, batch, steps, rounds):
  """Alternates the modes round by round and keeps each one's best round.

  On a shared machine other processes slow some rounds down; alternating exposes both
  modes to the same interference and the best round is the least disturbed one.
  """
  best = {mode: 0.0 for mode in runs}
  for _ in range(rounds):
    for mode, run in runs.items():
      start = time.perf_counter()
      run(steps)
      best[mode] = max(best[mode], steps * batch / (time.perf_counter() - start))
  return best


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--models", default=_DEFAULT_MODELS,
                      help="comma-separated name:size[:cifar|imagenet]")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
  parser.add_argument("--rounds", type=int, default=3, help="timed rounds per model and mode")
  args = parser.parse_args()

  print(f"batch {args.batch}, best of {args.rounds} rounds of {args.steps} steps, "
        f"{os.cpu_count()} CPUs, "
        f"TF {tf.__version__}, Keras {keras.__version__}")
  header = (f"{'model':>16} {'px':>4} {'stem':>8} {'GFLOP/img':>10} {'img/s XLA':>10} "
            f"{'img/s TF':>9} {'XLA/TF':>7} {'GFLOP/s XLA':>12} {'GFLOP/s TF':>11}")
  print(header)
  print("-" * len(header))
  for entry in args.models.split(","):
    name, size, stem = parse_model(entry)
    runs, model = {}, None
    for jit_compile in (True, False):
      runs[jit_compile], model = train_step(name, size, _STEMS[stem], args.batch, jit_compile)
    rates = best_images_per_second(runs, args.batch, args.steps, args.rounds)
    xla, plain = rates[True], rates[False]
    # Train FLOPs: 2 FLOPs per multiply-add, backward ~2x the forward.
    train_gflop = 3 * 2 * models.forward_multiply_adds(model) / 1e9
    stem_name = stem_label(model, size)
    print(f"{name:>16} {size:>4} {stem_name:>8} {train_gflop:>10.3f} {xla:>10.1f} {plain:>9.1f} "
          f"{xla / plain:>7.2f} {xla * train_gflop:>12.1f} {plain * train_gflop:>11.1f}",
          flush=True)


if __name__ == "__main__":
  main()
