import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import config as config_lib
from tfssl import optim
from tfssl.errors import UserError
from tfssl.methods.base import Method


def _config(*overrides):
  return config_lib.build_config(Method, list(overrides))


def test_learning_rate_scaling():
  assert optim.scaled_learning_rate(_config("learning_rate=0.1"), 1024) == pytest.approx(0.4)
  assert optim.scaled_learning_rate(
      _config("learning_rate=0.075", "lr_scaling=sqrt"), 4096) == pytest.approx(4.8)
  assert optim.scaled_learning_rate(_config("lr_scaling=none"), 4096) == pytest.approx(0.1)


def test_warmup_then_cosine():
  schedule = optim.WarmupThenDecay(peak=1.0, total_steps=110, warmup_steps=10, kind="cosine")
  assert float(schedule(0)) == 0.0
  assert float(schedule(5)) == pytest.approx(0.5)
  assert float(schedule(10)) == pytest.approx(1.0)
  assert float(schedule(60)) == pytest.approx(0.5, abs=1e-6)
  assert float(schedule(110)) == pytest.approx(0.0, abs=1e-6)


def test_warmup_then_piecewise():
  schedule = optim.WarmupThenDecay(peak=1.0, total_steps=100, warmup_steps=5,
                                   kind="piecewise", boundaries=(30, 60), decay_factor=0.1)
  assert float(schedule(29)) == pytest.approx(1.0)
  assert float(schedule(30)) == pytest.approx(0.1)
  assert float(schedule(60)) == pytest.approx(0.01)


def test_build_schedule_uses_epochs():
  config = _config("warmup_epochs=1", "decay_epochs=2,3", "learning_rate=0.1")
  schedule = optim.build_schedule(config, 256, steps_per_epoch=10, total_steps=40)
  assert schedule.warmup_steps == 10 and schedule.boundaries == (20, 30)


def _dense():
  layer = keras.layers.Dense(3)
  layer.build((None, 4))
  bn = keras.layers.BatchNormalization()
  bn.build((None, 3))
  return layer, bn


def test_weight_decay_skips_bias_and_batch_norm():
  layer, bn = _dense()
  names = {optim.variable_short_name(v): optim.is_decayed(v) for v in
           layer.trainable_variables + bn.trainable_variables}
  assert names == {"kernel": True, "bias": False, "gamma": False, "beta": False}
  expected = 0.5 * 0.1 * float(tf.reduce_sum(layer.kernel ** 2))
  got = float(optim.l2_weight_decay(layer.trainable_variables + bn.trainable_variables, 0.1))
  assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "lars"])
def test_optimizers_reduce_a_quadratic(name):
  config = _config(f"optimizer={name}", "weight_decay_mode=decoupled", "weight_decay=1e-4")
  w = keras.Variable(np.ones([4, 4], np.float32), name="kernel")
  lr = 10.0 if name == "lars" else 0.1  # LARS steps are eta * |w| relative
  optimizer = optim.build_optimizer(config, lr)
  for _ in range(20):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(tf.square(w - 0.5))
    optimizer.apply_gradients([(tape.gradient(loss, [w])[0], w)])
  assert float(tf.reduce_sum(tf.square(w - 0.5))) < 4 * 0.25 * 0.9


def test_lars_trust_ratio_and_exclusions():
  kernel = keras.Variable(np.full([2, 2], 2.0, np.float32), name="kernel")
  bias = keras.Variable(np.full([2], 2.0, np.float32), name="bias")
  optimizer = optim.LARS(learning_rate=1.0, momentum=0.0, weight_decay_rate=0.0, eta=0.001)
  grad = tf.fill([2, 2], 0.5)
  optimizer.apply_gradients([(grad, kernel), (tf.fill([2], 0.5), bias)])
  # kernel: lr * eta * ||w|| / ||g|| * g = 0.001 * 4 / 1 * 0.5
  np.testing.assert_allclose(kernel.numpy(), 2.0 - 0.001 * 4.0 / 1.0 * 0.5, rtol=1e-6)
  np.testing.assert_allclose(bias.numpy(), 2.0 - 0.5, rtol=1e-6)  # no trust ratio on biases


def test_unknown_optimizer():
  with pytest.raises(UserError, match="Known optimizers: sgd, adam, adamw, lars"):
    optim.build_optimizer(_config("optimizer=rmsprop"), 0.1)


def test_adamw_weight_decay_follows_a_cosine_and_spares_biases_from_the_start():
  """DINO's wd_schedule: weight_decay at step 0 to weight_decay_end at the last step; a
  schedule starting at 0 still leaves biases undecayed once it grows."""
  config = _config("optimizer=adamw", "weight_decay=0.0", "weight_decay_end=0.4")
  optimizer = optim.build_optimizer(config, 1.0, total_steps=10)
  kernel = keras.Variable(np.ones([2], np.float32), name="kernel")
  bias = keras.Variable(np.ones([2], np.float32), name="bias")
  optimizer.build([kernel, bias])
  assert float(optimizer.weight_decay) == pytest.approx(0.0)
  optimizer.iterations.assign(5)
  assert float(optimizer.weight_decay) == pytest.approx(0.2)
  optimizer.iterations.assign(10)
  zero = [tf.zeros([2]), tf.zeros([2])]
  optimizer.apply_gradients(zip(zero, [kernel, bias]))
  np.testing.assert_allclose(kernel.numpy(), 1.0 - 0.4, rtol=1e-6)  # w -= lr * wd * w
  np.testing.assert_allclose(bias.numpy(), 1.0)


def test_a_weight_decay_schedule_needs_adamw():
  with pytest.raises(UserError, match="weight_decay_end=0.4 .* needs optimizer=adamw"):
    optim.build_optimizer(_config("optimizer=lars", "weight_decay_end=0.4"), 0.1)
