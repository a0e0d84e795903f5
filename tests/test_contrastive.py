"""SimCLR and FNC: NT-Xent, false-negative selection, the methods' steps, fine-tuning."""

import math
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import fixed_batch_losses, tiny_config
from tfssl import experiment
from tfssl import losses
from tfssl import models
from tfssl import optim
from tfssl import trainer
from tfssl.errors import UserError

# Contrastive steps on 32-image batches want a smaller step than the supervised tiny config.
CONTRASTIVE = ["learning_rate=0.01", "sync_bn=false"]
FNC = ["support_size=2", "fn_topk=3", "fn_threshold=0.5", "memory_multiplier=0"]


def _normalized(rng, *shape):
  x = rng.normal(size=shape).astype(np.float32)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _reference_nt_xent(z1, z2, temperature):
  """SimCLR's loss_a + loss_b per image, written out with loops."""
  n = len(z1)
  views = np.concatenate([z1, z2])
  per_image = np.zeros(n)
  for i in range(2 * n):
    positive = (i + n) % (2 * n)
    others = [j for j in range(2 * n) if j != i]
    denominator = sum(math.exp(views[i] @ views[j] / temperature) for j in others)
    per_image[i % n] += -math.log(math.exp(views[i] @ views[positive] / temperature) / denominator)
  return per_image


def test_nt_xent_on_a_hand_computed_case():
  # Two images, 2-d embeddings: image 0's views at 0 and 90 degrees, image 1's both at 180.
  z1 = np.array([[1.0, 0.0], [-1.0, 0.0]], np.float32)
  z2 = np.array([[0.0, 1.0], [-1.0, 0.0]], np.float32)
  per_anchor, _, _ = losses.multi_view_nt_xent(tf.constant(np.stack([z1, z2])), 1.0)
  e = math.e
  # Anchor z1[0]: positive z2[0] (cos 0), negatives z1[1] (-1), z2[1] (-1).
  first = -math.log(1.0 / (1.0 + 2.0 / e))
  # Anchor z1[1]: positive z2[1] (cos 1), negatives z1[0] (-1), z2[0] (0).
  second = -math.log(e / (e + 1.0 / e + 1.0))
  np.testing.assert_allclose(per_anchor.numpy()[:2], [first, second], rtol=1e-6)
  rng = np.random.default_rng(0)
  z1, z2 = _normalized(rng, 6, 8), _normalized(rng, 6, 8)
  per_anchor, _, _ = losses.multi_view_nt_xent(tf.constant(np.stack([z1, z2])), 0.1)
  np.testing.assert_allclose(per_anchor.numpy()[:6] + per_anchor.numpy()[6:],
                             _reference_nt_xent(z1, z2, 0.1), rtol=1e-4)


