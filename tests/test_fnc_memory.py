"""FNC's momentum-encoder memory bank (google-research/fnc model.py / objective.py): the
loss against objective.py's formula written out in numpy, the bank's FIFO order and
content on 1 and 2 replicas, the momentum update, resume, export and the settings."""

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import fixed_batch_losses, tiny_config
from tfssl import experiment
from tfssl import trainer
from tfssl.errors import UserError

# 8 images a step, 2 + 1 views, a bank of 4 x 8 rows: each step pushes 24 and keeps 8.
BANK = ["batch_size=8", "support_size=1", "memory_multiplier=4", "fn_topk=3",
        "fn_threshold=0.5", "temperature=0.5", "use_randaugment=false", "sync_bn=false",
        "learning_rate=0.01", "jit_compile=false"]
VIEWS, BATCH, ROWS, DIM = 3, 8, 32, 128


def _method(*overrides, strategy=None):
  exp = experiment.resolve(tiny_config("fnc", *BANK, *overrides))
  with (strategy or tf.distribute.get_strategy()).scope():
    method = exp.new_method()
    method.build()
  return method


def _normalized(rng, *shape):
  x = rng.normal(size=shape).astype(np.float32)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _case(seed=0):
  """(online views, momentum keys, bank before the step): images in near-duplicate pairs,
  so that false negatives exist in the step's views and in the old rows."""
  rng = np.random.default_rng(seed)
  base = _normalized(rng, BATCH // 2, DIM)
  keys = np.stack([np.repeat(base, 2, 0) + 0.05 * rng.normal(size=(BATCH, DIM))
                   for _ in range(VIEWS)])
  keys /= np.linalg.norm(keys, axis=-1, keepdims=True)
  views = keys + 0.3 * rng.normal(size=keys.shape)
  views /= np.linalg.norm(views, axis=-1, keepdims=True)
  bank = _normalized(rng, ROWS, DIM)
  bank[3] = keys[0, 5]  # an old row close to image 5 (and its twin 4)
  return views.astype(np.float32), keys.astype(np.float32), bank.astype(np.float32)


def _reference_loss(views, keys, bank, temperature=0.5, top_k=3, threshold=0.5):
  """objective.py's add_contrastive_loss_with_memory, loop by loop."""
  num_views, batch = views.shape[:2]
  memory = np.concatenate([keys.reshape(-1, DIM), bank[:len(bank) - num_views * batch]])
  total = 0.0
  for i in range(batch):
    own = [v * batch + i for v in range(num_views)]
    scores = np.max(keys[:, i] @ memory.T, axis=0)
    scores[own] = -1e9
    top = np.argsort(-scores, kind="stable")[:top_k]
    false_negatives = [n for n in top if scores[n] > threshold]
    for a in range(num_views):
      logits = memory @ views[a, i] / temperature
      denominator = np.delete(logits, a * batch + i)
      log_sum = np.log(np.sum(np.exp(denominator - denominator.max()))) + denominator.max()
      positives = [v * batch + i for v in range(num_views) if v != a] + false_negatives
      total += log_sum - np.mean(logits[positives])
  return total / batch * 2.0 / num_views


def test_loss_with_the_bank_is_the_originals_and_the_step_pushes_its_keys_in_front():
  method = _method()
  views, keys, bank = _case()
  method.memory.embeddings.assign(bank)
  loss, metrics = method.contrastive_loss(tf.constant(views), tf.constant(keys), True)
  np.testing.assert_allclose(float(loss), _reference_loss(views, keys, bank), rtol=1e-5)
  assert float(metrics["false_negatives_per_image"]) > 0
  # New keys in front (view-major), the oldest rows out.
  np.testing.assert_array_equal(method.memory.embeddings.numpy(),
                                np.concatenate([keys.reshape(-1, DIM), bank[:ROWS - 24]]))
  # An evaluation pass leaves the bank alone.
  method.contrastive_loss(tf.constant(views), tf.constant(keys), False)
  np.testing.assert_array_equal(method.memory.embeddings.numpy()[24:], bank[:ROWS - 24])


def test_bank_after_steps_is_the_last_steps_keys_newest_first():
  method = _method()
  _, keys, bank = _case()
  method.memory.embeddings.assign(bank)
  steps = [keys, keys[::-1].copy(), keys * 0.5]
  for step_keys in steps:
    method.contrastive_loss(tf.constant(step_keys), tf.constant(step_keys), True)
  expected = np.concatenate([steps[2].reshape(-1, DIM), steps[1].reshape(-1, DIM)[:8]])
  np.testing.assert_array_equal(method.memory.embeddings.numpy(), expected)


def test_two_replicas_equal_one_replica_and_hold_the_same_bank(two_replica_strategy):
  single = _method()
  double = _method(strategy=two_replica_strategy)
  views, keys, bank = _case(1)
  single.memory.embeddings.assign(bank)
  double.memory.embeddings.assign(bank)
  single_loss, _ = single.contrastive_loss(tf.constant(views), tf.constant(keys), True)

  def half(context):
    index = context.replica_id_in_sync_group
    return tuple(tf.constant(x[:, index * 4:(index + 1) * 4]) for x in (views, keys))

  split = two_replica_strategy.experimental_distribute_values_from_function(half)
  losses = tf.function(lambda b: two_replica_strategy.run(
      lambda v, k: double.contrastive_loss(v, k, True)[0], args=b))(split)
  local = two_replica_strategy.experimental_local_results
  np.testing.assert_allclose(sum(float(x) for x in local(losses)), float(single_loss),
                             rtol=1e-5)
  for copy in local(double.memory.embeddings):
    np.testing.assert_allclose(copy.numpy(), single.memory.embeddings.numpy(), atol=1e-7)


def test_momentum_encoder_moves_toward_the_online_network_after_each_update():
  method = _method("moving_average_decay=0.9")
  pairs = method._ema_pairs()  # pylint: disable=protected-access
  assert pairs and all(average.path == "ema_" + value.path for average, value in pairs)
  assert len(pairs) == len(method.backbone.trainable_weights + method.projection.trainable_weights)
  before = [(average.numpy(), value.numpy()) for average, value in pairs]
  statistics = [w.numpy() for w in method.ema_backbone.non_trainable_weights]
  method.after_step()
  for (average, _), (old, value) in zip(pairs, before):
    np.testing.assert_allclose(average.numpy(), 0.9 * old + 0.1 * value, rtol=1e-5, atol=1e-6)
  for weight, old in zip(method.ema_backbone.non_trainable_weights, statistics):
    np.testing.assert_array_equal(weight.numpy(), old)
  # The optimizer trains the online network only.
  trained = {v.path for v in method.trainable_variables}
  assert not any("ema" in path for path in trained)


def test_step_with_the_bank_compiles_with_xla_and_loss_falls():
  config = tiny_config("fnc", *BANK, "jit_compile=true", "learning_rate=0.05")
  step_losses = fixed_batch_losses(config, tf.distribute.get_strategy(), steps=6)
  assert all(np.isfinite(step_losses)) and step_losses[-1] < step_losses[0]


def test_the_bank_takes_the_momentum_encoders_projections_of_every_view():
  method = _method()
  rng = np.random.default_rng(4)
  batch = {"views": tf.constant(rng.uniform(size=(BATCH, VIEWS, 16, 16, 3)), tf.float32),
           "label": tf.constant(rng.integers(0, 10, BATCH))}
  method.compute_loss(batch, training=True)
  images = tf.reshape(tf.transpose(batch["views"], [1, 0, 2, 3, 4]), [-1, 16, 16, 3])
  _, hiddens = method.ema_projection_of(images, training=True)
  keys = tf.math.l2_normalize(hiddens[-1], axis=-1).numpy()
  np.testing.assert_allclose(method.memory.embeddings.numpy()[:VIEWS * BATCH], keys, atol=1e-5)
  _, online = method.hiddens(images, training=True)
  assert np.abs(tf.math.l2_normalize(online[-1], axis=-1).numpy() - keys).max() > 1e-3


@pytest.fixture(scope="module")
def bank_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("fnc_bank"))
  trainer.train(tiny_config("fnc", *BANK, "train_steps=3"), workdir)
  return workdir


