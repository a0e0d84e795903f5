"""Crops/s per CPU core of the augmentation pipeline against decode-only, on generated JPEGs.

    python benchmarks/augmentation_throughput.py [--images 256] [--size 224] [--seconds 20]

Target (DESIGN.md): two SimCLR views at 224 px >= 300 crops/s per core.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfssl import preprocess as pp  # noqa: E402


def make_jpegs(count, side=256, seed=0):
  """Smooth random photos-like images (noise compresses unrealistically badly)."""
  rng = np.random.RandomState(seed)
  coarse = rng.rand(count, 16, 16, 3).astype(np.float32)
  images = tf.image.resize(coarse, [side, side], method="bicubic")
  images = tf.clip_by_value(images + rng.rand(count, side, side, 3).astype(np.float32) * 0.1, 0, 1)
  return [tf.io.encode_jpeg(tf.image.convert_image_dtype(im, tf.uint8), quality=90).numpy()
          for im in images]


def measure(jpegs, fn, crops_per_image, threads, seconds, batch=64):
  dataset = tf.data.Dataset.from_tensor_slices(jpegs).repeat().enumerate()
  dataset = dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE).batch(batch).prefetch(4)
  options = tf.data.Options()
  options.threading.private_threadpool_size = threads
  iterator = iter(dataset.with_options(options))
  for _ in range(5):  # warm up autotuning
    next(iterator)
  count, start = 0, time.time()
  while time.time() - start < seconds:
    next(iterator)
    count += batch
  return count * crops_per_image / (time.time() - start)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--images", type=int, default=256)
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--seconds", type=float, default=20.0)
  parser.add_argument("--threads", type=int, default=os.cpu_count())
  args = parser.parse_args()
  jpegs = make_jpegs(args.images)

  def decode_only(index, jpeg):
    del index
    return tf.io.decode_jpeg(jpeg, channels=3)

  def two_simclr_views(index, jpeg):
    seed = tf.stack([tf.constant(0, tf.int64), index])
    first, second = pp.split_seed(seed, 2)
    return tf.stack([pp.simclr_train(jpeg, first, args.size),
                     pp.simclr_train(jpeg, second, args.size)])

  cores = args.threads
  decode_rate = measure(jpegs, decode_only, 1, cores, args.seconds)
  simclr_rate = measure(jpegs, two_simclr_views, 2, cores, args.seconds)
  print(f"threads (cores): {cores}")
  print(f"decode only 256x256 JPEG  : {decode_rate / cores:8.1f} images/s per core")
  print(f"2 SimCLR views at {args.size} px : {simclr_rate / cores:8.1f} crops/s per core "
        f"(target >= 300)")
  print(f"ratio views/decode        : {simclr_rate / decode_rate:8.3f}")


if __name__ == "__main__":
  main()
