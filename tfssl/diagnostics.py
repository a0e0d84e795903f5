"""Signs that a run is not learning yet: collapsed embeddings and stalled losses.

The functions compute, from one batch, the spread of L2-normalised embeddings and the
entropies of predicted distributions (prototypes, classes); methods log them as metrics
(`Method.diagnostic_metrics`). `global_sum` sums a tensor over all replicas
(`methods.base.cross_replica_sum`; identity on one replica or for a per-replica estimate),
so a value is the global batch's. `StallWatcher` reads the trainer's metrics of every host
loop and warns, naming the signal, while a loss sits at its uniform value or the
embeddings' spread has collapsed.
"""

import math

from absl import logging
import tensorflow as tf

from tfssl import losses

EMBEDDING_STD = "embedding_std_normalised"
ENTROPY_MEAN_PREDICTION = "entropy_mean_prediction"
ENTROPY_PER_SAMPLE = "entropy_per_sample"

GENERAL_CAUSES = ("a learning rate too high or too low (or a warmup too short), a "
                  "temperature too high, a batch too small for the method, augmentations too "
                  "weak or too strong for the images")


def _rows(tensor):
  tensor = tf.stop_gradient(tf.cast(tensor, tf.float32))
  return tf.reshape(tensor, [-1, tensor.shape[-1]])


def _global_mean_row(rows, global_sum):
  count = global_sum(tf.cast(tf.shape(rows)[0], tf.float32))
  return global_sum(tf.reduce_sum(rows, axis=0)) / count, count


def normalised_embedding_std(embeddings, global_sum=tf.identity):
  """Mean over dimensions of the per-dimension standard deviation, over all rows, of the
  L2-normalised `embeddings` [..., D], times sqrt(D): about 1 for embeddings spread
  evenly over the sphere, 0 when every row is the same point (collapse)."""
  rows = tf.math.l2_normalize(_rows(embeddings), axis=-1)
  mean, count = _global_mean_row(rows, global_sum)
  # Centred before squaring (two reductions): E[x^2] - E[x]^2 would not reach 0 at collapse.
  variance = global_sum(tf.reduce_sum(tf.square(rows - mean), axis=0)) / count
  return tf.reduce_mean(tf.sqrt(variance)) * math.sqrt(rows.shape[-1])


def mean_prediction_entropy(probs, global_sum=tf.identity):
  """Entropy (nats) of the mean of the distributions `probs` [..., K] over all rows:
  ln K when the batch uses every class or prototype equally, 0 when all rows pick one."""
  mean, _ = _global_mean_row(_rows(probs), global_sum)
  return -losses.negative_entropy(mean)


def per_sample_entropy(probs, global_sum=tf.identity):
  """Mean over all rows of each distribution's entropy (nats): ln K while every
  prediction is uniform (nothing learnt), 0 for confident ones."""
  entropies = -losses.negative_entropy(_rows(probs))
  mean, _ = _global_mean_row(entropies[:, None], global_sum)
  return mean[0]


class StallWatcher:
  """Warns when a run looks stuck, from the metrics of every host loop (`update`).

  Signals: a loss of `uniform_losses` ({metric name: its value when every prediction is
  uniform}) within `tolerance` (relative) of that value, and `EMBEDDING_STD` below
  `collapsed_std`, each for `loops` consecutive host loops. A signal warns once when it
  has lasted that long and again only after it has ended and lasted that long anew.
  `method_causes`: the method's own usual causes, added to the general ones.
  """

  def __init__(self, uniform_losses, loops, tolerance, collapsed_std, method_causes=""):
    self.uniform_losses = dict(uniform_losses)
    self.loops = loops
    self.tolerance = tolerance
    self.collapsed_std = collapsed_std
    self.method_causes = method_causes
    self.streaks = {}

  def signals(self, metrics):
    """{signal name: description} of the signals present in one loop's `metrics`."""
    found = {}
    for name, uniform in self.uniform_losses.items():
      value = metrics.get(name)
      if value is not None and abs(value - uniform) <= self.tolerance * abs(uniform):
        found[name] = (f"{name} {value:.4g} sits at its uniform value {uniform:.4g} (every "
                       "prediction equally likely): the run is not learning yet")
    spread = metrics.get(EMBEDDING_STD)
    if spread is not None and spread < self.collapsed_std:
      found[EMBEDDING_STD] = (f"{EMBEDDING_STD} {spread:.3g} is below {self.collapsed_std:g} "
                              "(1: spread over the sphere, 0: every image embedded alike): the "
                              "embeddings have collapsed")
    return found

  def update(self, metrics, step):
    """Counts the signals of one host loop ending at `step`; returns the warnings logged."""
    if self.loops <= 0:
      return []
    found = self.signals(metrics)
    self.streaks = {name: self.streaks.get(name, 0) + 1 for name in found}
    warnings = []
    for name, description in found.items():
      if self.streaks[name] == self.loops:
        causes = GENERAL_CAUSES + (f"; {self.method_causes}" if self.method_causes else "")
        warnings.append(f"Step {step}: {description} for {self.loops} host loops. Usual "
                        f"causes: {causes}.")
    for warning in warnings:
      logging.warning("%s", warning)
    return warnings
