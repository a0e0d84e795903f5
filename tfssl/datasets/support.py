"""PAWS's class-stratified support stream (Assran et al. 2021).

Every training step sees a support set of exactly `images_per_class` labelled images of
each of `classes_per_step` distinct classes. The sampler that picks them is tf.data graph
ops (no Python callbacks, so it runs in a remote TPU host's worker) and seeded: classes
come from a reshuffled ring of the labelled classes, images from a reshuffled ring per
class, so no image appears twice in one step, and no image repeats within a round of a
class's ring (when `images_per_class` does not divide a class's count, the remainder of
each round's permutation is left for later rounds; classes likewise). A ring's
permutations are stateless (RandomIndexShuffle of the seed, the ring and the round), so
the only state is how often each class has been drawn.

The step's support set is one class-major list, split into equal per-replica batches:
replica r of R gets slice r. Every input pipeline runs the same sampler and keeps the
slices of its own replicas, so the support gathered over all replicas is the step's whole
set on any number of hosts. A class may straddle two replicas; the loss reads the true
labels, so that is harmless. Each pipeline holds the labelled subset's (encoded) examples
in host memory, since a sampler needs random access to them: read once through
`source.read` into one tensor per feature, from which every drawn index is sliced; the
graph itself holds only indices and labels.
"""

import numpy as np
import tensorflow as tf
from absl import logging

from tfssl.datasets import pipeline
from tfssl.errors import UserError


def check_support(labels, classes_per_step, images_per_class, num_replicas=1):
  """Raises UserError unless every step can draw the support set from `labels`."""
  labels = np.asarray(labels)
  classes, counts = np.unique(labels, return_counts=True)
  if classes_per_step < 1 or images_per_class < 1:
    raise UserError(f"The support set needs at least one class and one image per class; got "
                    f"support_classes={classes_per_step}, "
                    f"support_images_per_class={images_per_class}.")
  if classes_per_step > len(classes):
    raise UserError(f"support_classes={classes_per_step}, but the labelled subset holds only "
                    f"{len(classes)} classes. Ask for at most {len(classes)} classes per step, "
                    "or label more classes.")
  if counts.min() < images_per_class:
    smallest = classes[np.argmin(counts)]
    short = int(np.sum(counts < images_per_class))
    raise UserError(
        f"support_images_per_class={images_per_class}, but class {smallest} has only "
        f"{counts.min()} labelled images ({short} classes have fewer than "
        f"{images_per_class}). Ask for at most {counts.min()} images per class, or use a "
        "larger --labels subset.")
  support_size = classes_per_step * images_per_class
  if support_size % num_replicas:
    raise UserError(f"The support set of {classes_per_step} classes x {images_per_class} images "
                    f"= {support_size} does not split evenly over {num_replicas} replicas; "
                    f"change support_classes or support_images_per_class.")


def _index_shuffle(index, seed, max_index):
  """Position of `index` in the permutation of [0, max_index] that `seed` ([..., 3]) picks.

  The raw op: tf.random.experimental.index_shuffle pads a batch of seeds ([n, 2]) wrongly.
  """
  return tf.raw_ops.RandomIndexShuffle(index=index, seed=seed, max_index=max_index, rounds=4)


