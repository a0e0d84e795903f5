"""PAWS: the class-stratified support stream, its losses, the step on 1 and 2 replicas,
fine-tuning modes and soft nearest-neighbour evaluation."""

import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import datasets
from tfssl import eval_hub
from tfssl import experiment
from tfssl import losses
from tfssl import trainer
from tfssl.errors import UserError
from tests.helpers import assert_gradients_match, fixed_batch_losses, on_split_batch, tiny_config

PAWS = ["labels=5_per_class", "support_classes=10", "support_images_per_class=2",
        "support_views=2", "num_local_views=2", "batch_size=8"]


# --- the support sampler ---------------------------------------------------------------


def _labels(per_class):
  return np.repeat(np.arange(len(per_class)), per_class)


def test_sampler_draws_exactly_the_requested_images_per_class_every_step():
  labels = _labels([7, 5, 9, 6])
  sampler = datasets.support_indices(labels, classes_per_step=3, images_per_class=4,
                                    seed=0).as_numpy_iterator()
  seen = {c: [] for c in range(4)}
  for _ in range(40):
    step = next(sampler)
    classes = labels[step].reshape(3, 4)
    assert (classes == classes[:, :1]).all()  # class-major blocks of 4
    assert len(set(classes[:, 0])) == 3  # distinct classes
    assert len(set(step)) == 12  # no image twice in a step
    for c in classes[:, 0]:
      seen[c].extend(step[labels[step] == c])
  # Every image of every class is used.
  for c in range(4):
    assert set(seen[c]) == set(np.flatnonzero(labels == c))


def test_sampler_rings_use_every_class_and_image_before_repeating_one():
  labels = _labels([6, 6, 6, 6])
  sampler = datasets.support_indices(labels, classes_per_step=2, images_per_class=3,
                                    seed=1).as_numpy_iterator()
  steps = [next(sampler) for _ in range(12)]
  draws = {c: [] for c in range(4)}
  for first, second in zip(steps[::2], steps[1::2]):  # a round of the class ring: 2 steps
    assert set(labels[first]) | set(labels[second]) == {0, 1, 2, 3}
    for step in (first, second):
      for block in step.reshape(2, 3):
        draws[labels[block[0]]].append(block)
  for c, blocks in draws.items():  # a round of a class's image ring: 2 draws
    assert len(blocks) == 6
    for one, two in zip(blocks[::2], blocks[1::2]):
      assert sorted(np.concatenate([one, two])) == list(np.flatnonzero(labels == c))


def test_sampler_is_deterministic_for_a_seed():
  labels = _labels([6, 6, 6])
  draw = lambda seed: list(datasets.support_indices(labels, 2, 3, seed)
                           .take(5).as_numpy_iterator())
  first, again, other = draw(3), draw(3), draw(4)
  assert all((a == b).all() for a, b in zip(first, again))
  assert any((a != b).any() for a, b in zip(first, other))


@pytest.mark.parametrize("per_class,classes,images,message", [
    ([5, 3, 5], 3, 4, r"support_images_per_class=4, but class 1 has only 3 labelled images"),
    ([5, 5], 3, 2, r"support_classes=3, but the labelled subset holds only 2 classes"),
])
def test_support_that_does_not_fit_the_labels_is_one_clear_message(per_class, classes, images,
                                                                   message):
  with pytest.raises(UserError, match=message):
    datasets.check_support(_labels(per_class), classes, images)


def test_a_run_asking_for_more_support_images_than_a_class_has_fails_before_work(tmp_path):
  config = tiny_config("paws", *PAWS, "support_images_per_class=6")
  with pytest.raises(UserError, match="support_images_per_class=6, but class .* only 5"):
    trainer.train(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_support_stream_splits_each_step_over_the_replicas_of_every_pipeline():
  source = datasets.get_source("digits")
  ids, labels = source.labels_and_ids(source.train_split)
  keep = datasets.select_labelled_ids("5_per_class", ids, labels, 10, seed=0)

  def stream(pipeline_id):
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id,
                                         num_replicas_in_sync=4)
    dataset = datasets.support_dataset(
        source, keep_ids=keep, classes_per_step=4, images_per_class=3,
        preprocess_fn=lambda example, seed: {"label": example["label"], "id": example["id"]},
        seed=5, input_context=context)
    return [batch for batch in dataset.take(4).as_numpy_iterator()]

  first, second = stream(0), stream(1)
  assert all(len(batch["label"]) == 3 for batch in first + second)  # 12 / 4 replicas
  labelled = np.isin(ids, keep)  # the sampler's indices count the subset in split order
  sampler = datasets.support_indices(labels[labelled], 4, 3, seed=5).as_numpy_iterator()
  for step in range(2):  # two replicas per pipeline: batches 2s, 2s+1 are step s
    step_labels = np.concatenate([first[2 * step]["label"], first[2 * step + 1]["label"],
                                  second[2 * step]["label"], second[2 * step + 1]["label"]])
    step_ids = np.concatenate([b["id"] for b in (first[2 * step], first[2 * step + 1],
                                                  second[2 * step], second[2 * step + 1])])
    classes, counts = np.unique(step_labels, return_counts=True)
    assert len(classes) == 4 and (counts == 3).all()
    assert len(set(step_ids)) == 12
    np.testing.assert_array_equal(step_ids, ids[labelled][next(sampler)].astype(bytes))
    assert set(step_ids) <= set(keep.astype(bytes)) | set(keep)


