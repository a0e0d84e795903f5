"""Suave and Daino: steps compiled on 1 replica and run on 2, the Sinkhorn queue and
prototype freezing, the EMA teacher, its centre and temperature schedule on hand-computed
cases, starting from another run, and the exported (teacher) module."""

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

# 10% of digits' labels; 16 labelled + 16 unlabelled images, 2 global + 2 local crops.
SMALL = ["labels=10pct", "batch_size=16", "unsup_batch_size=16", "num_local_views=2",
         "proj_hidden_dim=32", "proj_out_dim=16", "mixup_lab_group_size=8"]
SUAVE = SMALL + ["queue_length=0"]
DAINO = SMALL
EAGER = "jit_compile=false"


def _method(name, *overrides, strategy=None):
  config = tiny_config(name, *(SUAVE if name == "suave" else DAINO), *overrides)
  exp = experiment.resolve(config)
  with (strategy or tf.distribute.get_strategy()).scope():
    method = exp.new_method()
    method.build()
  return method


def _fixed_batch(seed=0, labelled=16, unlabelled=16):
  rng = np.random.default_rng(seed)
  images = lambda *shape: tf.constant(rng.uniform(size=shape + (3,)).astype(np.float32))
  return {"sup": {"image": images(labelled, 16, 16),
                  "label": tf.constant(rng.integers(0, 10, labelled))},
          "unsup": {"global": images(unlabelled, 2, 16, 16),
                    "local": images(unlabelled, 2, 7, 7),
                    "label": tf.constant(rng.integers(0, 10, unlabelled))}}


# --- both steps ---------------------------------------------------------------------------


@pytest.mark.parametrize("name,model,overrides", [
    ("suave", "resnet10_v2", ["queue_length=32", "learning_rate=0.1"]),
    ("daino", "resnet10_v2", ["learning_rate=0.001", "warmup_epochs=0"]),
])
def test_step_compiles_with_xla_and_loss_falls_on_a_fixed_batch(name, model, overrides):
  base = SUAVE if name == "suave" else DAINO
  config = tiny_config(name, *base, *overrides, "jit_compile=true", model=model)
  step_losses = fixed_batch_losses(config, tf.distribute.get_strategy(), 8)
  assert all(math.isfinite(x) for x in step_losses)
  assert step_losses[-1] < step_losses[0]


@pytest.mark.parametrize("name,overrides", [
    ("suave", ["queue_length=16", "sync_bn=true"]),  # the queue is full from the 2nd step
    ("daino", ["learning_rate=0.001"]),
])
def test_step_runs_on_two_replicas(name, overrides, two_replica_strategy):
  config = tiny_config(name, *(SUAVE if name == "suave" else DAINO), *overrides)
  step_losses = fixed_batch_losses(config, two_replica_strategy, 2)
  assert all(math.isfinite(x) for x in step_losses)


@pytest.mark.parametrize("group", [8])  # mixup partners on one replica
def test_suave_loss_on_two_replicas_equals_one_replica_on_the_global_batch(
    group, two_replica_strategy):
  """Sinkhorn-Knopp sums over replicas and BN is synchronized: the split batch gives the
  global batch's loss and gradients, labelled mixup included."""
  group = f"mixup_lab_group_size={group}"
  keras.utils.set_random_seed(0)
  single = _method("suave", "sync_bn=true", group, EAGER)
  double = _method("suave", "sync_bn=true", group, EAGER, strategy=two_replica_strategy)
  for a, b in zip(double.variables, single.variables):
    a.assign(b)
  batch = _fixed_batch()

  def loss_and_grads(method, batch):
    with tf.GradientTape() as tape:
      loss, _ = method.compute_loss(batch, training=True)
    return loss, tape.gradient(loss, method.trainable_variables)

  single_loss, single_grads = loss_and_grads(single, batch)
  loss, grads = on_split_batch(two_replica_strategy, lambda x: loss_and_grads(double, x), batch)
  np.testing.assert_allclose(loss, float(single_loss), rtol=1e-4)
  assert_gradients_match(single.trainable_variables, grads, single_grads)


def test_loss_weights_are_each_part_share_of_the_crops():
  method = _method("suave", "mixup_lab=false")
  # 16 labelled images; 16 unlabelled x 4 crops.
  assert method.labelled_weight == pytest.approx(16 / 80)
  assert method.unlabelled_weight == pytest.approx(64 / 80)
  # The mixed copy counts in the labelled share, as main_suave.py / main_daino.py count it.
  method = _method("daino", "mixup_lab_group_size=8")
  assert method.labelled_weight == pytest.approx(32 / 96)
  assert method.unlabelled_weight == pytest.approx(64 / 96)


