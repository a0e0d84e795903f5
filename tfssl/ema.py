"""Polyak averaging: an exponential moving average of a method's trainable weights.

S4L evaluates and exports MOAM with `tf.train.ExponentialMovingAverage` over the trainable
variables, decay 0.5 ** (1 / steps_per_epoch) (a half-life of one epoch); batch-norm
statistics are not averaged. As there, each average starts at its variable's initial value.

Averages are keyed by variable path (`resnet50_v2/conv1/kernel`, `head/dense/kernel`), so a
checkpoint's averages restore into another method that shares those layers (MOAM step 2
starting from step 1's averaged weights, or a fine-tune from either).
"""

import contextlib

import tensorflow as tf

from tfssl import optim


def half_life_decay(steps_per_epoch, half_life_epochs=1.0):
  """The per-step decay that halves an old value's weight after `half_life_epochs`."""
  return 0.5 ** (1.0 / max(half_life_epochs * steps_per_epoch, 1e-9))


class WeightAverage(tf.Module):
  """Shadow copies of `variables`; make it inside the strategy scope that owns them."""

  def __init__(self, variables, decay):
    super().__init__(name="weight_average")
    self.decay = float(decay)
    self._variables = {optim.variable_path(v): v for v in variables}
    if len(self._variables) != len(variables):
      raise ValueError("Variables to average must have distinct paths.")
    # The dict (not a list) makes the checkpoint key of each average its variable's path.
    self.averages = {path: tf.Variable(tf.convert_to_tensor(v), trainable=False,
                                       name="average")
                     for path, v in self._variables.items()}

  def update(self):
    """average <- decay * average + (1 - decay) * variable (cross-replica context)."""
    updates = [average.assign(self.decay * average + (1.0 - self.decay) *
                              tf.cast(self._variables[path], average.dtype))
               for path, average in self.averages.items()]
    return tf.group(updates)

  def reset(self):
    """Every average <- its variable (after weights were loaded from elsewhere)."""
    for path, average in self.averages.items():
      average.assign(tf.cast(self._variables[path], average.dtype))

  def copy_to_variables(self):
    for path, average in self.averages.items():
      self._variables[path].assign(tf.convert_to_tensor(average))

  @contextlib.contextmanager
  def applied(self):
    """The variables hold their averages inside the block and their own values after."""
    saved = {path: tf.identity(tf.convert_to_tensor(v)) for path, v in self._variables.items()}
    self.copy_to_variables()
    try:
      yield
    finally:
      for path, value in saved.items():
        self._variables[path].assign(value)
