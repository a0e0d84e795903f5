"""What resuming the training input costs: the time to a pipeline's first batch at the
start of an epoch and just before its end (whose examples are read, not decoded, and
skipped), with one input pipeline (the epoch's size is known) and two (it is counted first).

    python benchmarks/resume_cost.py   # writes 16 TFRecord files of 1000 x 100 KB (1.6 GB)
"""

import os
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tfssl import datasets  # noqa: E402

FILES, PER_FILE, RECORD_BYTES, BATCH = 16, 1000, 100_000, 128


def _feature(value):
  if isinstance(value, int):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def write_records(folder):
  rng = np.random.default_rng(0)
  for split, files, per_file in (("train", FILES, PER_FILE), ("validation", 1, 10)):
    for index in range(files):
      with tf.io.TFRecordWriter(f"{folder}/{split}-{index:05d}-of-{files:05d}") as writer:
        for k in range(per_file):
          feature = {"image/encoded": _feature(rng.bytes(RECORD_BYTES)),
                     "image/class/label": _feature(1),
                     "image/filename": _feature(f"{index}_{k}".encode())}
          writer.write(tf.train.Example(
              features=tf.train.Features(feature=feature)).SerializeToString())


def main():
  with tempfile.TemporaryDirectory() as folder:
    write_records(folder)
    source = datasets.get_source("imagenet", folder)
    # As for ImageNet's standard shards, the split's size is known without reading it.
    source.num_examples = lambda split: FILES * PER_FILE if split == "train" else 10
    lengths = lambda example, seed: {"bytes": tf.strings.length(example["image"])}
    for pipelines in (1, 2):
      last_batch = FILES * PER_FILE // pipelines // BATCH - 1
      for start in (0, last_batch):
        context = tf.distribute.InputContext(pipelines, 0, pipelines)
        began = time.time()
        next(iter(datasets.train_dataset(source, batch_size=BATCH, preprocess_fn=lengths,
                                         input_context=context, shuffle_buffer=1000,
                                         start_batch=start)))
        print(f"{pipelines} pipeline(s), start_batch {start} (of {last_batch + 1} per "
              f"epoch): first batch after {time.time() - began:.2f} s")


if __name__ == "__main__":
  main()
