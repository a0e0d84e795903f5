"""ViT-S/16 (and B/16): size, taps, other input sizes, precision, compilation, stochastic
depth."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import ema as ema_lib
from tfssl import export
from tfssl import models
from tfssl import trainer
from tfssl.errors import UserError
from tfssl.models import vit


def _parameter_count(variables):
  return sum(int(np.prod(v.shape)) for v in variables)


@pytest.mark.parametrize("name,expected", [("vit_s16", 22_050_664), ("vit_b16", 86_567_656)])
def test_parameter_count_with_a_1000_way_head_as_timm(name, expected):
  model = models.build_model(name, image_size=224)
  count = _parameter_count(model.trainable_weights) + (model.output["default"].shape[-1] + 1) * 1000
  assert count == expected  # timm vit_small/base_patch16_224: 22.05M / 86.57M


def test_shapes_at_224_and_a_multicrop_size():
  model = models.build_model("vit_s16", image_size=224, width=0.25)
  out = model(tf.random.uniform([2, 224, 224, 3]))
  assert out["stem"].shape == (2, 14, 14, 96) and out["block12"].shape == (2, 14, 14, 96)
  assert out["default"].shape == (2, 96)
  # DINO's 96-px local crops: a 6x6 grid, position embeddings resized to it.
  small = model(tf.random.uniform([2, 96, 96, 3]))
  assert small["block12"].shape == (2, 6, 6, 96) and small["default"].shape == (2, 96)
  assert np.all(np.isfinite(small["default"].numpy()))


def test_positions_at_the_built_grid_are_the_learnt_ones():
  model = models.build_model("vit_s16", image_size=32, width=0.0625)
  layer = model.get_layer("stem_tokens")
  np.testing.assert_array_equal(layer.grid_positions(8, 8).numpy()[0],
                                layer.positions.numpy()[0, 1:])
  assert layer.grid_positions(4, 4).shape == (1, 16, layer.positions.shape[-1])


@pytest.mark.parametrize("size", [1, 3, 6, 14])
def test_positions_resize_like_tf_bicubic_without_its_kernel(size):
  """The fixed-matrix resize (XLA has no bicubic kernel) matches tf.image.resize up to
  its 1024-entry coefficient table, and compiles."""
  model = models.build_model("vit_s16", image_size=32, width=0.0625)
  layer = model.get_layer("stem_tokens")
  grid = tf.reshape(layer.positions[:, 1:], [1, 8, 8, -1])
  expected = tf.image.resize(grid, [size, size], method="bicubic").numpy().reshape(1, -1, 24)
  compiled = tf.function(lambda: layer.grid_positions(size, size), jit_compile=True)
  np.testing.assert_allclose(compiled().numpy(), expected, atol=2e-4)


def test_default_is_the_normalised_class_token():
  model = models.build_model("vit_s16", image_size=16, width=0.0625)
  images = tf.random.uniform([3, 16, 16, 3])
  out = model(images)["default"].numpy()
  # LayerNorm with unit scale and zero offset at init: each row has mean 0, variance 1.
  np.testing.assert_allclose(out.mean(axis=1), 0.0, atol=1e-4)
  np.testing.assert_allclose(out.var(axis=1), 1.0, rtol=1e-2)


def test_jit_compiled_gradient_and_float32_outputs_under_mixed_bfloat16():
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    model = models.build_model("vit_s16", image_size=16, width=0.0625)
  finally:
    keras.mixed_precision.set_global_policy("float32")

  @tf.function(jit_compile=True)
  def gradients(images):
    with tf.GradientTape() as tape:
      out = model(images, training=True)
      loss = tf.reduce_sum(out["default"] ** 2)
    return out, tape.gradient(loss, model.trainable_variables)

  out, grads = gradients(tf.random.uniform([2, 16, 16, 3]))
  assert all(value.dtype == tf.float32 for value in out.values())
  assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)


def test_freeze_through_block_freezes_the_patch_embedding_and_early_blocks():
  model = models.build_model("vit_s16", image_size=16, width=0.0625)
  frozen = models.freeze_through_block(model, 2)
  assert {name.split("_")[0] for name in frozen} == {"stem", "block1", "block2"}
  assert model.get_layer("block3_attention").trainable


def test_bad_arguments_are_user_errors():
  with pytest.raises(UserError, match="divisible by 16"):
    models.build_model("vit_s16", image_size=200)
  with pytest.raises(UserError, match="patch-net"):
    models.build_model("vit_s16", image_size=64, patch_net=True)


def test_a_method_exports_a_vit_that_runs_at_other_sizes(tmp_path):
  from tests.helpers import tiny_config  # pylint: disable=g-import-not-at-top
  trainer.train(tiny_config("supervised", "train_epochs=0", model="vit_s16"), str(tmp_path))
  module = tf.saved_model.load(str(tmp_path / "export" / "hub" / "0"))
  out = module(tf.random.uniform([2, 24, 24, 3]), training=False)
  assert out["block12"].shape[1:3] == (6, 6) and out["default"].shape == (2, 24)


# --- stochastic depth (DINO's drop_path) ----------------------------------------------------

def _tiny_vit(drop_path_rate=None, seed=0):
  """A 16-px ViT-S/16 of width 24 with fixed initial weights; no drop_path_rate argument
  at all for None (today's call)."""
  keras.utils.set_random_seed(seed)
  options = {} if drop_path_rate is None else {"drop_path_rate": drop_path_rate}
  return models.build_model("vit_s16", image_size=16, width=0.0625, **options)


def _drop_path_layers(model):
  return [layer for layer in model.layers if isinstance(layer, vit.DropPathAdd)]


def _random_op_types(concrete_function):
  graph_def = concrete_function.graph.as_graph_def()
  nodes = list(graph_def.node) + [node for function in graph_def.library.function
                                  for node in function.node_def]
  return {node.op for node in nodes if "Random" in node.op or "Rng" in node.op}


def _training_graph(model):
  return tf.function(lambda images: model(images, training=True)["default"]).get_concrete_function(
      tf.TensorSpec([None, 16, 16, 3], tf.float32))


def test_drop_path_rate_0_is_todays_model_without_random_ops():
  today, zero = _tiny_vit(), _tiny_vit(0.0)
  assert [type(layer) for layer in zero.layers] == [type(layer) for layer in today.layers]
  assert not _drop_path_layers(zero) and len(zero.variables) == len(today.variables)
  images = tf.random.uniform([3, 16, 16, 3])
  for training in (False, True):
    np.testing.assert_array_equal(zero(images, training=training)["default"],
                                  today(images, training=training)["default"])
  assert not _random_op_types(_training_graph(zero))
  assert _random_op_types(_training_graph(_tiny_vit(0.1)))  # the check sees a mask's ops


def test_drop_path_keeps_the_weights_and_checkpoint_entries(tmp_path):
  today, dropping = _tiny_vit(), _tiny_vit(0.1, seed=1)
  # The same layers in the same places (checkpoints name a layer by its index), and the same
  # weights in the same order (DINO's teacher, without drop path, pairs with its student so).
  assert [layer.name for layer in dropping.layers] == [layer.name for layer in today.layers]
  assert [w.path for w in dropping.weights] == [w.path for w in today.weights]
  assert _parameter_count(dropping.trainable_weights) == _parameter_count(today.trainable_weights)
  assert not dropping.non_trainable_weights
  saved = tf.train.Checkpoint(backbone=today).save(str(tmp_path / "today"))
  # A checkpoint of today's model restores every variable, with no entry left over.
  tf.train.Checkpoint(backbone=dropping).restore(saved).assert_consumed()
  images = tf.random.uniform([2, 16, 16, 3])
  np.testing.assert_array_equal(dropping(images)["default"], today(images)["default"])
  resaved = tf.train.Checkpoint(backbone=dropping).save(str(tmp_path / "dropping"))
  assert ({name for name, _ in tf.train.list_variables(resaved)}
          == {name for name, _ in tf.train.list_variables(saved)})
  # --init_from's Polyak averages key `variables` (seed states included) by path.
  assert len({v.path for v in dropping.variables}) == len(dropping.variables)


def test_drop_path_is_the_identity_in_inference():
  today, dropping = _tiny_vit(), _tiny_vit(0.5, seed=1)
  dropping.set_weights(today.get_weights())
  images = tf.random.uniform([8, 16, 16, 3])
  expected = today(images, training=False)["default"].numpy()
  np.testing.assert_array_equal(dropping(images)["default"], expected)
  np.testing.assert_array_equal(dropping(images, training=False)["default"], expected)
  trained = dropping(images, training=True)["default"].numpy()
  assert np.abs(trained - expected).max() > 1e-3
  assert np.abs(dropping(images, training=True)["default"].numpy() - trained).max() > 1e-3


def test_per_block_rates_are_linspace_from_0_to_the_rate():
  model = _tiny_vit(0.1)
  expected = np.linspace(0.0, 0.1, 12)
  np.testing.assert_allclose(vit.drop_path_rates(0.1, 12), expected)
  rates = {layer.name: layer.rate for layer in _drop_path_layers(model)}
  # Block 1's rate is 0: plain adds; every other block drops both residual branches.
  assert set(rates) == {f"block{index}_add{branch}" for index in range(2, 13)
                        for branch in (1, 2)}
  for name, rate in rates.items():
    assert rate == pytest.approx(expected[int(name[len("block"):].split("_")[0]) - 1])
  assert type(model.get_layer("block1_add1")) is keras.layers.Add


@pytest.mark.parametrize("layer_name,rate", [("block12_add2", 0.5),
                                             ("block7_add1", 0.5 * 6 / 11)])
def test_each_sample_drops_a_branch_at_its_blocks_rate(layer_name, rate):
  layer = _tiny_vit(0.5).get_layer(layer_name)
  assert layer.rate == pytest.approx(rate)
  samples = 4000
  residual, branch = tf.zeros([samples, 5, 3]), tf.ones([samples, 5, 3])
  first, second = (layer([residual, branch], training=True).numpy() for _ in range(2))
  for out in (first, second):
    per_sample = out.reshape(samples, -1)
    assert np.all(per_sample == per_sample[:, :1])  # a whole sample's branch or none of it
    np.testing.assert_allclose(np.unique(per_sample), [0.0, 1.0 / (1.0 - rate)], rtol=1e-6)
  dropped = first[:, 0, 0] == 0
  again = second[:, 0, 0] == 0
  tolerance = 4 * np.sqrt(rate * (1 - rate) / samples)
  assert abs(dropped.mean() - rate) < tolerance and abs(again.mean() - rate) < tolerance
  # A new mask every call, independent of the last.
  assert abs((dropped & again).mean() - rate ** 2) < tolerance
  np.testing.assert_array_equal(layer([residual, branch], training=False), branch)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_drop_path_under_jit_compile(policy):
  keras.mixed_precision.set_global_policy(policy)
  try:
    model = _tiny_vit(0.5)
  finally:
    keras.mixed_precision.set_global_policy("float32")

  @tf.function(jit_compile=True)
  def gradients(images):
    with tf.GradientTape() as tape:
      out = model(images, training=True)
      loss = tf.reduce_sum(out["default"] ** 2)
    return out["default"], tape.gradient(loss, model.trainable_variables)

  images = tf.random.uniform([4, 16, 16, 3])
  first, grads = gradients(images)
  second, _ = gradients(images)
  assert first.dtype == tf.float32
  assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)
  assert np.abs(first.numpy() - second.numpy()).max() > 1e-3  # the seed advances under XLA
  layer = model.get_layer("block12_add2")
  ones = tf.ones([2000, 1, 1], layer.compute_dtype)
  mask = tf.function(lambda x: layer([x - 1, x], training=True), jit_compile=True)(ones)
  dropped = (mask.numpy().astype(np.float32) == 0).mean()
  assert abs(dropped - 0.5) < 4 * np.sqrt(0.25 / 2000)
  assert set(np.unique(mask.numpy().astype(np.float32))) == {0.0, 2.0}