# --- losses -----------------------------------------------------------------------------


def test_support_label_matrix_smooths_over_the_classes_present():
  got = losses.support_label_matrix(np.array([2, 0, 2]), 4, smoothing=0.1).numpy()
  # Two classes present (0 and 2): off value 0.1 / 2, on value 0.9 + 0.05.
  np.testing.assert_allclose(got, [[0.05, 0, 0.95, 0], [0.95, 0, 0.05, 0],
                                   [0.05, 0, 0.95, 0]], atol=1e-7)


def test_soft_nearest_neighbours_hand_computed():
  queries = np.array([[2.0, 0.0]], np.float32)
  supports = np.array([[1.0, 0.0], [0.0, 3.0]], np.float32)  # cosines 1 and 0
  labels = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
  got = losses.soft_nearest_neighbours(queries, supports, labels, temperature=0.5).numpy()
  weight = math.exp(2.0) / (math.exp(2.0) + 1.0)
  np.testing.assert_allclose(got, [[weight, 1.0 - weight]], rtol=1e-6)


def test_sharpen_hand_computed():
  got = losses.sharpen(np.array([[0.75, 0.25]], np.float32), 0.5).numpy()
  np.testing.assert_allclose(got, [[0.9, 0.1]], rtol=1e-6)
  # Temperature 1 changes nothing; the argmax never changes.
  np.testing.assert_allclose(losses.sharpen(np.array([[0.6, 0.4]], np.float32), 1.0), [[0.6, 0.4]])


def test_paws_targets_swap_the_large_views_and_average_them_for_small_ones():
  view1 = np.array([[0.75, 0.25]], np.float32)
  view2 = np.array([[0.5, 0.5]], np.float32)
  got = losses.paws_targets(np.concatenate([view1, view2]), num_views=4,
                            sharpen_temperature=0.5).numpy()
  sharp1, sharp2 = [0.9, 0.1], [0.5, 0.5]
  mean = [0.7, 0.3]
  np.testing.assert_allclose(got, [sharp2, sharp1, mean, mean], rtol=1e-6)
  tiny = losses.paws_targets(np.array([[1.0, 1e-5], [1.0, 1e-5]], np.float32), 2, 1.0).numpy()
  assert (tiny[:, 1] == 0).all()  # below 1e-4: zeroed


def test_paws_cross_entropy_and_me_max_hand_computed():
  targets = np.array([[1.0, 0.0], [0.5, 0.5]], np.float32)
  probs = np.array([[0.8, 0.2], [0.25, 0.75]], np.float32)
  got = losses.soft_cross_entropy(targets, probs).numpy()
  np.testing.assert_allclose(got, [-math.log(0.8), -0.5 * math.log(0.25) - 0.5 * math.log(0.75)],
                             rtol=1e-6)
  # A zero target costs nothing even where the probability is 0.
  assert float(losses.soft_cross_entropy(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]))[0]) == 0
  # me-max: the negative entropy of the mean prediction; lowest for a uniform mean.
  np.testing.assert_allclose(float(losses.negative_entropy(np.array([0.5, 0.5]))), -math.log(2),
                             rtol=1e-6)
  assert float(losses.negative_entropy(np.array([1.0, 0.0]))) == 0.0


def test_suncet_hand_computed_leaves_each_crop_out_of_its_own_support():
  z = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
  targets = np.eye(2, dtype=np.float32)[[0, 0, 1]]
  per_crop, probs = losses.suncet(z, z, targets, 0, temperature=1.0)
  # Crop 0 sees crop 1 (cosine 1, class 0) and crop 2 (cosine 0, class 1).
  p0 = math.e / (math.e + 1.0)
  np.testing.assert_allclose(probs.numpy()[0], [p0, 1 - p0], rtol=1e-6)
  np.testing.assert_allclose(per_crop.numpy()[:2], [-math.log(p0)] * 2, rtol=1e-6)
  # Crop 2 sees two class-0 crops at cosine 0: probability 0 on its own class.
  np.testing.assert_allclose(probs.numpy()[2], [1.0, 0.0], atol=1e-6)
  # A replica holding rows 1..2 of the gathered set leaves out columns 1 and 2.
  local_loss, local_probs = losses.suncet(z[1:], z, targets, 1, temperature=1.0)
  np.testing.assert_allclose(local_probs.numpy(), probs.numpy()[1:], rtol=1e-6)
  np.testing.assert_allclose(local_loss.numpy(), per_crop.numpy()[1:], rtol=1e-6)


