"""tf.data input pipelines: training (infinite, shuffled, augmented), evaluation (one
padded pass) and the two-stream (labelled + unlabelled) input of semi-supervised methods.

Every pipeline reads through `source.read`, which shards by the InputContext before
decoding; decoding happens inside the caller's preprocess_fn. An image that fails to
decode there is dropped (tf.data ignore_errors) and reported on stderr: elements carry
their position through the map, so a gap in positions after ignore_errors is a skipped
image.

Everything here is graph ops, no Python callbacks (tf.numpy_function, from_generator):
on a multi-host TPU slice each host's pipeline runs in that host's TF worker, which
cannot call back into Python.
"""

import contextlib
import os
import sys

import numpy as np
import tensorflow as tf


def options(deterministic=True, threads=None):
  options = tf.data.Options()
  options.deterministic = deterministic
  options.autotune.enabled = True
  options.experimental_optimization.map_parallelization = True
  # A private pool keeps input work off the threads that run the step (the SimCLR and
  # big_vision setting); one thread per op lets the map's parallelism use the cores.
  options.threading.private_threadpool_size = threads or os.cpu_count() or 1
  options.threading.max_intra_op_parallelism = 1
  return options


def ids_as_bytes(ids):
  return np.array([i if isinstance(i, bytes) else str(i).encode() for i in ids], dtype=object)


def id_lookup_table(ids, values, default_value):
  """A table from example ids (the string `id` feature) to `values`, usable in tf.data."""
  keys = tf.constant(ids_as_bytes(ids), tf.string)
  return tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(keys, tf.constant(values)),
      default_value=tf.constant(default_value, tf.constant(values).dtype))


def keep_ids_filter(keep_ids):
  table = id_lookup_table(keep_ids, np.ones(len(keep_ids), np.int32), 0)
  return lambda example: table.lookup(example["id"]) > 0


SKIPPED_MESSAGE = ("WARNING: Skipped {} corrupt image(s) that failed to decode ({} so far in "
                   "this input pipeline).")


def _zeros(spec):
  """A tensor that fits `spec`; unknown dimensions get size 0."""
  shape = [d if d is not None else 0 for d in spec.shape] if spec.shape.rank is not None else []
  return tf.zeros(shape, spec.dtype)


def _report_skipped(gap, total):
  """Prints SKIPPED_MESSAGE to stderr (a graph op: it prints on whichever host runs it)."""
  message = tf.strings.format(SKIPPED_MESSAGE, (gap, total))
  with tf.control_dependencies([tf.print(message, output_stream=sys.stderr)]):
    return tf.identity(total)


def map_skipping_corrupt(dataset, fn, finite=False, start=0):
  """fn(position, example) in parallel; examples whose decoding fails are dropped and
  reported on stderr with the running count of this dataset (SKIPPED_MESSAGE).

  Elements carry their position (counted from `start`: a resumed stream continues its
  positions) through the map, so a gap between consecutive positions after ignore_errors
  is a skipped image. A finite dataset gets an end marker (that skips fn) so that images
  skipped at its very end are counted too. The map keeps its input order whatever the
  dataset options say, so the positions arrive in order.
  """
  dataset = dataset.map(lambda example: (example, False))
  if finite:
    marker = tf.nest.map_structure(_zeros, dataset.element_spec[0])
    dataset = dataset.concatenate(tf.data.Dataset.from_tensors((marker, True)))
    out_spec = dataset.enumerate().map(lambda i, e: fn(i, e[0])).element_spec

  def apply(position, element):
    example, is_end = element
    if finite:
      out = tf.cond(is_end, lambda: tf.nest.map_structure(_zeros, out_spec),
                    lambda: fn(position, example))
    else:
      out = fn(position, example)
    return position, out, is_end

  dataset = dataset.enumerate(start).map(apply, num_parallel_calls=tf.data.AUTOTUNE,
                                         deterministic=True).ignore_errors()

  def count(state, element):
    expected, skipped = state
    position, example, is_end = element
    gap = position - expected
    skipped = tf.cond(gap > 0, lambda: _report_skipped(gap, skipped + gap),
                      lambda: tf.identity(skipped))
    return (position + 1, skipped), (example, is_end)

  dataset = dataset.scan((tf.constant(start, tf.int64), tf.constant(0, tf.int64)), count)
  if finite:
    dataset = dataset.filter(lambda example, is_end: tf.logical_not(is_end))
  return dataset.map(lambda example, is_end: example)


def _pipeline_id(input_context):
  return input_context.input_pipeline_id if input_context else 0