def test_each_replica_draws_its_own_mask(two_replica_strategy):
  strategy = two_replica_strategy
  with strategy.scope():
    model = _tiny_vit(0.5)
  layer = model.get_layer("block12_add2")

  @tf.function
  def step(images, ones):
    return strategy.run(lambda x, y: (model(x, training=True)["default"],
                                      layer([y - 1, y], training=True)), args=(images, ones))

  images, ones = tf.random.uniform([4, 16, 16, 3]), tf.ones([256, 1, 1])
  masks = []
  for _ in range(2):
    features, mask = (strategy.experimental_local_results(out) for out in step(images, ones))
    # The same images on both replicas, other samples dropped.
    assert np.abs(features[0].numpy() - features[1].numpy()).max() > 1e-3
    assert np.mean(mask[0].numpy() != mask[1].numpy()) > 0.25
    masks.append(mask[0].numpy())
  assert np.mean(masks[0] != masks[1]) > 0.25


class _BackboneMethod:
  """What trainer.initialize_from and export.HubModule use of a method: a backbone."""

  def __init__(self, backbone):
    self.backbone = backbone

  def trackables(self):
    return {"backbone": self.backbone}

  def trackables_to_initialize(self, saved=()):
    del saved
    return self.trackables()

  def exported_trackables(self):
    return self.trackables()

  @property
  def variables(self):  # as methods.base.Method: Keras `variables`, seed states included
    return list(self.backbone.variables)

  def exported_trainable_variables(self):
    return list(self.backbone.trainable_variables)

  def representations(self, images, training=False):
    return dict(self.backbone(images, training=training))