def test_mixup_lab_extends_the_labelled_batch_with_a_mixed_copy_in_training_only():
  method = _method("suave", EAGER)
  batch = _fixed_batch()
  images, targets = method.labelled_inputs(batch, training=True)
  assert images.shape[0] == targets.shape[0] == 32
  np.testing.assert_array_equal(images[:16].numpy(), batch["sup"]["image"].numpy())
  np.testing.assert_allclose(targets.numpy().sum(-1), 1.0, rtol=1e-6)
  # Each mixed row mixes its image's label with its mirror's in the group of 8.
  labels = batch["sup"]["label"].numpy()
  for row in range(16):
    partner = row // 8 * 8 + 7 - row % 8
    support = set(np.flatnonzero(targets[16 + row].numpy() > 1e-6))
    assert support <= {labels[row], labels[partner]}
  # Another step draws another mix; evaluation never mixes.
  method.step_counter = tf.Variable(5, dtype=tf.int64)
  assert np.abs(method.labelled_inputs(batch, training=True)[0][16:].numpy()
                - images[16:].numpy()).max() > 0
  eval_images, eval_targets = method.labelled_inputs(batch, training=False)
  assert eval_images.shape[0] == 16 and eval_targets.shape == (16, 10)


@pytest.mark.parametrize("name,override,message", [
    ("suave", "sinkhorn_epsilon=0", "sinkhorn_epsilon=0"),
    ("suave", "global_crop_area=(0.5,0.2)", "global_crop_area"),
    ("daino", "teacher_temperature=0", "teacher_temperature=0"),
    ("daino", "teacher_momentum=1.5", "teacher_momentum=1.5"),
    ("daino", "polyak_averaging=true", "polyak_averaging would average the student"),
    ("suave", "mixup_lab_group_size=5", "mixup_lab_group_size=5 must divide batch_size=16"),
    ("daino", "mixup_lab_type=pairs", "mixup_lab_type='pairs' is not one of"),
])
def test_bad_settings_are_named(name, override, message):
  with pytest.raises(UserError, match=message):
    experiment.resolve(tiny_config(name, *SMALL, override))


# --- Suave: queue, prototypes -----------------------------------------------------------


def test_suave_queue_fills_with_the_global_crops_then_joins_the_assignments():
  method = _method("suave", "queue_length=32", EAGER)
  batch = _fixed_batch()
  assert method.queue.length == 32
  method.compute_loss(batch, training=True)
  assert int(method.queue.filled) == 16 and not bool(method.queue.is_full())
  first_views = method.student_outputs(batch, training=True)[2][:16]
  np.testing.assert_allclose(method.queue.embeddings[0, :16].numpy(), first_views.numpy(),
                             atol=1e-5)
  # Evaluation does not push.
  method.compute_loss(batch, training=False)
  assert int(method.queue.filled) == 16
  # Once full, the assignments of the same batch change: the queue's rows join them.
  without_queue = method.assignments(*_global_scores_and_embeddings(method, batch), False)
  method.compute_loss(batch, training=True)
  assert bool(method.queue.is_full())
  with_queue = method.assignments(*_global_scores_and_embeddings(method, batch), False)
  assert np.abs(with_queue.numpy() - without_queue.numpy()).max() > 1e-4
  np.testing.assert_allclose(tf.reduce_sum(with_queue, -1).numpy(), 1.0, rtol=1e-5)


def _global_scores_and_embeddings(method, batch):
  _, scores, embeddings = method.student_outputs(batch, training=False)
  return scores[:2], embeddings


def test_suave_prototypes_stay_unit_norm_and_freeze_for_the_first_steps():
  config = tiny_config("suave", *SUAVE, "freeze_prototypes_steps=2", EAGER,
                       "learning_rate=0.5", "train_steps=3")
  run = trainer.Trainer(experiment.resolve(config), "/tmp/unused", tf.distribute.get_strategy())
  norms = np.linalg.norm(run.method.prototypes.kernel.numpy(), axis=0)
  np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
  start = run.method.prototypes.kernel.numpy()
  dataset = iter(trainer.make_train_dataset_fn(run.exp, run.method)(tf.distribute.InputContext()))
  kernels = []
  for _ in range(3):
    run.method.train_step(next(dataset), run.optimizer)
    kernels.append(run.method.prototypes.kernel.numpy())
  np.testing.assert_allclose(kernels[1], start, atol=1e-6)
  assert np.abs(kernels[2] - start).max() > 1e-4
  np.testing.assert_allclose(np.linalg.norm(kernels[2], axis=0), 1.0, rtol=1e-5)


# --- Daino: teacher, centre, schedules ----------------------------------------------------


def test_teacher_momentum_and_temperature_schedules_hand_computed():
  momentum = lambda step: float(daino_lib.teacher_momentum(step, 100, 0.99))
  assert momentum(0) == pytest.approx(0.99)
  assert momentum(50) == pytest.approx(0.995)
  assert momentum(100) == pytest.approx(1.0)
  temperature = lambda epoch: float(daino_lib.teacher_temperature(epoch, 0.04, 0.07, 10))
  # numpy.linspace(0.04, 0.07, 10)[epoch], then 0.07.
  assert [temperature(e) for e in (0, 1, 9, 30)] == pytest.approx([0.04, 0.04 + 0.03 / 9,
                                                                   0.07, 0.07])
  assert float(daino_lib.teacher_temperature(0, 0.04, 0.07, 0)) == pytest.approx(0.07)


