"""S4L's semi-supervised methods: losses, VAT, Polyak averaging, pseudo-label files, the
labelling tool, --init_from and MOAM's three steps."""

import json
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import fixed_batch_losses, tiny_config
from tfssl import ema
from tfssl import experiment
from tfssl import label
from tfssl import losses
from tfssl import models
from tfssl import pseudo_labels
from tfssl import trainer
from tfssl.errors import UserError
from tfssl.methods.vat import virtual_adversarial_perturbation

METHOD_OVERRIDES = {
    "s4l_rotation": ["labels=10pct"],
    "s4l_exemplar": ["labels=10pct", "exemplar_copies=2", "embed_dim=16"],
    "vat": ["labels=10pct", "vat_epsilon=2.0"],
    "vat_entmin": ["labels=10pct", "vat_epsilon=2.0"],
    "moam": ["labels=10pct", "vat_epsilon=2.0", "unsup_batch_size=16"],
    "pseudo_label": [],
}


@pytest.fixture(scope="module")
def supervised_run(tmp_path_factory):
  """A supervised run on 10% of the digits labels, exported (the labeller of the tests)."""
  workdir = str(tmp_path_factory.mktemp("supervised"))
  trainer.train(tiny_config("supervised", "labels=10pct", "train_steps=6"), workdir)
  return workdir


@pytest.fixture(scope="module")
def labels_file(supervised_run, tmp_path_factory):
  path = str(tmp_path_factory.mktemp("labels") / "labels.json")
  label.label(supervised_run, path)
  return path


def _config(method, labels_path, *overrides):
  fields = {"pseudo_labels": labels_path} if method == "pseudo_label" else {}
  return tiny_config(method, *METHOD_OVERRIDES[method], *overrides, **fields)


# --- losses ------------------------------------------------------------------------


def test_entropy_on_hand_computed_cases():
  logits = tf.constant([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0], [math.log(3.0), 0.0, -1e9, -1e9]])
  # uniform over 4: log 4; one class certain: 0; p = (3/4, 1/4): -(3/4 log 3/4 + 1/4 log 1/4)
  expected = [math.log(4.0), 0.0, -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))]
  np.testing.assert_allclose(losses.entropy_from_logits(logits), expected, atol=1e-6)


def test_kl_divergence_on_hand_computed_cases():
  p = tf.math.log(tf.constant([[0.5, 0.5], [0.9, 0.1]]))
  q = tf.math.log(tf.constant([[0.9, 0.1], [0.9, 0.1]]))
  expected = [0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1), 0.0]
  np.testing.assert_allclose(losses.kl_divergence_from_logits(p, q), expected, atol=1e-6)
  # Logits are defined up to a constant per row.
  np.testing.assert_allclose(losses.kl_divergence_from_logits(p + 3.0, q - 1.0), expected,
                             atol=1e-6)


def test_pseudo_label_loss_is_cross_entropy_on_the_relabelled_batch():
  relabel = pseudo_labels.relabel_fn([b"a", b"b", b"c"], np.array([2, 0, 1]))
  out = relabel({"id": tf.constant([b"c", b"a"]), "label": tf.constant([0, 0], tf.int32)})
  np.testing.assert_array_equal(out["label"], [1, 2])
  assert out["label"].dtype == tf.int32
  # The loss on them is plain CE: -log softmax at the pseudo-label, hand-computed.
  logits = tf.constant([[0.0, math.log(3.0), 0.0], [0.0, 0.0, 0.0]])
  np.testing.assert_allclose(losses.softmax_cross_entropy(logits, out["label"], 3),
                             [math.log(5.0 / 3.0), math.log(3.0)], atol=1e-6)


# --- VAT -----------------------------------------------------------------------------


def _small_classifier():
  keras.utils.set_random_seed(1)
  return keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(32, activation="tanh"),
                           keras.layers.Dense(5)])


def test_vat_perturbation_has_norm_epsilon_and_beats_a_random_direction():
  net = _small_classifier()
  images = tf.random.stateless_uniform([16, 6, 6, 3], [0, 1])
  clean = net(images)
  tf.random.set_seed(3)
  adversarial = virtual_adversarial_perturbation(images, clean, net, epsilon=0.5)
  norms = tf.norm(tf.reshape(adversarial, [16, -1]), axis=1)
  np.testing.assert_allclose(norms, 0.5, rtol=1e-5)
  random = 0.5 * tf.math.l2_normalize(tf.random.stateless_normal(images.shape, [2, 3]),
                                      axis=[1, 2, 3])
  kl = lambda r: losses.kl_divergence_from_logits(net(images + r), clean).numpy()
  adversarial_kl, random_kl = kl(adversarial), kl(random)
  # Per image, the found direction beats a random one of the same norm, by a wide margin.
  assert np.all(adversarial_kl > random_kl), (adversarial_kl, random_kl)
  assert adversarial_kl.mean() > 5 * random_kl.mean()