def test_nt_xent_on_two_replicas_equals_one_replica_on_the_global_batch(two_replica_strategy):
  from tfssl.methods.simclr import cross_replica_concat_views
  rng = np.random.default_rng(1)
  views = _normalized(rng, 2, 8, 4)
  weights = rng.normal(size=(4, 4)).astype(np.float32)

  def loss_and_grad(local_views, variable, global_batch):
    with tf.GradientTape() as tape:
      embeddings = tf.math.l2_normalize(tf.einsum("vnd,de->vne", local_views, variable), -1)
      all_embeddings, offset = cross_replica_concat_views(embeddings)
      per_anchor, _, _ = losses.multi_view_nt_xent(embeddings, 0.5, all_embeddings, offset)
      loss = tf.reduce_sum(per_anchor) / global_batch
    return loss, tape.gradient(loss, variable)

  single_variable = tf.Variable(weights)
  single_loss, single_grad = loss_and_grad(tf.constant(views), single_variable, 8)
  with two_replica_strategy.scope():
    variable = tf.Variable(weights)
  dataset = two_replica_strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(np.transpose(views, [1, 0, 2])).unbatch().batch(8))

  @tf.function
  def step(batch):
    return two_replica_strategy.run(
        lambda b: loss_and_grad(tf.transpose(b, [1, 0, 2]), variable, 8), args=(batch,))

  losses_, grads = step(next(iter(dataset)))
  replica_losses = two_replica_strategy.experimental_local_results(losses_)
  replica_grads = two_replica_strategy.experimental_local_results(grads)
  np.testing.assert_allclose(sum(float(x) for x in replica_losses), float(single_loss),
                             rtol=1e-5)
  np.testing.assert_allclose(sum(g.numpy() for g in replica_grads), single_grad.numpy(),
                             rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("strategy_name", ["attracted", "eliminated"])
def test_fnc_loss_on_two_replicas_equals_one_replica_on_the_global_batch(strategy_name,
                                                                         two_replica_strategy):
  from tfssl.methods.simclr import cross_replica_concat_views
  rng = np.random.default_rng(2)
  # Images in pairs of near-duplicates, so every image has false negatives, some of them
  # on the other replica.
  base = _normalized(rng, 4, 6)
  views = np.stack([np.repeat(base, 2, axis=0) + 0.1 * rng.normal(size=(8, 6))
                    for _ in range(3)]).astype(np.float32)
  views /= np.linalg.norm(views, axis=-1, keepdims=True)

  def fnc_loss(local_views):
    all_views, offset = cross_replica_concat_views(local_views)
    mask = losses.top_false_negatives(local_views, all_views, offset, top_k=2, threshold=0.5)
    per_anchor, _, _ = losses.multi_view_nt_xent(local_views, 0.5, all_views, offset,
                                                 **{strategy_name: mask})
    return tf.reduce_sum(per_anchor), tf.reduce_sum(tf.cast(mask, tf.float32))

  single_loss, single_count = fnc_loss(tf.constant(views))
  assert float(single_count) > 0
  dataset = two_replica_strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(np.transpose(views, [1, 0, 2])).unbatch().batch(8))

  @tf.function
  def step(batch):
    return two_replica_strategy.run(lambda b: fnc_loss(tf.transpose(b, [1, 0, 2])),
                                    args=(batch,))

  loss, count = step(next(iter(dataset)))
  local = two_replica_strategy.experimental_local_results
  assert sum(float(x) for x in local(count)) == float(single_count)
  np.testing.assert_allclose(sum(float(x) for x in local(loss)), float(single_loss), rtol=1e-5)


def test_contrastive_top1_counts_only_views_of_the_same_image():
  def method(*overrides):
    config = tiny_config("fnc", *CONTRASTIVE, "support_size=0", "fn_threshold=0.5",
                         "memory_multiplier=0", *overrides)
    return experiment.resolve(config).new_method()

  rng = np.random.default_rng(3)
  # Images in identical pairs: each one's twin is its false negative and ties with its own
  # second view for the top candidate. Attracting the twin must not make it a hit.
  twins = np.repeat(_normalized(rng, 16, 8), 2, axis=0)
  views = tf.constant(np.stack([twins, twins]))
  _, attracted = method("fn_topk=1").contrastive_loss(views, views, training=True)
  _, plain = method("fn_topk=0").contrastive_loss(views, views, training=True)
  np.testing.assert_allclose(float(attracted["false_negatives_per_image"]), 1.0)
  assert float(attracted["contrastive_top1"]) == float(plain["contrastive_top1"]) < 1.0
  distinct = tf.constant(np.stack([_normalized(rng, 32, 8)] * 2))
  np.testing.assert_allclose(
      float(method("fn_topk=0").contrastive_loss(distinct, distinct, True)[1]["contrastive_top1"]),
      1.0)
  # Second views unrelated to the first: the top candidate is rarely the own image.
  unrelated = tf.constant(np.stack([_normalized(rng, 32, 8), _normalized(rng, 32, 8)]))
  unrelated_top1 = method("fn_topk=0").contrastive_loss(unrelated, unrelated, True)[1][
      "contrastive_top1"]
  assert float(unrelated_top1) < 0.5


def _fnc_case():
  """4 images x 3 views (2 main + 1 support) in 3-d: image 2 is a false negative of
  image 0 through image 0's support view; image 3 is far from everything."""
  views = np.zeros((3, 4, 3), np.float32)
  views[:, 0] = [[1, 0, 0], [1, 0, 0], [0, 1, 0]]  # image 0: support view points at image 2
  views[:, 1] = [[0, 0, 1], [0, 0, 1], [0, 0, 1]]
  views[:, 2] = [[0, 1, 0], [0, 1, 0], [0, 0.8, 0.6]]
  views[:, 3] = [[-1, 0, 0], [-1, 0, 0], [-1, 0, 0]]
  return tf.constant(views)