# --- the step ---------------------------------------------------------------------------


def test_step_compiles_with_xla_and_loss_falls_on_a_fixed_batch():
  config = tiny_config("paws", *PAWS, "jit_compile=true", "optimizer=sgd",
                       "learning_rate=0.05", "warmup_epochs=0", "weight_decay=0")
  # Targets move with the network, so the first steps need not fall (on the pipeline's
  # first batch, the loss after 8 steps is still above the first); twelve do.
  step_losses = fixed_batch_losses(config, tf.distribute.get_strategy(), 12)
  assert all(math.isfinite(x) for x in step_losses)
  assert step_losses[-1] < step_losses[0]


def _fixed_batch(method):
  rng = np.random.default_rng(0)
  images = lambda *shape: tf.constant(rng.uniform(size=shape + (3,)).astype(np.float32))
  return {"sup": {"views": images(20, 2, 16, 16), "label": tf.constant(np.tile(np.arange(10), 2))},
          "unsup": {"views": images(8, 2, 16, 16), "local": images(8, 2, 9, 9),
                    "label": tf.constant(rng.integers(0, 10, 8))}}


def test_loss_on_two_replicas_equals_one_replica_on_the_global_batch(two_replica_strategy):
  """Support gathered across replicas, me-max over all of them, synchronized BN: the
  split batch gives the global batch's loss and gradients."""
  config = tiny_config("paws", *PAWS, "sync_bn=true", "jit_compile=false")
  exp = experiment.resolve(config)
  keras.utils.set_random_seed(0)
  single = exp.new_method()
  single.build()
  with two_replica_strategy.scope():
    double = exp.new_method()
    double.build()
  for a, b in zip(double.variables, single.variables):
    a.assign(b)
  batch = _fixed_batch(single)

  def loss_and_grads(method, batch):
    with tf.GradientTape() as tape:
      loss, metrics = method.compute_loss(batch, training=True)
    return loss, metrics["me_max"], tape.gradient(loss, method.trainable_variables)

  single_loss, single_me_max, single_grads = loss_and_grads(single, batch)
  loss, me_max, grads = on_split_batch(
      two_replica_strategy, lambda x: loss_and_grads(double, x), batch)
  np.testing.assert_allclose(loss, float(single_loss), rtol=1e-4)
  np.testing.assert_allclose(me_max, float(single_me_max), rtol=1e-4)
  assert_gradients_match(single.trainable_variables, grads, single_grads)


def test_step_runs_on_two_replicas_with_the_support_gathered(two_replica_strategy):
  config = tiny_config("paws", *PAWS, "sync_bn=true", "learning_rate=0.01")
  step_losses = fixed_batch_losses(config, two_replica_strategy, 1)
  assert all(math.isfinite(x) for x in step_losses)


# --- fine-tuning and soft-NN evaluation ---------------------------------------------------

# The runs below check what is restored and trained, not compilation (tested above).
EAGER = "jit_compile=false"


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("paws"))
  trainer.train(tiny_config("paws", *PAWS, EAGER, "train_steps=3"), workdir)
  return workdir


def _pretrained_method(workdir):
  run = trainer.Trainer(experiment.resolve(tiny_config("paws", *PAWS, EAGER, "train_steps=3")),
                        workdir, tf.distribute.get_strategy())
  run.restore()
  return run.method


