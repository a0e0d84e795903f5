"""PAWS's class-stratified support stream (Assran et al. 2021).

Every training step sees a support set of exactly `images_per_class` labelled images of
each of `classes_per_step` distinct classes. The sampler that picks them is plain numpy
and seeded: classes come from a reshuffled ring of the labelled classes, images from a
reshuffled ring per class, so a class's images are all seen before any repeats and no
image appears twice in one step.

The step's support set is one class-major list, split into equal per-replica batches:
replica r of R gets slice r. Every input pipeline runs the same sampler and keeps the
slices of its own replicas, so the support gathered over all replicas is the step's whole
set on any number of hosts. A class may straddle two replicas; the loss reads the true
labels, so that is harmless. Each pipeline holds the labelled subset's (encoded) examples
in host memory, since a sampler needs random access to them.
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


class ClassStratifiedSampler:
  """Indices into `labels`, one class-major array of classes x images per step."""

  def __init__(self, labels, classes_per_step, images_per_class, seed=0):
    check_support(labels, classes_per_step, images_per_class)
    labels = np.asarray(labels)
    self.classes_per_step = classes_per_step
    self.images_per_class = images_per_class
    self._rng = np.random.RandomState(seed)
    self._classes = np.unique(labels)
    self._by_class = {c: np.flatnonzero(labels == c) for c in self._classes}
    self._class_ring = _Ring(self._classes, self._rng)
    self._image_rings = {c: _Ring(index, self._rng) for c, index in self._by_class.items()}

  def __iter__(self):
    return self

  def __next__(self):
    classes = self._class_ring.take(self.classes_per_step)
    return np.concatenate([self._image_rings[c].take(self.images_per_class) for c in classes])


class _Ring:
  """Draws from seeded permutations of `values`; a draw never spans two permutations, so
  it holds distinct values."""

  def __init__(self, values, rng):
    self._values = np.asarray(values)
    self._rng = rng
    self._order = self._rng.permutation(self._values)
    self._next = 0

  def take(self, count):
    if self._next + count > len(self._order):
      self._order = self._rng.permutation(self._values)
      self._next = 0
    drawn = self._order[self._next:self._next + count]
    self._next += count
    return drawn


def load_examples(source, keep_ids, split=None):
  """The examples of `keep_ids` (numpy dicts, in split order) and the dataset's spec."""
  dataset = source.read(split or source.train_split).filter(pipeline.keep_ids_filter(keep_ids))
  examples = list(dataset.as_numpy_iterator())
  logging.info("Support stream: %d labelled examples in host memory.", len(examples))
  return examples, dataset.element_spec


def support_dataset(source, *, keep_ids, classes_per_step, images_per_class, preprocess_fn,
                    seed=0, input_context=None, threads=None):
  """Infinite per-replica support batches of preprocess_fn(example, seed) (see module doc)."""
  examples, spec = load_examples(source, keep_ids)
  labels = np.array([example["label"] for example in examples])
  num_replicas = input_context.num_replicas_in_sync if input_context else 1
  num_pipelines = input_context.num_input_pipelines if input_context else 1
  pipeline_id = input_context.input_pipeline_id if input_context else 0
  check_support(labels, classes_per_step, images_per_class, num_replicas)
  per_replica = classes_per_step * images_per_class // num_replicas
  replicas_per_pipeline = num_replicas // num_pipelines
  first = pipeline_id * replicas_per_pipeline * per_replica
  last = first + replicas_per_pipeline * per_replica

  def generate():
    for step in ClassStratifiedSampler(labels, classes_per_step, images_per_class, seed):
      for index in step[first:last]:
        yield examples[index]

  dataset = tf.data.Dataset.from_generator(generate, output_signature=spec)
  base_seed = tf.constant([seed, pipeline_id], tf.int64)

  def augment(position, example):
    return preprocess_fn(example, tf.random.experimental.stateless_fold_in(base_seed, position))

  dataset = pipeline.map_skipping_corrupt(dataset, augment)
  dataset = dataset.batch(per_replica, drop_remainder=True)
  return dataset.prefetch(tf.data.AUTOTUNE).with_options(pipeline.options(True, threads))