def _restored_at(workdir, config):
  run = trainer.Trainer(experiment.resolve(config), workdir, tf.distribute.get_strategy())
  run.restore()
  return run.method


def _restored(workdir):
  return _restored_at(workdir, tiny_config("fnc", *BANK, "train_steps=3"))


def test_resume_restores_the_bank_and_the_momentum_encoder(bank_run):
  first, second = _restored(bank_run), _restored(bank_run)
  bank = first.memory.embeddings.numpy()
  # Three steps of 24 rows fill the 32: nothing of the zero start is left.
  assert np.all(np.abs(np.linalg.norm(bank, axis=1) - 1) < 1e-5)
  np.testing.assert_array_equal(second.memory.embeddings.numpy(), bank)
  # The momentum encoder as trained (three updates away from a fresh build's), both times.
  fresh = _method()
  moved = [not np.array_equal(a.numpy(), f.numpy())
           for a, f in zip(first.ema_backbone.trainable_weights, fresh.ema_backbone.trainable_weights)]
  assert np.mean(moved) > 0.5
  for a, b in zip(first.ema_backbone.weights, second.ema_backbone.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_init_from_a_run_starts_the_momentum_encoder_as_its_online_network(bank_run, tmp_path):
  config = tiny_config("fnc", *BANK, "train_epochs=0", init_from=bank_run)
  trainer.train(config, str(tmp_path / "run"))
  method = _restored_at(str(tmp_path / "run"), config)
  source = _restored(bank_run)
  for average, value in method._ema_pairs():  # pylint: disable=protected-access
    np.testing.assert_array_equal(average.numpy(), value.numpy())
  for a, b in zip(method.backbone.trainable_weights, source.backbone.trainable_weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_exported_module_is_the_online_network_without_the_bank(bank_run):
  method = _restored(bank_run)
  hub = tf.saved_model.load(f"{bank_run}/export/hub/3")
  assert not any("ema" in v.name or "memory" in v.name for v in hub.variables)
  online = [v for name in ("backbone", "projection", "head") for v in method.trackables()[name].variables]
  shapes = lambda variables: sorted(tuple(v.shape) for v in variables)
  assert shapes(hub.variables) == shapes(online)
  images = tf.random.stateless_uniform([4, 16, 16, 3], [1, 2])
  np.testing.assert_allclose(hub(images, False)["default"].numpy(),
                             method.backbone(images, training=False)["default"].numpy(),
                             rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("override,message", [
    ("memory_multiplier=2", r"memory_multiplier=2 makes a memory bank smaller than one "
                            r"step's 3 views .* memory_multiplier >= 3"),
    ("moving_average_decay=1.0", r"moving_average_decay=1.0 in \[0, 1\)"),
])
def test_bad_bank_settings_are_named(override, message):
  with pytest.raises(UserError, match=message):
    experiment.resolve(tiny_config("fnc", *BANK, override))


def test_released_defaults_and_the_in_batch_variant_builds_no_bank():
  config = experiment.resolve(tiny_config("fnc")).config
  assert (config.memory_multiplier, config.moving_average_decay) == (16, 0.999)
  method = _method("memory_multiplier=0")
  assert set(method.trackables()) == {"backbone", "projection", "head"}