def test_teacher_is_an_exponential_moving_average_of_the_student():
  method = _method("daino")
  for t, s in method._float_pairs():  # pylint: disable=protected-access
    np.testing.assert_array_equal(t.numpy(), s.numpy())  # the teacher starts as a copy
  pairs = method._trainable_pairs()  # pylint: disable=protected-access
  for t, s in pairs:
    t.assign(tf.ones_like(t))
    s.assign(3.0 * tf.ones_like(s))
  method.update_teacher(0.9)
  for t, _ in pairs:
    np.testing.assert_allclose(t.numpy(), 1.2, rtol=1e-6)  # 0.9 * 1 + 0.1 * 3


def test_after_a_step_the_teacher_moves_with_that_steps_momentum():
  method = _method("daino", "train_steps=10")
  method.set_schedule(steps_per_epoch=5, total_steps=10)
  method.step_counter = tf.Variable(6, dtype=tf.int64)  # the update of step 5 was applied
  pairs = method._trainable_pairs()  # pylint: disable=protected-access
  for t, s in pairs:
    t.assign(tf.zeros_like(t))
    s.assign(tf.ones_like(s))
  method.after_step()
  momentum = float(daino_lib.teacher_momentum(5, 10, 0.99))
  for t, _ in pairs:
    np.testing.assert_allclose(t.numpy(), 1.0 - momentum, rtol=1e-5)


def test_teacher_gets_no_gradient_and_the_centre_moves_to_its_mean_logits():
  method = _method("daino", EAGER)
  batch = _fixed_batch()
  teacher_vars = [t for t, _ in method._float_pairs()]  # pylint: disable=protected-access
  global_views = tf.reshape(tf.transpose(batch["unsup"]["global"], [1, 0, 2, 3, 4]),
                            [-1, 16, 16, 3])
  teacher_scores = method.head_outputs(global_views, True, teacher=True)[2]  # as the step
  with tf.GradientTape() as tape:
    loss, metrics = method.compute_loss(batch, training=True)
  grads = tape.gradient(loss, teacher_vars + method.trainable_variables)
  assert all(g is None for g in grads[:len(teacher_vars)])
  assert all(g is not None for g in grads[len(teacher_vars):])
  np.testing.assert_allclose(method.center.value.numpy()[0],
                             0.1 * teacher_scores.numpy().mean(axis=0), rtol=1e-5, atol=1e-7)
  assert float(metrics["teacher_temperature"]) == pytest.approx(0.04)


# --- starting from another run, the exported module -------------------------------------


@pytest.fixture(scope="module")
def supervised_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("supervised"))
  trainer.train(tiny_config("supervised", EAGER, "train_steps=2"), workdir)
  return workdir


def test_daino_starts_teacher_and_student_from_another_runs_backbone(supervised_run, tmp_path):
  start = trainer.train(tiny_config("daino", *DAINO, EAGER, "train_epochs=0",
                                    init_from=supervised_run), str(tmp_path / "daino"))
  source = trainer.Trainer(experiment.resolve(tiny_config("supervised", EAGER, "train_steps=2")),
                           supervised_run, tf.distribute.get_strategy())
  source.restore()
  method = start.method
  for a, b, c in zip(source.method.backbone.weights, method.teacher.weights,
                     method.student.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(a.numpy(), c.numpy())


def test_exported_daino_module_is_the_teacher_and_fine_tunes_its_weights(tmp_path):
  run = trainer.train(tiny_config("daino", *DAINO, EAGER, "train_steps=2", "learning_rate=0.01"),
                      str(tmp_path / "daino"))
  method = run.method
  # The teacher has moved but is not the student.
  assert any(np.abs(t.numpy() - s.numpy()).max() > 0
             for t, s in method._float_pairs())  # pylint: disable=protected-access
  module = tf.saved_model.load(export_lib.resolve_module_dir(str(tmp_path / "daino")))
  images = tf.random.uniform([3, 16, 16, 3])
  outputs = module(images, False)
  expected = method.representations(images)
  assert outputs["logits"].shape == (3, 10)
  for key in ("default", "logits"):
    np.testing.assert_allclose(outputs[key].numpy(), expected[key].numpy(), rtol=1e-4, atol=1e-5)
  teacher_paths = {v.path for v in method.exported_trainable_variables()}
  assert {v.name.split(":")[0] for v in module.trainable_variables} <= teacher_paths | {
      p.split("/")[-1] for p in teacher_paths}
  assert len(module.trainable_variables) == len(method.trainable_variables)