@contextlib.contextmanager
def _op_seeds_only():
  """Random ops made inside (in a tf.data function's graph) take only their own seeds.

  Their seeds here are tensors (of the epoch), and tf.random's global seed, where one is
  set, is compared with them in Python (random_seed.get_seed), which fails when it is 0.
  """
  graph = tf.compat.v1.get_default_graph()
  global_seed, graph.seed = graph.seed, None
  try:
    yield
  finally:
    graph.seed = global_seed


def _epoch_seed(seed, epoch):
  """A seed of `seed` and the epoch (a tensor), mixed: tf.data's shuffles of consecutive
  seeds start alike."""
  return tf.random.stateless_uniform([], tf.stack([tf.cast(seed, tf.int64), epoch]),
                                     minval=None, maxval=None, dtype=tf.int64)


def _examples_per_epoch(source, split, keep_ids, input_context):
  """How many examples one epoch of this input pipeline reads (its shard, kept ids only).

  Known without reading where one pipeline reads the whole split; otherwise counted by
  reading this pipeline's shard once, labels and ids only (no image is decoded).
  """
  if keep_ids is None and (input_context is None or input_context.num_input_pipelines == 1):
    return source.num_examples(split)
  dataset = source.read(split, input_context=input_context, decode_labels_only=True)
  if keep_ids is not None:
    dataset = dataset.filter(keep_ids_filter(keep_ids))
  return int(dataset.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))


def train_dataset(source, *, batch_size, preprocess_fn, split=None, keep_ids=None, seed=0,
                  input_context=None, shuffle_buffer=10_000, cache=False, deterministic=True,
                  threads=None, start_batch=0):
  """Infinite shuffled batches of preprocess_fn(example, seed), batch_size per replica.

  The stream is a sequence of epochs whose file order and shuffle are functions of
  (seed, pipeline id, epoch), and every example's augmentation seed a function of (seed,
  pipeline id, its position in the stream). So `start_batch` can resume it: the stream
  starts at epoch start // E and skips the start % E examples of that epoch already
  consumed (start = start_batch * batch_size, E the pipeline's examples per epoch),
  before decoding. Resuming costs reading (not decoding) at most one epoch of this
  pipeline's shard, plus once counting E where several pipelines or `keep_ids` leave it
  unknown; tf.data iterator checkpoints would instead store the shuffle buffer (ImageNet:
  10,000 encoded images, about 1 GB per host) in every checkpoint, and only the chief's
  checkpoint of a job of several hosts is kept.
  The resumed stream is the uninterrupted one exactly, except after images skipped as
  corrupt before the resume point (each shifts it by one example) or with
  deterministic=False (the files' interleaving is then not reproducible at all).

  Args:
    source: a datasets Source.
    batch_size: examples per batch (per replica: one pipeline feeds its replicas).
    preprocess_fn: (features dict, int64[2] stateless seed) -> dict held by the batch.
    split: defaults to source.train_split.
    keep_ids: ids to keep (a label subset); None keeps everything.
    seed: the seeds of file order, shuffling and augmentation derive from it,
      the input pipeline id, the epoch and (augmentation) the running example count.
    input_context: tf.distribute.InputContext; each pipeline reads its own shard.
    shuffle_buffer: examples in the shuffle buffer (<= 1: no shuffling).
    cache: keep the (still encoded) examples in memory after the first pass; every
      epoch then reads the files in the first pass's order.
    deterministic: False lets files interleave in whatever order they arrive (faster
      on remote storage); augmentation seeds stay tied to the example count either way.
    threads: size of the private thread pool (default: all cores).
    start_batch: batches of this stream already consumed (a resumed run's).
  """
  split = split or source.train_split
  pipeline = _pipeline_id(input_context)
  if keep_ids is not None and not len(keep_ids):
    raise ValueError("keep_ids is empty: no example would be read.")

  def read(file_seed):
    dataset = source.read(split, input_context=input_context, shuffle_files=True,
                          seed=file_seed, deterministic=deterministic)
    if keep_ids is not None:
      dataset = dataset.filter(keep_ids_filter(keep_ids))
    return dataset

  if cache:
    cached = read(seed + pipeline).cache()
    read_epoch = lambda epoch: cached
  else:
    read_epoch = lambda epoch: read(_epoch_seed(seed + pipeline, epoch))

  start = start_batch * batch_size
  start_epoch, skip = 0, 0
  if start:
    per_epoch = _examples_per_epoch(source, split, keep_ids, input_context)
    if not per_epoch:
      raise ValueError(f"Input pipeline {pipeline} reads no example of {split}.")
    start_epoch, skip = divmod(start, per_epoch)

  def epoch_stream(epoch):
    with _op_seeds_only():
      dataset = read_epoch(epoch)
      if shuffle_buffer > 1:
        dataset = dataset.shuffle(shuffle_buffer,
                                  seed=_epoch_seed(seed + 7919 * pipeline, epoch))
    return dataset.skip(tf.where(epoch == start_epoch, tf.constant(skip, tf.int64), 0))

  dataset = tf.data.Dataset.range(start_epoch, 2**62).flat_map(epoch_stream)
  base_seed = tf.constant([seed, pipeline], tf.int64)

  def augment(position, example):
    example_seed = tf.random.experimental.stateless_fold_in(base_seed, position)
    return preprocess_fn(example, example_seed)

  dataset = map_skipping_corrupt(dataset, augment, start=start)
  dataset = dataset.batch(batch_size, drop_remainder=True)
  return dataset.prefetch(tf.data.AUTOTUNE).with_options(options(deterministic, threads))