def test_vat_perturbation_is_a_constant_for_the_update():
  net = _small_classifier()
  images = tf.random.stateless_uniform([4, 6, 6, 3], [0, 2])
  with tf.GradientTape() as tape:
    tape.watch(images)
    perturbation = virtual_adversarial_perturbation(images, net(images), net, epsilon=1.0)
    total = tf.reduce_sum(perturbation)
  assert tape.gradient(total, images) is None


def test_perturbed_passes_leave_batch_norm_averages_alone():
  from tfssl.methods import get_method  # pylint: disable=import-outside-toplevel
  config = tiny_config("vat", "labels=10pct")
  method = get_method("vat")(config, 10, 16)
  method.build()
  images = tf.random.stateless_uniform([8, 16, 16, 3], [0, 3])
  averages = lambda: [v.numpy().copy() for v in method.backbone.non_trainable_variables]
  before = averages()
  method.perturbed_logits(images, training=True)
  assert all(np.array_equal(a, b) for a, b in zip(before, averages()))
  method.representations(images, training=True)
  assert not all(np.array_equal(a, b) for a, b in zip(before, averages()))


# --- Polyak averaging -----------------------------------------------------------------


def test_half_life_decay_halves_in_one_epoch():
  decay = ema.half_life_decay(steps_per_epoch=40)
  assert decay ** 40 == pytest.approx(0.5)
  assert ema.half_life_decay(40, half_life_epochs=2.0) ** 80 == pytest.approx(0.5)


def test_weight_average_update_and_swap_on_a_hand_computed_case():
  variable = tf.Variable([1.0, 2.0], name="w")
  average = ema.WeightAverage([variable], decay=0.75)
  variable.assign([5.0, 6.0])
  average.update()  # 0.75 * [1, 2] + 0.25 * [5, 6]
  variable.assign([9.0, 10.0])
  average.update()  # 0.75 * [2, 3] + 0.25 * [9, 10]
  expected = [0.75 * 2.0 + 0.25 * 9.0, 0.75 * 3.0 + 0.25 * 10.0]
  with average.applied():
    np.testing.assert_allclose(variable.numpy(), expected)
  np.testing.assert_allclose(variable.numpy(), [9.0, 10.0])


def test_polyak_run_exports_and_evaluates_the_averaged_weights(tmp_path):
  config = tiny_config("supervised", "labels=10pct", "train_steps=6", "polyak_averaging=true",
                       "polyak_half_life_epochs=0.5", "eval_poll_seconds=0",
                       "eval_timeout_seconds=1")
  run = trainer.train(config, str(tmp_path))
  module = tf.saved_model.load(str(tmp_path / "export" / "hub" / "6"))
  images = tf.random.stateless_uniform([4, 16, 16, 3], [0, 6])
  with run.ema.applied():
    averaged = run.method.representations(images)["logits"].numpy()
  np.testing.assert_allclose(module(images, training=False)["logits"], averaged, rtol=1e-5,
                             atol=1e-5)
  # Outside the block the training weights are back, and they differ from their average.
  assert not np.allclose(run.method.representations(images)["logits"], averaged, atol=1e-4)
  results = trainer.run_eval(config, str(tmp_path))
  assert set(results["6"]) >= {"top1", "top5"}


# --- steps ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(METHOD_OVERRIDES))
def test_step_compiles_with_xla_and_loss_falls_on_a_fixed_batch(method, labels_file):
  config = _config(method, labels_file, "jit_compile=true", "learning_rate=0.05")
  step_losses = fixed_batch_losses(config, tf.distribute.get_strategy(), steps=6)
  assert all(np.isfinite(step_losses))
  assert step_losses[-1] < step_losses[0], step_losses


@pytest.mark.parametrize("method", sorted(METHOD_OVERRIDES))
def test_step_runs_on_two_replicas(method, labels_file, two_replica_strategy):
  step_losses = fixed_batch_losses(_config(method, labels_file, "jit_compile=true"),
                                    two_replica_strategy, 2)
  assert all(np.isfinite(step_losses))