def test_init_from_and_export_across_drop_path_rates(tmp_path):
  """--init_from loads a run without stochastic depth into one with it and back, from a
  checkpoint with Polyak averages (keyed by variable path) or an exported module; a module
  with it exports (its training-mode call advances seed states the module must hold)."""
  today, dropping = _tiny_vit(), _tiny_vit(0.5, seed=1)
  images = tf.random.uniform([2, 16, 16, 3])
  strategy = tf.distribute.get_strategy()
  averages = ema_lib.WeightAverage(today.trainable_variables, decay=0.0)
  saved = tf.train.Checkpoint(backbone=today, ema=averages).save(str(tmp_path / "today"))
  trainer.initialize_from(_BackboneMethod(dropping), saved, strategy)
  np.testing.assert_array_equal(dropping(images)["default"], today(images)["default"])

  export_dir = export.export_hub_module(_BackboneMethod(dropping), str(tmp_path / "hub"), {})
  module = tf.saved_model.load(export_dir)
  trained = [module(images, training=True)["default"].numpy() for _ in range(2)]
  assert np.abs(trained[0] - trained[1]).max() > 1e-3
  fresh = _tiny_vit(seed=2)
  trainer.initialize_from(_BackboneMethod(fresh), os.path.join(export_dir, export.MODULE_VARIABLES),
                          strategy)
  np.testing.assert_array_equal(fresh(images)["default"], today(images)["default"])


def test_drop_path_rate_errors():
  with pytest.raises(UserError, match=r"Vision Transformers \(vit_b16, vit_b8, vit_s16, vit_s8\), not resnet10"):
    models.build_model("resnet10_v2", image_size=16, width=0.0625, drop_path_rate=0.1)
  models.build_model("resnet10_v2", image_size=16, width=0.0625, drop_path_rate=0.0)
  for rate in (1.0, -0.1):
    with pytest.raises(UserError, match=r"drop_path_rate must be in \[0, 1\)"):
      models.build_model("vit_s16", image_size=16, width=0.0625, drop_path_rate=rate)