def test_false_negatives_of_a_constructed_case():
  views = _fnc_case()
  mask = losses.top_false_negatives(views, views, 0, top_k=10, threshold=0.7).numpy()
  # Candidates are view-major: column u * 4 + j is view u of image j.
  expected = np.zeros((4, 12), bool)
  expected[0, [2, 6]] = True  # image 2's main views: cos 1 with image 0's support view
  expected[0, 10] = True  # image 2's support view: cos 0.8, above the threshold too
  expected[2, 8] = True  # symmetric: image 0's support view, through image 2's main views
  # Image 1's best candidate is image 2's support view at cos 0.6 (< 0.7); image 3 has
  # nothing above 0; no image is its own false negative.
  np.testing.assert_array_equal(mask, expected)
  top_one = losses.top_false_negatives(views, views, 0, top_k=1, threshold=0.7).numpy()
  assert top_one.sum(axis=1).tolist() == [1, 0, 1, 0]
  assert not losses.top_false_negatives(views, views, 0, top_k=10, threshold=1.1).numpy().any()


def test_attraction_and_elimination_on_the_constructed_case():
  views = _fnc_case()
  mask = losses.top_false_negatives(views, views, 0, top_k=10, threshold=0.7)
  plain, logits, _ = losses.multi_view_nt_xent(views, 1.0)
  attracted, _, positives = losses.multi_view_nt_xent(views, 1.0, attracted=mask)
  eliminated, _, _ = losses.multi_view_nt_xent(views, 1.0, eliminated=mask)
  log_probs = tf.nn.log_softmax(logits).numpy()
  # Anchor 0 (view 0 of image 0): positives are its other views (4, 8) and image 2's (2, 6, 10).
  assert np.flatnonzero(positives[0]).tolist() == [2, 4, 6, 8, 10]
  np.testing.assert_allclose(attracted[0], -log_probs[0, [2, 4, 6, 8, 10]].mean(), rtol=1e-5)
  # Elimination: image 2's views leave anchor 0's denominator.
  kept = [j for j in range(12) if j not in (0, 2, 6, 10)]
  row = logits.numpy()[0, kept]
  expected = -np.mean([logits[0, j] - np.log(np.exp(row).sum()) for j in (4, 8)])
  np.testing.assert_allclose(eliminated[0], expected, rtol=1e-5)
  # Images without false negatives keep the plain loss.
  for anchor in (1, 3, 5, 7, 9, 11):
    np.testing.assert_allclose(attracted[anchor], plain[anchor], rtol=1e-6)
    np.testing.assert_allclose(eliminated[anchor], plain[anchor], rtol=1e-6)


@pytest.mark.parametrize("method,extra", [("simclr", []), ("fnc", FNC),
                                          ("fnc", FNC + ["fn_strategy=elimination"])])
def test_step_compiles_with_xla_and_loss_falls_on_a_fixed_batch(method, extra):
  # Without the online head, whose loss would fall on a fixed batch by itself.
  config = tiny_config(method, *CONTRASTIVE, *extra, "jit_compile=true", "optimizer=sgd",
                       "learning_rate=0.0003", "momentum=0", "online_linear_head=false")
  step_losses = fixed_batch_losses(config, tf.distribute.get_strategy(), 4)
  assert all(math.isfinite(x) for x in step_losses)
  assert step_losses[-1] < step_losses[0]


@pytest.mark.parametrize("method,extra", [("simclr", []), ("fnc", FNC)])
def test_step_runs_on_two_replicas_with_synchronized_batch_norm(method, extra,
                                                                two_replica_strategy):
  config = tiny_config(method, *extra, "learning_rate=0.01", "sync_bn=true",
                       "jit_compile=true")
  step_losses = fixed_batch_losses(config, two_replica_strategy, 2)
  assert all(math.isfinite(x) for x in step_losses)