def support_indices(labels, classes_per_step, images_per_class, seed=0):
  """Infinite tf.data.Dataset of int64 [classes_per_step * images_per_class]: one step's
  indices into `labels`, class-major (see the module doc)."""
  check_support(labels, classes_per_step, images_per_class)
  labels = np.asarray(labels)
  classes, counts = np.unique(labels, return_counts=True)
  num_classes = len(classes)
  class_draws_per_round = num_classes // classes_per_step
  by_class = np.argsort(labels, kind="stable")  # each class's indices, one class after another

  @tf.autograph.experimental.do_not_convert
  def step_indices(draws, step):
    by_class_t = tf.constant(by_class, tf.int64)
    counts_t = tf.constant(counts, tf.int64)
    offsets = tf.constant(np.cumsum(counts) - counts, tf.int64)
    # The classes: draw `slot` of round `round_`'s permutation of the classes.
    round_, slot = step // class_draws_per_round, step % class_draws_per_round
    picked = _index_shuffle(slot * classes_per_step + tf.range(classes_per_step, dtype=tf.int64),
                            tf.stack([tf.constant(seed, tf.int64), 0, round_]),
                            tf.constant(num_classes - 1, tf.int64))
    # Each class's images: its d-th draw is draw d % m of round d // m of its own ring,
    # m = how many draws of images_per_class one permutation of its images holds.
    count = tf.gather(counts_t, picked)
    done = tf.gather(draws, picked)
    per_round = count // images_per_class
    within = ((done % per_round)[:, None] * images_per_class
              + tf.range(images_per_class, dtype=tf.int64)[None, :])
    ring_seed = tf.stack([tf.fill([classes_per_step], tf.constant(seed, tf.int64)), 1 + picked,
                          done // per_round], axis=1)
    shape = [classes_per_step, images_per_class]
    position = _index_shuffle(
        tf.reshape(within, [-1]),
        tf.reshape(tf.broadcast_to(ring_seed[:, None, :], shape + [3]), [-1, 3]),
        tf.reshape(tf.broadcast_to(count[:, None] - 1, shape), [-1]))
    start = tf.repeat(tf.gather(offsets, picked), images_per_class)
    draws = tf.tensor_scatter_nd_add(draws, picked[:, None],
                                     tf.ones([classes_per_step], tf.int64))
    return draws, tf.gather(by_class_t, start + position)

  return tf.data.Dataset.counter().scan(tf.zeros([num_classes], tf.int64), step_indices)


def _labels_of(source, split, keep_ids):
  """Labels of the examples of `keep_ids`, in the order `source.read(split)` gives them."""
  ids, labels = source.labels_and_ids(split)
  keep = set(pipeline.ids_as_bytes(keep_ids))
  return labels[np.array([i in keep for i in pipeline.ids_as_bytes(ids)], bool)]


def _read_whole(source, split, keep_ids, labels):
  """The examples of `keep_ids` as one element (a tensor per feature, split order),
  checked against `labels` (what the sampler drew from)."""
  dataset = source.read(split).filter(pipeline.keep_ids_filter(keep_ids)).batch(len(labels))

  @tf.autograph.experimental.do_not_convert
  def check(examples):
    read = tf.cast(examples["label"], tf.int64)
    same_size = tf.debugging.assert_equal(
        tf.size(read), len(labels), message="Support stream: the labelled subset read back "
        "has another size than the labels the sampler draws from.")
    with tf.control_dependencies([same_size]):
      same = tf.debugging.assert_equal(
          read, tf.constant(labels, tf.int64), message="Support stream: the labelled subset "
          "read back is not in the order of source.labels_and_ids.")
    with tf.control_dependencies([same]):
      return tf.nest.map_structure(tf.identity, examples)

  return dataset.map(check)


def support_dataset(source, *, keep_ids, classes_per_step, images_per_class, preprocess_fn,
                    seed=0, input_context=None, threads=None, start_step=0):
  """Infinite per-replica support batches of preprocess_fn(example, seed) (see module doc),
  from step `start_step` on (a resumed run: the sampler replays the steps before, indices
  only, and nothing of theirs is decoded)."""
  split = source.train_split
  labels = _labels_of(source, split, keep_ids)
  num_replicas = input_context.num_replicas_in_sync if input_context else 1
  num_pipelines = input_context.num_input_pipelines if input_context else 1
  pipeline_id = input_context.input_pipeline_id if input_context else 0
  check_support(labels, classes_per_step, images_per_class, num_replicas)
  per_replica = classes_per_step * images_per_class // num_replicas
  replicas_per_pipeline = num_replicas // num_pipelines
  first = pipeline_id * replicas_per_pipeline * per_replica
  last = first + replicas_per_pipeline * per_replica
  logging.info("Support stream: each input pipeline holds the %d labelled examples in host "
               "memory.", len(labels))

  @tf.autograph.experimental.do_not_convert
  def draw(examples):
    indices = support_indices(labels, classes_per_step, images_per_class, seed)
    indices = indices.skip(start_step).map(lambda step: step[first:last]).unbatch()
    return indices.map(lambda i: tf.nest.map_structure(lambda feature: feature[i], examples))

  dataset = _read_whole(source, split, keep_ids, labels).flat_map(draw)
  base_seed = tf.constant([seed, pipeline_id], tf.int64)

  def augment(position, example):
    return preprocess_fn(example, tf.random.experimental.stateless_fold_in(base_seed, position))

  dataset = pipeline.map_skipping_corrupt(dataset, augment, start=start_step * (last - first))
  dataset = dataset.batch(per_replica, drop_remainder=True)
  return dataset.prefetch(tf.data.AUTOTUNE).with_options(pipeline.options(True, threads))
