"""ViT-S/16 (and B/16): size, taps, other input sizes, precision, compilation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import models
from tfssl.errors import UserError


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
  from tfssl import trainer  # pylint: disable=g-import-not-at-top
  trainer.train(tiny_config("supervised", "train_epochs=0", model="vit_s16"), str(tmp_path))
  module = tf.saved_model.load(str(tmp_path / "export" / "hub" / "0"))
  out = module(tf.random.uniform([2, 24, 24, 3]), training=False)
  assert out["block12"].shape[1:3] == (6, 6) and out["default"].shape == (2, 24)