def test_lars_leaves_excluded_paths_to_plain_momentum():
  excluded = tf.Variable([3.0, 4.0], name="kernel")
  adapted = tf.Variable([3.0, 4.0], name="kernel")
  # tf.Variables have no Keras path: the name stands in for it.
  optimizer = optim.LARS(0.1, momentum=0.0, eta=0.001, exclude_paths=("kernel",))
  optimizer.build([excluded])
  optimizer.apply_gradients([(tf.constant([1.0, 0.0]), excluded)])
  np.testing.assert_allclose(excluded.numpy(), [2.9, 4.0], rtol=1e-6)
  plain = optim.LARS(0.1, momentum=0.0, eta=0.001)
  plain.build([adapted])
  plain.apply_gradients([(tf.constant([1.0, 0.0]), adapted)])
  # trust ratio 0.001 * |w| / |g| = 0.005
  np.testing.assert_allclose(adapted.numpy(), [3.0 - 0.1 * 0.005, 4.0], rtol=1e-6)


def test_freeze_through_block_freezes_stem_and_the_blocks_up_to_it():
  model = models.build_model("wide_resnet28_2", image_size=16, width=0.0625)
  total = len(model.trainable_weights)
  assert models.freeze_through_block(model, -1) == [] and len(model.trainable_weights) == total
  frozen = models.freeze_through_block(model, 1)
  assert frozen and all(name.split("_")[0] in ("stem", "block1") for name in frozen)
  assert all(not w.path.split("/")[-2].startswith(("stem", "block1_"))
             for w in model.trainable_weights)
  models.freeze_through_block(model, 4)  # past the last of its 3 blocks: everything
  assert not model.trainable_weights


# --- fine-tuning ------------------------------------------------------------------------


PRETRAIN = ["train_steps=4"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("simclr"))
  trainer.train(tiny_config("simclr", *CONTRASTIVE, *PRETRAIN), workdir)
  return workdir


def _pretrained_method(workdir):
  exp = experiment.resolve(tiny_config("simclr", *CONTRASTIVE, *PRETRAIN))
  source = trainer.Trainer(exp, workdir, tf.distribute.get_strategy())
  source.restore()
  return source.method


def _backbone_by_layer(method):
  return {(layer.name, index): weight.numpy()
          for layer in method.backbone.layers for index, weight in enumerate(layer.weights)}


def test_finetune_restores_the_encoder_and_leaves_frozen_blocks_unchanged(pretrained, tmp_path):
  finetune = ["train_mode=finetune", "fine_tune_after_block=2", "ft_proj_selector=1",
              "labels=10pct", "optimizer=sgd", "learning_rate=0.1"]
  start = trainer.train(tiny_config("simclr", *CONTRASTIVE, *finetune, "train_epochs=0",
                                    init_from=pretrained), str(tmp_path / "start"))
  source = _pretrained_method(pretrained)
  restored, pretrained_values = _backbone_by_layer(start.method), _backbone_by_layer(source)
  assert restored.keys() == pretrained_values.keys()
  for key, value in restored.items():
    np.testing.assert_array_equal(value, pretrained_values[key], err_msg=str(key))
  # The logits layer starts at zero; the projection layer it reads was restored.
  assert not start.method.head.dense.kernel.numpy().any()
  np.testing.assert_array_equal(start.method.projection.denses[0].kernel.numpy(),
                                source.projection.denses[0].kernel.numpy())

  tuned = trainer.train(tiny_config("simclr", *CONTRASTIVE, *finetune, "train_steps=3",
                                    init_from=pretrained), str(tmp_path / "tuned"))
  after = _backbone_by_layer(tuned.method)
  changed = {name.split("_")[0] for (name, _), value in after.items()
             if not np.array_equal(value, pretrained_values[(name, _)])}
  # Frozen: stem, block1, block2, moving averages included. Trained: block3 onwards.
  assert changed and not changed & {"stem", "block1", "block2"}
  assert "block3" in changed and "block4" in changed
  assert tuned.method.head.dense.kernel.numpy().any()
  results = trainer.run_eval(tuned.config, str(tmp_path / "tuned"))
  final = results[str(tuned.step)]
  assert 0.0 <= final["top1"] <= final["top5"] <= 1.0


