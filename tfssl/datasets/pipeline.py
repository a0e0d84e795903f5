"""tf.data input pipelines: training (infinite, shuffled, augmented), evaluation (one
padded pass) and the two-stream (labelled + unlabelled) input of semi-supervised methods."""

import numpy as np
import tensorflow as tf
from absl import logging

_SKIPPED = {"count": 0}


def _options(deterministic=True, threads=None):
  options = tf.data.Options()
  options.deterministic = deterministic
  options.experimental_optimization.map_parallelization = True
  if threads:
    options.threading.private_threadpool_size = threads
  return options


def _keep_ids_filter(keep_ids):
  keys = tf.constant(np.asarray(keep_ids).astype(bytes))
  table = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(keys, tf.ones_like(keys, dtype=tf.int32)),
      default_value=0)
  return lambda example: table.lookup(example["id"]) > 0


def _log_skipped(gap):
  _SKIPPED["count"] += int(gap)
  logging.warning("Skipped %d corrupt image(s) that failed to decode (%d so far in this "
                  "process).", int(gap), _SKIPPED["count"])
  return np.int64(0)


def skipped_corrupt_images():
  return _SKIPPED["count"]


def _count_skipped(dataset):
  """Elements carry their position; a gap after ignore_errors is a skipped corrupt image."""

  def step(expected, element):
    position, example = element
    gap = position - expected
    logged = tf.cond(gap > 0, lambda: tf.numpy_function(_log_skipped, [gap], tf.int64),
                     lambda: tf.constant(0, tf.int64))
    with tf.control_dependencies([logged]):
      return position + 1, example

  return dataset.scan(tf.constant(0, tf.int64), step)


def _map_skipping_corrupt(dataset, fn):
  """Applies fn (which decodes) in order; images that fail to decode are dropped and logged."""
  dataset = dataset.enumerate().map(lambda i, example: (i, fn(i, example)),
                                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  dataset = dataset.ignore_errors()
  return _count_skipped(dataset)


def _pipeline_id(input_context):
  return input_context.input_pipeline_id if input_context else 0


def train_dataset(source, *, batch_size, preprocess_fn, split=None, keep_ids=None, seed=0,
                  input_context=None, shuffle_buffer=10_000, cache=False, deterministic=True):
  """Infinite shuffled batches of preprocess_fn(example, seed) (per-replica batch_size).

  Seeds are stateless and reproducible: (seed, input pipeline, running example count).
  """
  split = split or source.train_split
  pipeline = _pipeline_id(input_context)
  dataset = source.read(split, input_context=input_context, shuffle_files=True,
                        seed=seed + pipeline)
  if keep_ids is not None:
    dataset = dataset.filter(_keep_ids_filter(keep_ids))
  if cache:
    dataset = dataset.cache()
  if shuffle_buffer > 1:
    dataset = dataset.shuffle(shuffle_buffer, seed=seed + 7919 * pipeline,
                              reshuffle_each_iteration=True)
  dataset = dataset.repeat()
  base_seed = tf.constant([seed, pipeline], tf.int64)

  def augment(position, example):
    example_seed = tf.random.experimental.stateless_fold_in(base_seed, position)
    return preprocess_fn(example, example_seed)

  dataset = _map_skipping_corrupt(dataset, augment)
  dataset = dataset.batch(batch_size, drop_remainder=True)
  return dataset.prefetch(tf.data.AUTOTUNE).with_options(_options(deterministic))


def _pad_batch(batch, batch_size):
  count = tf.shape(batch["mask"])[0]
  missing = batch_size - count

  def pad(x):
    filler = tf.repeat(tf.zeros_like(x[:1]), missing, axis=0)
    padded = tf.concat([x, filler], axis=0)
    return tf.ensure_shape(padded, [batch_size] + x.shape[1:].as_list())

  return tf.nest.map_structure(pad, batch)


def eval_dataset(source, *, batch_size, preprocess_fn, split=None, input_context=None):
  """One ordered pass over `split`; every batch is full, padding has mask 0.0."""
  split = split or source.eval_split
  dataset = source.read(split, input_context=input_context)

  def prepare(position, example):
    del position
    return dict(preprocess_fn(example), mask=tf.constant(1.0))

  dataset = _map_skipping_corrupt(dataset, prepare)
  dataset = dataset.batch(batch_size).map(lambda b: _pad_batch(b, batch_size))
  return dataset.prefetch(tf.data.AUTOTUNE).with_options(_options(True))


def two_stream_dataset(source, *, sup_batch_size, unsup_batch_size, sup_preprocess_fn,
                       unsup_preprocess_fn, sup_ids=None, seed=0, input_context=None,
                       shuffle_buffer=10_000, cache_sup=True):
  """{"sup": labelled subset batch, "unsup": batch of the whole train split}, zipped."""
  sup = train_dataset(source, batch_size=sup_batch_size, preprocess_fn=sup_preprocess_fn,
                      keep_ids=sup_ids, seed=seed, input_context=input_context,
                      shuffle_buffer=shuffle_buffer, cache=cache_sup and sup_ids is not None)
  unsup = train_dataset(source, batch_size=unsup_batch_size, preprocess_fn=unsup_preprocess_fn,
                        seed=seed + 1, input_context=input_context,
                        shuffle_buffer=shuffle_buffer)
  return tf.data.Dataset.zip({"sup": sup, "unsup": unsup}).prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(num_examples, global_batch_size):
  return max(num_examples // global_batch_size, 1)