def _pad_batch(batch, batch_size):
  count = tf.shape(batch["mask"])[0]
  missing = batch_size - count

  def pad(x):
    filler = tf.repeat(tf.zeros_like(x[:1]), missing, axis=0)
    padded = tf.concat([x, filler], axis=0)
    return tf.ensure_shape(padded, [batch_size] + x.shape[1:].as_list())

  return tf.nest.map_structure(pad, batch)


def eval_dataset(source, *, batch_size, preprocess_fn, split=None, keep_ids=None,
                 input_context=None, threads=None):
  """One ordered pass over `split` (only `keep_ids`, if given) in full batches; padding
  examples have mask 0.0.

  With several input pipelines every pipeline gets every P-th example and the same number
  of batches (fully masked ones at the end where its shard is shorter), so hosts of a
  multi-host job run the same number of eval steps. That sharding is by example, so each
  pipeline reads (not decodes) the whole split.
  """
  split = split or source.eval_split
  num_pipelines = input_context.num_input_pipelines if input_context else 1
  dataset = source.read(split)
  num_examples = source.num_examples(split)
  if keep_ids is not None:
    dataset = dataset.filter(keep_ids_filter(keep_ids))
    num_examples = len(keep_ids)
  num_batches = None
  if num_pipelines > 1:
    dataset = dataset.shard(num_pipelines, input_context.input_pipeline_id)
    per_pipeline = -(-num_examples // num_pipelines)
    num_batches = -(-per_pipeline // batch_size)

  def prepare(position, example):
    del position
    return dict(preprocess_fn(example), mask=tf.constant(1.0))

  dataset = map_skipping_corrupt(dataset, prepare, finite=True)
  dataset = dataset.batch(batch_size).map(lambda b: _pad_batch(b, batch_size))
  if num_batches is not None:
    empty = dataset.take(1).map(lambda b: tf.nest.map_structure(tf.zeros_like, b))
    dataset = dataset.concatenate(empty.repeat()).take(num_batches)
  return dataset.prefetch(tf.data.AUTOTUNE).with_options(options(True, threads))


def two_stream_dataset(source, *, sup_batch_size, unsup_batch_size, sup_preprocess_fn,
                       unsup_preprocess_fn, sup_ids=None, seed=0, input_context=None,
                       shuffle_buffer=10_000, cache_sup=True, deterministic=True, threads=None,
                       start_batch=0):
  """{"sup": batch of the labelled subset, "unsup": batch of the source's unlabelled split
  (the whole train split, plus STL-10's unlabelled images).

  The streams are independent (own shuffling, own augmentation seeds) and zipped, each
  with its own per-replica batch size. cache_sup keeps the labelled subset's encoded
  examples in memory so its epochs do not re-read the whole split through the filter
  (ImageNet 10%: about 14 GB divided over the hosts). `start_batch` resumes both
  streams (see train_dataset).
  """
  common = dict(input_context=input_context, shuffle_buffer=shuffle_buffer,
                deterministic=deterministic, threads=threads, start_batch=start_batch)
  sup = train_dataset(source, batch_size=sup_batch_size, preprocess_fn=sup_preprocess_fn,
                      keep_ids=sup_ids, seed=seed, cache=cache_sup and sup_ids is not None,
                      **common)
  unsup = train_dataset(source, batch_size=unsup_batch_size, preprocess_fn=unsup_preprocess_fn,
                        split=source.unlabelled_split, seed=seed + 1, **common)
  return zip_streams(sup, unsup, deterministic, threads)


def zip_streams(sup, unsup, deterministic=True, threads=None):
  """{"sup": a batch of `sup`, "unsup": a batch of `unsup`} per element."""
  dataset = tf.data.Dataset.zip({"sup": sup, "unsup": unsup})
  return dataset.prefetch(tf.data.AUTOTUNE).with_options(options(deterministic, threads))


def steps_per_epoch(num_examples, global_batch_size):
  """Full global batches in one pass over num_examples (at least 1)."""
  return max(num_examples // global_batch_size, 1)