def test_finetune_starts_from_the_pretrained_encoder_and_first_projection_layer(pretrained,
                                                                              tmp_path):
  start = trainer.train(tiny_config("paws", *PAWS, EAGER, "train_mode=finetune", "train_epochs=0",
                                    init_from=pretrained), str(tmp_path / "start"))
  source = _pretrained_method(pretrained)
  for a, b in zip(start.method.backbone.weights, source.backbone.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  np.testing.assert_array_equal(start.method.projection.fc1.kernel.numpy(),
                                source.projection.fc1.kernel.numpy())
  assert not start.method.head.dense.kernel.numpy().any()
  tuned = trainer.train(tiny_config("paws", *PAWS, EAGER, "train_mode=finetune", "train_steps=2",
                                    init_from=pretrained), str(tmp_path / "tuned"))
  assert tuned.method.head.dense.kernel.numpy().any()
  projection, before = tuned.method.projection, start.method.projection
  # fc1 and bn1 learn (bn1 in training mode: its averages move); the rest is dropped.
  assert not np.array_equal(projection.fc1.kernel.numpy(), before.fc1.kernel.numpy())
  assert not np.array_equal(projection.bn1.moving_mean.numpy(), before.bn1.moving_mean.numpy())
  trainable = {id(v) for v in tuned.method.trainable_variables}
  for layer in (projection.fc2, projection.bn2, projection.fc3):
    assert not any(id(v) in trainable for v in layer.weights)
  np.testing.assert_array_equal(projection.fc3.kernel.numpy(), before.fc3.kernel.numpy())


def test_suncet_finetuning_trains_with_batch_norm_statistics_frozen(pretrained, tmp_path):
  run = trainer.train(tiny_config("paws", *PAWS, EAGER, "train_mode=suncet", "train_steps=2",
                                  init_from=pretrained), str(tmp_path / "suncet"))
  moving = [w for w in run.method.backbone.weights if "moving" in w.path]
  source = _pretrained_method(pretrained)
  source_moving = [w for w in source.backbone.weights if "moving" in w.path]
  assert moving
  for a, b in zip(moving, source_moving):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert math.isfinite(run.history[-1][1]["loss"])
  # ... while the weights, batch-norm scales included, learn.
  gammas = [(a, b) for a, b in zip(run.method.backbone.weights, source.backbone.weights)
            if "gamma" in a.path]
  assert gammas and any(not np.array_equal(a.numpy(), b.numpy()) for a, b in gammas)
  assert not np.array_equal(run.method.projection.fc3.kernel.numpy(),
                            source.projection.fc3.kernel.numpy())


def test_snn_scores_constructed_case():
  support = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], np.float32)
  labels = np.array([0, 0, 1])
  test = np.array([[1.0, 0.05], [0.1, 1.0]], np.float32)
  scores = eval_hub.snn_scores(support, labels, test, num_classes=3, temperature=0.1)
  assert list(scores.argmax(axis=1)) == [0, 1]
  np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-6)
  assert (scores[:, 2] == 0).all()  # no support of class 2


def test_snn_protocol_uses_the_label_subset_as_support(pretrained, tmp_path):
  module = os.path.join(pretrained, "export", "hub")
  result = eval_hub.evaluate(module, "snn", str(tmp_path / "eval"), representation="proj",
                             labels="5_per_class")
  assert result["num_support"] == 50 and result["num_examples"] == 360
  # The same number from the subset's features by hand.
  task = eval_hub.Task(eval_hub.export_lib.resolve_module_dir(module), None, None,
                       eval_hub.default_config())
  source = task.source
  ids, labels = source.labels_and_ids(source.train_split)
  keep = datasets.select_labelled_ids("5_per_class", ids, labels, 10, seed=0)
  support, support_labels, support_ids = task.features(source.train_split, ["proj"])
  chosen = np.isin(datasets.ids_as_text(support_ids), datasets.ids_as_text(keep))
  test, test_labels, _ = task.features(source.eval_split, ["proj"])
  scores = eval_hub.snn_scores(support["proj"][chosen], support_labels[chosen], test["proj"],
                               10, 0.1)
  assert result["top1"] == pytest.approx(np.mean(scores.argmax(1) == test_labels))


@pytest.mark.parametrize("override,message", [
    ("train_mode=semi", "Unknown train_mode 'semi'"),
    ("multicrop=stl10", "Unknown multicrop preset 'stl10'"),
    ("sharpen_temperature=0", "sharpen_temperature=0"),
])
def test_bad_paws_settings_are_named(override, message):
  with pytest.raises(UserError, match=message):
    experiment.resolve(tiny_config("paws", *PAWS, override))


def test_snn_support_is_the_subset_the_module_trained_with(pretrained):
  task = eval_hub.Task(os.path.join(pretrained, "export", "hub", "3"), None, None,
                       eval_hub.default_config())
  task.info["config"]["seed"] = 3  # as if trained with --config.seed=3
  ids, labels = task.source.labels_and_ids(task.source.train_split)
  trained_with = datasets.select_labelled_ids("5_per_class", ids, labels, 10, seed=3)
  np.testing.assert_array_equal(task.labelled_ids("5_per_class")[0], trained_with)
  # Another spec is not the run's subset: eval_hub's own seed draws it.
  np.testing.assert_array_equal(task.labelled_ids("4_per_class")[0],
                                datasets.select_labelled_ids("4_per_class", ids, labels, 10,
                                                             seed=0))
