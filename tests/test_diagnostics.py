"""Collapse and stall diagnostics: the plain functions, their cross-replica convention,
the stall watcher and its warning in a real training run."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import diagnostics
from tfssl import experiment
from tfssl import trainer
from tfssl.methods.base import cross_replica_sum

from tests.helpers import on_split_batch, tiny_config


def test_entropies_of_known_distributions():
  uniform = tf.fill([6, 10], 0.1)
  np.testing.assert_allclose(diagnostics.mean_prediction_entropy(uniform), math.log(10),
                             rtol=1e-6)
  np.testing.assert_allclose(diagnostics.per_sample_entropy(uniform), math.log(10), rtol=1e-6)
  # Confident rows: per-sample entropy 0; all on one class: the mean's is 0 too.
  all_one_class = tf.one_hot([3] * 6, 10)
  assert float(diagnostics.mean_prediction_entropy(all_one_class)) == 0.0
  assert float(diagnostics.per_sample_entropy(all_one_class)) == 0.0
  # Confident rows spread evenly over the classes: the mean is uniform.
  even = tf.one_hot(list(range(10)) * 2, 10)
  np.testing.assert_allclose(diagnostics.mean_prediction_entropy(even), math.log(10),
                             rtol=1e-6)
  assert float(diagnostics.per_sample_entropy(even)) == 0.0


def test_embedding_std_is_zero_collapsed_and_about_one_spread():
  collapsed = tf.tile(tf.random.normal([1, 64], seed=1), [256, 1]) * 3.0
  assert float(diagnostics.normalised_embedding_std(collapsed)) < 1e-4
  spread = tf.random.normal([4096, 64], seed=2)
  np.testing.assert_allclose(diagnostics.normalised_embedding_std(spread), 1.0, atol=0.03)
  # A view axis is just more rows; the scale of the input does not matter.
  np.testing.assert_allclose(
      diagnostics.normalised_embedding_std(tf.reshape(5.0 * spread, [2, 2048, 64])),
      diagnostics.normalised_embedding_std(spread), rtol=1e-5)


def test_global_sum_gives_the_global_batch_value(two_replica_strategy):
  rng = np.random.default_rng(0)
  # Replicas whose halves differ: a per-replica estimate would not be the global value.
  embeddings = np.concatenate([rng.normal(size=(8, 4)) + 3, rng.normal(size=(8, 4)) - 3])
  probs = tf.nn.softmax(rng.normal(size=(16, 5)) * 3).numpy()
  batch = {"embeddings": tf.constant(embeddings, tf.float32), "probs": tf.constant(probs)}
  fns = {"std": diagnostics.normalised_embedding_std, "mean": diagnostics.mean_prediction_entropy,
         "sample": diagnostics.per_sample_entropy}

  def per_replica(b):
    replicas = tf.distribute.get_replica_context().num_replicas_in_sync
    inputs = {"std": b["embeddings"], "mean": b["probs"], "sample": b["probs"]}
    return {k: fn(inputs[k], cross_replica_sum) / replicas for k, fn in fns.items()}

  split = on_split_batch(two_replica_strategy, per_replica, batch)
  inputs = {"std": batch["embeddings"], "mean": batch["probs"], "sample": batch["probs"]}
  for name, fn in fns.items():
    np.testing.assert_allclose(split[name], float(fn(inputs[name])), rtol=1e-5)


SWAV = ["batch_size=16", "num_local_views=2", "proj_hidden_dim=32", "proj_out_dim=16",
        "num_prototypes=24", "queue_length=0", "freeze_prototypes_steps=0", "jit_compile=false"]


def _swav(strategy):
  exp = experiment.resolve(tiny_config("swav", *SWAV))
  with strategy.scope():
    method = exp.new_method()
    method.build()
  return method


def test_swav_diagnostics_agree_on_one_and_two_replicas(two_replica_strategy):
  keras.utils.set_random_seed(0)
  single = _swav(tf.distribute.get_strategy())
  double = _swav(two_replica_strategy)
  for a, b in zip(double.variables, single.variables):
    a.assign(b)
  rng = np.random.default_rng(0)
  crops = lambda *shape: tf.constant(rng.uniform(size=shape + (3,)).astype(np.float32))
  batch = {"global": crops(16, 2, 16, 16), "local": crops(16, 2, 7, 7),
           "label": tf.constant(rng.integers(0, 10, 16))}
  _, want = single.compute_loss(batch)
  got = on_split_batch(two_replica_strategy, lambda b: double.compute_loss(b)[1], batch)
  names = [diagnostics.EMBEDDING_STD, diagnostics.ENTROPY_MEAN_PREDICTION,
           diagnostics.ENTROPY_PER_SAMPLE]
  for name in names:
    np.testing.assert_allclose(got[name], float(want[name]), rtol=1e-4, err_msg=name)
  assert 0 < float(want[diagnostics.ENTROPY_PER_SAMPLE]) <= math.log(24) + 1e-5
  assert single.uniform_losses() == {"loss": pytest.approx(math.log(24))}


def _watcher(loops=2):
  return diagnostics.StallWatcher({"loss": math.log(10)}, loops=loops, tolerance=0.01,
                                  collapsed_std=0.05, method_causes="the method's own cause")


def test_watcher_warns_once_per_episode_naming_the_signal(caplog):
  watcher = _watcher()
  stuck, learning = {"loss": 2.30}, {"loss": 1.5}
  with caplog.at_level("WARNING", logger="absl"):
    assert watcher.update(stuck, 100) == []  # one loop is not yet a stall
    (warning,) = watcher.update(stuck, 200)
    assert watcher.update(stuck, 300) == []  # not every loop
    assert watcher.update(learning, 400) == []
    assert watcher.update(stuck, 500) == []
    assert len(watcher.update(stuck, 600)) == 1  # a new episode warns again
  assert "loss 2.3 sits at its uniform value 2.303" in warning
  assert "learning rate" in warning and "the method's own cause" in warning
  assert sum("uniform value" in r.getMessage() for r in caplog.records) == 2


def test_watcher_warns_of_collapsed_embeddings_and_can_be_off():
  collapsed = {"loss": 0.7, diagnostics.EMBEDDING_STD: 0.01}
  watcher = _watcher(loops=1)
  (warning,) = watcher.update(collapsed, 10)
  assert diagnostics.EMBEDDING_STD in warning and "collapsed" in warning
  assert watcher.update({"loss": 0.7, diagnostics.EMBEDDING_STD: 0.8}, 20) == []
  assert _watcher(loops=0).update(collapsed, 10) == []


def test_a_run_that_does_not_learn_is_warned_about(tmp_path, caplog):
  # learning_rate=0: the loss stays near ln 4 (1.50-1.54 from the random head: within 20%).
  config = tiny_config("rotation", "learning_rate=0", "weight_decay=0", "train_steps=4",
                       "steps_per_loop=1", "stall_warning_loops=3", "stall_loss_tolerance=0.2",
                       "summary_images=0", "jit_compile=false")
  with caplog.at_level("WARNING", logger="absl"):
    trainer.train(config, str(tmp_path))
  warnings = [r.getMessage() for r in caplog.records if "uniform value" in r.getMessage()]
  assert len(warnings) == 1 and warnings[0].startswith("Step 3: loss ")