def test_two_streams_carry_their_own_batch_sizes_and_labels():
  config = tiny_config("s4l_rotation", "labels=10pct", "batch_size=8", "unsup_batch_size=24")
  exp = experiment.resolve(config)
  method = exp.new_method()
  batch = next(iter(trainer.make_train_dataset_fn(exp, method)(tf.distribute.InputContext())))
  assert batch["sup"]["image"].shape[0] == 8 and batch["unsup"]["image"].shape[0] == 24
  assert set(batch["unsup"]) == {"image"}


@pytest.mark.parametrize("method", ["s4l_rotation", "vat"])
def test_train_export_and_evaluate_the_own_classifier(method, tmp_path):
  config = _config(method, None, "train_steps=4", "steps_per_loop=2", "eval_poll_seconds=0",
                   "eval_timeout_seconds=1")
  run = trainer.train(config, str(tmp_path))
  module = tf.saved_model.load(str(tmp_path / "export" / "hub" / "4"))
  images = tf.random.stateless_uniform([3, 16, 16, 3], [0, 4])
  outputs = module(images, training=False)
  np.testing.assert_allclose(outputs["logits"],
                             run.method.representations(images)["logits"], rtol=1e-4, atol=1e-4)
  results = trainer.run_eval(config, str(tmp_path))["4"]
  assert results["num_examples"] == 360 and 0.0 <= results["top1"] <= results["top5"] <= 1.0
  if method == "s4l_rotation":  # S4L also reports the prediction averaged over rotations
    assert {"rotation_averaged_top1", "rotation_averaged_top5"} <= set(results)


# --- pseudo-labels and the labelling tool ----------------------------------------------


def test_labelling_tool_output_round_trips_into_the_trainer(supervised_run, labels_file,
                                                            tmp_path):
  record = json.load(open(labels_file))
  config = tiny_config("supervised", "labels=10pct")
  exp = experiment.resolve(config)
  ids, true_labels = exp.source.labels_and_ids(exp.source.train_split)
  assert record["num_examples"] == len(ids) == len(record["labels"])
  assert record["dataset"] == "digits" and record["num_classes"] == 10
  # The module's labelled subset keeps its true labels.
  assert record["kept_true_labels"] == len(exp.labelled_ids)
  by_id = dict(zip(record["ids"], record["labels"]))
  true_by_id = {i.decode() if isinstance(i, bytes) else str(i): int(t)
                for i, t in zip(ids, true_labels)}
  for labelled in exp.labelled_ids:
    key = labelled.decode() if isinstance(labelled, bytes) else str(labelled)
    assert by_id[key] == true_by_id[key]
  # The trainer trains on them: its batches carry the file's labels.
  pl_config = tiny_config("pseudo_label", "train_steps=2", "steps_per_loop=1",
                          pseudo_labels=labels_file)
  pl_exp = experiment.resolve(pl_config)
  np.testing.assert_array_equal(pl_exp.pseudo_labels, [by_id[k] for k in true_by_id])
  relabelled = dict(record, labels=[7] * len(record["labels"]))
  seven = str(tmp_path / "sevens.json")
  json.dump(relabelled, open(seven, "w"))
  seven_exp = experiment.resolve(tiny_config("pseudo_label", pseudo_labels=seven))
  batch = next(iter(trainer.make_train_dataset_fn(seven_exp, seven_exp.new_method())(
      tf.distribute.InputContext())))
  assert set(batch["label"].numpy()) == {7}
  trainer.train(pl_config, str(tmp_path / "run"))
  assert tf.io.gfile.exists(str(tmp_path / "run" / "export" / "hub" / "2" / "saved_model.pb"))


def test_labelling_averages_over_crops_and_rotations(supervised_run, tmp_path):
  record = label.label(supervised_run, str(tmp_path / "tta.json"), average_over="crops_rotations",
                       keep_true_labels=False)
  assert record["kept_true_labels"] == 0 and record["average_over"] == "crops_rotations"
  crops = label.five_crops(tf.reshape(tf.range(18 * 18 * 3, dtype=tf.float32) / 972.0,
                                      [18, 18, 3]), 16)
  assert crops.shape == (5, 16, 16, 3)