def test_finetune_from_an_exported_module(pretrained, tmp_path):
  module_dir = os.path.join(pretrained, "export", "hub")
  run = trainer.train(tiny_config("simclr", *CONTRASTIVE, "train_mode=finetune",
                                  "labels=10pct", "train_epochs=0", init_from=module_dir),
                      str(tmp_path / "run"))
  source = _pretrained_method(pretrained)
  for a, b in zip(run.method.backbone.weights, source.backbone.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_finetune_from_another_architecture_gets_one_message(pretrained, tmp_path):
  for init_from in (pretrained, os.path.join(pretrained, "export", "hub")):
    config = tiny_config("simclr", *CONTRASTIVE, "train_mode=finetune", "labels=10pct",
                         "model_width=0.125", init_from=init_from)
    with pytest.raises(UserError, match=r"another method or architecture.*x0.125"):
      trainer.train(config, str(tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("override,message", [
    ("train_mode=linear", "Unknown train_mode 'linear'"),
    ("ft_proj_selector=4", "ft_proj_selector=4 must be in 0..3"),
    ("fn_strategy=cancel", "Unknown fn_strategy 'cancel'"),
    ("randaugment_magnitude=12", "randaugment_magnitude=12 within 0..10"),
])
def test_bad_contrastive_settings_are_named(override, message):
  with pytest.raises(UserError, match=message):
    experiment.resolve(tiny_config("fnc", override))


def test_fnc_views_take_randaugment_between_jitter_and_grayscale_as_released(monkeypatch):
  from tfssl.preprocess import recipes  # pylint: disable=import-outside-toplevel
  calls, order = [], []
  monkeypatch.setattr(recipes, "randaugment",
                      lambda image, seed, *args: calls.append(args) or order.append("ra") or image)
  jitter, gray = recipes.color_distortion, recipes.random_grayscale
  monkeypatch.setattr(recipes, "color_distortion", lambda *a, **k: order.append(
      f"jitter p_gray {k.get('p_grayscale', 0.2)}") or jitter(*a, **k))
  monkeypatch.setattr(recipes, "random_grayscale", lambda *a, **k: order.append(
      f"gray {a[2]}") or gray(*a, **k))
  image = tf.random.stateless_uniform([20, 20, 3], [1, 2])
  features = {"image": image, "label": tf.constant(0)}
  seed = tf.constant([1, 2], tf.int64)
  for overrides, expected in (((), [(2, 7)] * 4), (("randaugment_magnitude=5",), [(2, 5)] * 4),
                              (("use_randaugment=false",), [])):
    calls.clear()
    method = experiment.resolve(tiny_config("fnc", *FNC, *overrides)).new_method()
    order.clear()
    views = method.train_preprocess(features, seed)["views"]
    assert views.shape[0] == 4 and calls == expected
    view_order = ["jitter p_gray 0.0", "ra", "gray 0.2"] if expected else ["jitter p_gray 0.2"]
    assert order == view_order * 4
  assert experiment.resolve(tiny_config("fnc")).config.use_randaugment
  assert not experiment.resolve(tiny_config("simclr")).config.get("use_randaugment")


def test_simclr_starts_residual_blocks_at_zero_gamma_and_crops_bicubically(monkeypatch):
  method = experiment.resolve(tiny_config("simclr", model="resnet10_v1")).new_method()
  method.build()
  last_bns = [w for w in method.backbone.weights if w.path.endswith("_bn2/gamma")]
  assert last_bns and all(not np.any(w.numpy()) for w in last_bns)
  off = experiment.resolve(tiny_config("simclr", "zero_init_residual=false",
                                       model="resnet10_v1")).new_method()
  off.build()
  assert all(np.all(w.numpy() == 1) for w in off.backbone.weights if w.path.endswith("_bn2/gamma"))
  from tfssl.preprocess import recipes  # pylint: disable=import-outside-toplevel
  methods_used = []
  crop = recipes.supervised_train
  monkeypatch.setattr(recipes, "supervised_train", lambda *a, **k: methods_used.append(
      k["resize_method"]) or crop(*a, **k))
  features = {"image": tf.random.stateless_uniform([20, 20, 3], [1, 2]), "label": tf.constant(0)}
  method.train_preprocess(features, tf.constant([1, 2], tf.int64))
  assert methods_used == ["bicubic", "bicubic"]
