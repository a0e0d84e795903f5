"""Building blocks shared by the backbones."""

import functools

import keras
import tensorflow as tf


def scaled(channels, width):
  """Channels after the width multiplier, at least one."""
  return max(int(round(channels * width)), 1)


def conv(filters, kernel_size, stride=1, name=None):
  # He-normal (fan-out) init and no bias: every conv is followed by batch norm.
  return keras.layers.Conv2D(
      filters, kernel_size, strides=stride, padding="same", use_bias=False,
      kernel_initializer=keras.initializers.VarianceScaling(2.0, "fan_out", "truncated_normal"),
      name=name)


def batch_norm_factory(sync_bn=False, momentum=0.9, epsilon=1e-5):
  """BN layers of one model share these settings; `synchronized` is cross-replica BN."""
  return functools.partial(keras.layers.BatchNormalization, momentum=momentum, epsilon=epsilon,
                           synchronized=sync_bn)


class ToMinusOneOne(keras.layers.Layer):
  """Images arrive in [0, 1]; the networks see [-1, 1]."""

  def call(self, images):
    return images * 2.0 - 1.0


def to_minus_one_one(inputs):
  return ToMinusOneOne(name="to_minus_one_one")(inputs)


class Float32(keras.layers.Layer):
  """Representations leave the model as float32 whatever the compute dtype."""

  def __init__(self, **kwargs):
    super().__init__(dtype="float32", **kwargs)

  def call(self, x):
    return tf.cast(x, tf.float32)


def as_float32(outputs):
  return {name: Float32(name=f"out_{name}")(value) for name, value in outputs.items()}