@pytest.mark.parametrize("change,message", [
    (lambda r: dict(r, dataset="cifar10"), r"made for dataset 'cifar10'.*trains on 'digits'"),
    (lambda r: dict(r, ids=r["ids"][:-5], labels=r["labels"][:-5]),
     r"does not match this run's train split.*5 of its images have no pseudo-label"),
    (lambda r: dict(r, num_classes=100), r"with 100 classes.*has 10"),
    (lambda r: {"ids": r["ids"]}, r"not a pseudo-label file"),
])
def test_pseudo_label_file_that_does_not_match_gets_one_message(labels_file, tmp_path, change,
                                                                message):
  bad = str(tmp_path / "bad.json")
  json.dump(change(json.load(open(labels_file))), open(bad, "w"))
  workdir = tmp_path / "run"
  with pytest.raises(UserError, match=message):
    trainer.train(tiny_config("pseudo_label", pseudo_labels=bad), str(workdir))
  assert not workdir.exists()


@pytest.mark.parametrize("overrides,fields,message", [
    ([], {}, r"pseudo_label trains on pseudo-labels.*python -m tfssl.label"),
    (["labels=10pct"], {"pseudo_labels": "x.json"}, r"--labels=10pct has no effect"),
    ([], {"pseudo_labels": "/nonexistent/labels.json"}, r"does not exist.*tfssl.label"),
])
def test_pseudo_label_run_without_a_usable_file_fails_first(overrides, fields, message, tmp_path):
  with pytest.raises(UserError, match=message):
    trainer.train(tiny_config("pseudo_label", *overrides, **fields), str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_labelling_a_module_without_a_classifier_is_refused(tmp_path):
  trainer.train(tiny_config("rotation", "train_steps=1"), str(tmp_path / "rotation"))
  with pytest.raises(UserError, match=r"no classifier output 'logits'.*rotation"):
    label.label(str(tmp_path / "rotation"), str(tmp_path / "labels.json"))
  assert not (tmp_path / "labels.json").exists()


# --- --init_from and MOAM ----------------------------------------------------------------


def test_init_from_a_missing_run_fails_before_anything_is_written(tmp_path):
  workdir = tmp_path / "step2"
  with pytest.raises(UserError, match=r"--init_from .*step1 does not exist.*train that run"):
    trainer.train(tiny_config("moam", "labels=10pct", init_from=str(tmp_path / "step1")),
                  str(workdir))
  assert not workdir.exists()


def test_init_from_another_architecture_names_it(supervised_run, tmp_path):
  config = tiny_config("supervised", "labels=10pct", "model_width=0.125",
                       init_from=supervised_run)
  with pytest.raises(UserError, match=r"another method or architecture.*resnet10_v2 x0.125"):
    trainer.train(config, str(tmp_path / "run"))


def test_moam_three_steps_chain(tmp_path):
  """Step 1 -> labels (5 crops x 4 rotations) -> step 2 from step 1's averaged weights on
  the pseudo-labels -> step 3 supervised fine-tuning from step 2, each exported."""
  step1, step2, step3 = (str(tmp_path / f"step{i}") for i in (1, 2, 3))
  moam = ["vat_epsilon=2.0", "unsup_batch_size=16", "train_steps=3", "steps_per_loop=3"]
  run1 = trainer.train(tiny_config("moam", "labels=10pct", *moam), step1)
  labels_path = str(tmp_path / "step1_labels.json")
  label.label(step1, labels_path, average_over="crops_rotations")

  step2_config = tiny_config("moam", *moam, pseudo_labels=labels_path, init_from=step1)
  start = trainer.Trainer(experiment.resolve(step2_config), step2, tf.distribute.get_strategy())
  start.restore()  # no checkpoint of its own: initialises from step 1
  averaged = {path: a.numpy() for path, a in run1.ema.averages.items()}
  for variable in start.method.trainable_variables:
    np.testing.assert_allclose(variable.numpy(), averaged[variable.path], rtol=1e-6)
    # Step 2's own average starts there too, not at its random initialisation.
    np.testing.assert_allclose(start.ema.averages[variable.path].numpy(),
                               averaged[variable.path], rtol=1e-6)

  trainer.train(step2_config, step2)
  run3 = trainer.train(tiny_config("supervised", "labels=10pct", "train_steps=2",
                                   "steps_per_loop=2", init_from=step2), step3)
  assert run3.step == 2
  for step in (step1, step2, step3):
    assert tf.io.gfile.glob(os.path.join(step, "export", "hub", "*", "saved_model.pb"))


def test_frozen_statistics_context_restores_momentum():
  model = models.build_model("resnet10_v2", image_size=16, width=0.0625)
  with models.batch_norm_statistics_frozen(model):
    pass
  norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
  assert norms and all(layer.momentum == 0.9 for layer in norms)
