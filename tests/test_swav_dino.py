"""SwAV and DINO, the label-free originals of Suave and Daino (one code path): steps
compiled on 1 replica and equal on 2, the queue's start epoch, frozen prototypes / last
layer, DINO's per-parameter gradient clipping on hand-computed cases, the exported
modules, and Suave / Daino starting from their runs as the paper does."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import experiment
from tfssl import export as export_lib
from tfssl import trainer
from tfssl.errors import UserError
from tfssl.methods import daino as daino_lib
from tests.helpers import assert_gradients_match, fixed_batch_losses, on_split_batch, tiny_config

# 16 images a step, 2 global + 2 local crops, 24 prototypes.
SMALL = ["batch_size=16", "num_local_views=2", "proj_hidden_dim=32", "proj_out_dim=16",
         "num_prototypes=24"]
SWAV = SMALL + ["queue_length=0", "freeze_prototypes_steps=0"]
DINO = SMALL + ["learning_rate=0.001", "warmup_epochs=0", "freeze_last_layer_epochs=0",
                "drop_path_rate=0"]
EAGER = "jit_compile=false"
SEED = tf.constant([1, 2], tf.int64)
SETTINGS = {"swav": SWAV, "dino": DINO}


def _config(name, *overrides, **fields):
  return tiny_config(name, *SETTINGS[name], *overrides, **fields)


def _method(name, *overrides, strategy=None):
  exp = experiment.resolve(_config(name, *overrides))
  with (strategy or tf.distribute.get_strategy()).scope():
    method = exp.new_method()
    method.build()
  return method


def _fixed_batch(seed=0, images=16):
  rng = np.random.default_rng(seed)
  crops = lambda *shape: tf.constant(rng.uniform(size=shape + (3,)).astype(np.float32))
  return {"global": crops(images, 2, 16, 16), "local": crops(images, 2, 7, 7),
          "label": tf.constant(rng.integers(0, 10, images))}


def _loss_and_grads(method, batch):
  with tf.GradientTape() as tape:
    loss, _ = method.compute_loss(batch, training=True)
  return loss, method.adjust_gradients(tape.gradient(loss, method.trainable_variables))


@pytest.mark.parametrize("name", ["swav", "dino"])
def test_step_compiles_with_xla_and_loss_falls_on_a_fixed_batch(name):
  overrides = ["learning_rate=0.1"] if name == "swav" else ["head_batch_norm=true"]
  config = _config(name, *overrides, "jit_compile=true")
  step_losses = fixed_batch_losses(config, tf.distribute.get_strategy(), 8)
  assert all(math.isfinite(x) for x in step_losses)
  assert step_losses[-1] < step_losses[0]


@pytest.mark.parametrize("name,overrides", [
    ("swav", ["sync_bn=true"]),
    # DINO's clipping takes each parameter's norm of the summed gradient.
    ("dino", ["head_batch_norm=true", "sync_bn=true", "clip_grad=0.05"]),
])
def test_two_replicas_equal_one_replica_on_the_global_batch(name, overrides,
                                                           two_replica_strategy):
  keras.utils.set_random_seed(0)
  single = _method(name, *overrides, EAGER)
  double = _method(name, *overrides, EAGER, strategy=two_replica_strategy)
  for a, b in zip(double.variables, single.variables):
    a.assign(b)
  batch = _fixed_batch()
  single_loss, single_grads = _loss_and_grads(single, batch)
  loss, grads = on_split_batch(two_replica_strategy, lambda x: _loss_and_grads(double, x), batch)
  np.testing.assert_allclose(loss, float(single_loss), rtol=1e-4)
  assert_gradients_match(single.trainable_variables, grads, single_grads)


def test_label_free_methods_read_one_stream_and_have_no_classes():
  swav, dino = _method("swav"), _method("dino")
  for method in (swav, dino):
    assert method.input_mode == "single" and method.num_prototypes == 24
    assert method.labelled_weight == 0 and method.unlabelled_weight == 1
    assert "unsup_batch_size" not in method.config
    assert "labelled_color_strength" not in method.config
    outputs = method.representations(tf.zeros([2, 16, 16, 3]))
    assert "logits" not in outputs and outputs["proj"].shape == (2, 16)
  assert swav.prototypes.kernel.shape == (16, 24)
  assert dino.center.value.shape == (1, 24)
  # A pass over the training images per epoch: 1437 digits / 16.
  assert experiment.resolve(_config("swav")).steps_per_epoch == 1437 // 16


def test_published_defaults():
  swav = experiment.resolve(tiny_config("swav")).config
  assert (swav.num_prototypes, swav.queue_start_epoch, swav.freeze_prototypes_steps) == (
      3000, 15, 313)
  dino = experiment.resolve(tiny_config("dino")).config
  assert (dino.num_prototypes, dino.norm_last_layer, dino.clip_grad,
          dino.freeze_last_layer_epochs) == (65536, True, 3.0, 1.0)


@pytest.mark.parametrize("name,recipe,expected", [
    ("swav", "simclr_train", [{"strength": 1.0, "blur": True}, {"strength": 0.5, "blur": False}]),
    ("dino", "dino_view", [{"jitter_strength": 1.0, "blur_p": 1.0, "solarize_p": 0.0},
                           {"jitter_strength": 0.5, "blur_p": 0.0, "solarize_p": 0.0}]),
])
def test_colour_strength_and_blur_of_the_unlabelled_crops(name, recipe, expected, monkeypatch):
  calls = []
  monkeypatch.setattr(daino_lib.pp, recipe, lambda *args, **kwargs: calls.append(kwargs))
  for overrides in ((), ("color_jitter_strength=0.5", "use_blur=false")):
    _method(name, *overrides).view(tf.zeros([16, 16, 3]), SEED, 16, (0.5, 1.0), index=0)
  assert [{key: call[key] for key in expected[0]} for call in calls] == expected
  with pytest.raises(UserError, match="color_jitter_strength=-1"):
    experiment.resolve(_config(name, "color_jitter_strength=-1"))


# --- SwAV: the queue starts at its epoch --------------------------------------------------


def test_swav_queue_fills_only_from_its_start_epoch():
  method = _method("swav", "queue_length=32", "queue_start_epoch=1", EAGER)
  method.set_schedule(steps_per_epoch=2, total_steps=10)
  counter = tf.Variable(0, dtype=tf.int64)
  method.step_counter = counter
  batch = _fixed_batch()
  for step in range(4):
    counter.assign(step)
    method.compute_loss(batch, training=True)
    # Epoch 0 (steps 0, 1) pushes nothing; epoch 1 on, 16 embeddings a step.
    assert int(method.queue.filled) == 16 * max(step - 1, 0)
  assert bool(method.queue.is_full())


# --- DINO: last layer, clipping, crops ---------------------------------------------------


def test_clip_each_gradient_scales_each_parameter_to_the_norm_hand_computed():
  grads = [tf.constant([3.0, 4.0]), None, tf.constant([[0.3], [0.4]])]
  clipped = daino_lib.clip_each_gradient(grads, 1.0)
  np.testing.assert_allclose(clipped[0].numpy(), np.array([3.0, 4.0]) / (5 + 1e-6), rtol=1e-6)
  assert clipped[1] is None
  np.testing.assert_allclose(clipped[2].numpy(), grads[2].numpy())  # norm 0.5 <= 1


def test_dino_norm_last_layer_keeps_magnitudes_fixed_and_the_last_layer_freezes_first():
  method = _method("dino", "freeze_last_layer_epochs=1", EAGER)
  method.set_schedule(steps_per_epoch=3, total_steps=10)
  assert not method.student_prototypes.magnitude.trainable
  assert method.frozen_prototype_steps() == 3
  counter = tf.Variable(0, dtype=tf.int64)
  method.step_counter = counter
  frozen = {id(v) for v in method.prototype_variables()}
  assert frozen == {id(method.student_prototypes.direction)}
  batch = _fixed_batch()
  for step, learning in ((2, False), (3, True)):
    counter.assign(step)
    _, grads = _loss_and_grads(method, batch)
    for grad, variable in zip(grads, method.trainable_variables):
      if id(variable) in frozen:
        assert bool(tf.reduce_any(grad != 0)) == learning
      else:
        assert bool(tf.reduce_any(grad != 0))


@pytest.mark.parametrize("override,message", [
    ("local_crop_size=7", "4x4 patches, which do not tile the 7-px crops"),
    ("num_prototypes=0", "num_prototypes=0"),
    ("clip_grad=-1", "clip_grad=-1"),
    ("local_crop_size=20", "local_crop_size=20 is larger than the global crops"),
])
def test_bad_dino_settings_are_named(override, message):
  with pytest.raises(UserError, match=message):
    experiment.resolve(_config("dino", override, model="vit_s16"))


# --- export, and Suave / Daino from these runs -------------------------------------------


@pytest.fixture(scope="module")
def swav_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("swav"))
  trainer.train(_config("swav", EAGER, "train_steps=2"), workdir)
  return workdir


@pytest.fixture(scope="module")
def dino_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("dino"))
  trainer.train(_config("dino", EAGER, "train_steps=2", "learning_rate=0.01"), workdir)
  return workdir


def _restored(name, workdir):
  run = trainer.Trainer(experiment.resolve(_config(name, EAGER, "train_steps=2")), workdir,
                        tf.distribute.get_strategy())
  run.restore()
  return run.method


def test_exported_swav_module_gives_the_runs_features(swav_run):
  method = _restored("swav", swav_run)
  module = tf.saved_model.load(export_lib.resolve_module_dir(swav_run))
  images = tf.random.uniform([3, 16, 16, 3])
  outputs, expected = module(images, False), method.representations(images)
  assert "logits" not in outputs
  for key in ("default", "proj"):
    np.testing.assert_allclose(outputs[key].numpy(), expected[key].numpy(), rtol=1e-4,
                               atol=1e-5)


def test_exported_dino_module_is_the_teacher(dino_run):
  method = _restored("dino", dino_run)
  assert any(np.abs(t.numpy() - s.numpy()).max() > 0
             for t, s in method._float_pairs())  # pylint: disable=protected-access
  module = tf.saved_model.load(export_lib.resolve_module_dir(dino_run))
  images = tf.random.uniform([3, 16, 16, 3])
  np.testing.assert_allclose(module(images, False)["default"].numpy(),
                             method.teacher(images)["default"].numpy(), rtol=1e-4, atol=1e-5)


def test_suave_starts_from_a_swav_run_with_its_projection(swav_run, tmp_path):
  start = trainer.train(tiny_config("suave", "labels=10pct", "batch_size=16",
                                    "unsup_batch_size=16", "num_local_views=2",
                                    "proj_hidden_dim=32", "proj_out_dim=16", "queue_length=0",
                                    "init_projection=true", "mixup_lab_group_size=8", EAGER,
                                    "train_epochs=0",
                                    init_from=swav_run), str(tmp_path / "suave"))
  source = _restored("swav", swav_run)
  for part in ("backbone", "projection"):
    for a, b in zip(getattr(source, part).weights, getattr(start.method, part).weights):
      np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert start.method.prototypes.kernel.shape == (16, 10)  # new: one per class


def test_daino_starts_student_and_teacher_from_a_dino_runs_student(dino_run, tmp_path):
  start = trainer.train(tiny_config("daino", "labels=10pct", "batch_size=16",
                                    "unsup_batch_size=16", "num_local_views=2",
                                    "proj_hidden_dim=32", "proj_out_dim=16",
                                    "init_projection=true", "mixup_lab_group_size=8", EAGER,
                                    "train_epochs=0",
                                    init_from=dino_run), str(tmp_path / "daino"))
  source = _restored("dino", dino_run)
  method = start.method
  # main_daino.py loads DINO's student and copies it into the teacher.
  for part, student, teacher in (("student", method.student, method.teacher),
                                 ("student_projection", method.student_projection,
                                  method.projection)):
    for a, b, c in zip(getattr(source, part).weights, student.weights, teacher.weights):
      np.testing.assert_array_equal(a.numpy(), b.numpy())
      np.testing.assert_array_equal(a.numpy(), c.numpy())
  # The source's teacher differs from its student: the student was the one loaded.
  assert any(np.abs(a.numpy() - b.numpy()).max() > 0
             for a, b in zip(source.teacher.weights, method.student.weights))
