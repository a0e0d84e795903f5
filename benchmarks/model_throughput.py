"""Train-step images/s per model, with and without XLA, and achieved GFLOP/s.

    python benchmarks/model_throughput.py [--models resnet18_v2:32,resnet50_v2:64] [--batch 32]

Measured in one run so the ratios are comparable on a noisy machine. FLOPs are counted
from the model's forward graph (TF profiler) and tripled for forward + backward.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.profiler import model_analyzer  # noqa: E402
from tensorflow.python.profiler import option_builder  # noqa: E402

from tfssl import models  # noqa: E402


def forward_flops(model, size):
  fn = tf.function(lambda x: model(x, training=False)["default"])
  graph = fn.get_concrete_function(tf.TensorSpec([1, size, size, 3])).graph
  options = option_builder.ProfileOptionBuilder.float_operation()
  options["output"] = "none"
  return model_analyzer.profile(graph, options=options).total_float_ops


def step_rate(model, head, size, batch, jit, seconds):
  optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
  variables = model.trainable_variables + head.trainable_variables
  optimizer.build(variables)
  images = tf.random.uniform([batch, size, size, 3])
  labels = tf.random.uniform([batch], maxval=10, dtype=tf.int32)

  @tf.function(jit_compile=jit)
  def gradients(images, labels):
    with tf.GradientTape() as tape:
      logits = head(model(images, training=True)["default"])
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    return tape.gradient(loss, variables)

  @tf.function
  def step(images, labels):
    optimizer.apply_gradients(zip(gradients(images, labels), variables))

  for _ in range(3):
    step(images, labels)
  count, start = 0, time.time()
  while time.time() - start < seconds or count < 3:
    step(images, labels)
    count += 1
  return count * batch / (time.time() - start)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--models", default="resnet18_v2:32,wide_resnet28_2:32,resnet50_v2:64")
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--seconds", type=float, default=15.0)
  args = parser.parse_args()
  print(f"{'model':>18} {'px':>4} {'GFLOP/img':>10} {'img/s XLA':>10} {'img/s TF':>9} "
        f"{'XLA/TF':>7} {'GFLOP/s XLA':>12}")
  for entry in args.models.split(","):
    name, size = entry.split(":")
    size = int(size)
    model = models.build_model(name, image_size=size)
    head = keras.layers.Dense(10)
    head.build((None, model(tf.zeros([1, size, size, 3]))["default"].shape[-1]))
    train_flops = 3 * forward_flops(model, size)
    xla = step_rate(model, head, size, args.batch, True, args.seconds)
    plain = step_rate(model, head, size, args.batch, False, args.seconds)
    print(f"{name:>18} {size:>4} {train_flops / 1e9:>10.3f} {xla:>10.1f} {plain:>9.1f} "
          f"{xla / plain:>7.2f} {xla * train_flops / 1e9:>12.1f}")


if __name__ == "__main__":
  main()
