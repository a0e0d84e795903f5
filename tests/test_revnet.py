import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tfssl import models
from tfssl.models import layers
from tfssl.models import revnet

TINY = 0.0625

# At 32 px (CIFAR stem) and width 1/16: {tap: (side, channels)}. The stem already has
# stage 1's width (256 x width): units cannot change the channel count.
REVNET_32 = {"stem": (32, 16), "block1": (32, 16), "block2": (16, 32), "block3": (8, 64),
             "block4": (4, 128)}

# Trainable parameters of google/revisiting-self-supervised `models/resnet.py: revnet50`
# without the logits layer, at filters_factor 4 (width 1) and 16 (width 4), ImageNet stem:
#   stem conv 7*7*3*C1; per unit, with half h = C/2 and bottleneck b = h/4, the BN gammas
#   and betas 2h + 2b + 2b and the convs h*b + 9*b*b + b*h, i.e. 17b^2 + 12b;
#   stages of 3, 4, 6, 3 units at b = 32, 64, 128, 256 (x width); final BN 2 * 2048.
# (Also checked by running the original's TF1 code through a tf.layers shim with these
# weights: identical counts and identical outputs.)
ORIGINAL_TRAINABLE_PARAMETERS = {1.0: 5_408_640, 4.0: 85_765_632}


def _parameter_count(variables):
  return sum(int(np.prod(v.shape)) for v in variables)


def _small_revnet(sync_bn=False, **kwargs):
  """One unit per stage: the structure of RevNet-50 at a fraction of its compile time."""
  kwargs.setdefault("image_size", 16)
  kwargs.setdefault("width", TINY)
  return revnet.revnet((1, 1, 1, 1), layers.LayerFactory(sync_bn=sync_bn), **kwargs)


def test_taps_and_default_at_32px():
  model = models.build_model("revnet50", image_size=32, width=TINY)
  assert model.name == "revnet50"
  assert {tap: tuple(t.shape) for tap, t in model.output.items()} == {
      **{tap: (None, side, side, channels) for tap, (side, channels) in REVNET_32.items()},
      "default": (None, 128)}
  out = model(tf.random.uniform([2, 32, 32, 3]), training=True)
  assert all(value.dtype == tf.float32 for value in out.values())
  assert np.all(np.isfinite(out["default"].numpy()))
  # The final BN + ReLU comes after the block4 tap.
  assert np.all(out["default"].numpy() >= 0) and np.any(out["block4"].numpy() < 0)


def test_imagenet_stem_and_other_input_sizes():
  model = models.build_model("revnet50", image_size=64, width=TINY, cifar_stem=False)
  assert model.output["stem"].shape[1:] == (16, 16, 16)
  # Stem strides pad symmetrically; the average pools give ceil(size / 2) on odd sizes.
  out = model(tf.random.uniform([1, 45, 38, 3]))
  assert out["stem"].shape[1:3] == (12, 10) and out["block4"].shape[1:3] == (2, 2)


@pytest.mark.parametrize("width", sorted(ORIGINAL_TRAINABLE_PARAMETERS))
def test_parameter_count_matches_the_original(width):
  # Counts do not depend on the image size; only the stem's kind matters.
  model = models.build_model("revnet50", image_size=32, width=width, cifar_stem=False)
  # Exact: the architecture is the original's; a tolerance would hide the stem (0.7%).
  assert _parameter_count(model.trainable_weights) == ORIGINAL_TRAINABLE_PARAMETERS[width]


def test_width_multiplier_keeps_channels_even():
  model = models.build_model("revnet50", image_size=16, width=0.001)
  assert model.output["stem"].shape[-1] == 2 and model.output["default"].shape[-1] == 16
  assert models.build_model("revnet50", image_size=16, width=0.1).output[
      "block1"].shape[-1] == 26


def test_units_are_invertible():
  model = models.build_model("revnet50", image_size=16, width=TINY)
  unit = "block2_unit3"
  probe = keras.Model(model.input, [model.get_layer(f"{unit}_split").input,
                                    model.get_layer(f"{unit}_concat").output])
  inputs, outputs = probe(tf.random.uniform([2, 16, 16, 3]), training=False)
  # Not a mere swap of the halves: F contributes.
  assert not np.allclose(outputs[..., 16:], inputs[..., :16], atol=1e-3)
  np.testing.assert_allclose(revnet.invert_unit(model, unit, outputs), inputs,
                             atol=1e-5, rtol=1e-5)


def test_jit_compiled_train_step_updates_the_backbone():
  model = _small_revnet()
  head = keras.layers.Dense(4)
  head.build(model.output["default"].shape)
  variables = model.trainable_variables + head.trainable_variables
  optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
  optimizer.build(variables)
  before = [v.numpy() for v in model.trainable_variables]

  @tf.function(jit_compile=True)
  def step(images, labels):
    with tf.GradientTape() as tape:
      logits = head(model(images, training=True)["default"])
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    gradients = tape.gradient(loss, variables)
    optimizer.apply_gradients(zip(gradients, variables))
    return loss, gradients

  loss, gradients = step(tf.random.uniform([4, 16, 16, 3]), tf.range(4))
  assert np.isfinite(loss.numpy())
  assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in gradients)
  assert all(not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables))


def test_name_prefix_separates_two_backbones():
  target = helpers.check_name_prefix_separates_two_backbones(
      functools.partial(models.build_model, "revnet50", image_size=16, width=TINY), "x")
  outputs = target.get_layer("x_block1_unit1_concat").output
  assert revnet.invert_unit(target, "x_block1_unit1", outputs).shape == outputs.shape


def test_zero_init_residual_makes_units_start_as_swaps():
  model = _small_revnet(zero_init_residual=True)
  kernel = model.get_layer("block1_unit1_conv3").kernel
  assert not np.any(kernel.numpy())
  probe = keras.Model(model.input, [model.get_layer("block1_unit1_split").input,
                                    model.get_layer("block1_unit1_concat").output])
  inputs, outputs = probe(tf.random.uniform([1, 16, 16, 3]))
  np.testing.assert_array_equal(outputs, tf.concat([inputs[..., 8:], inputs[..., :8]], -1))


def test_only_kernels_and_batch_norm_are_trainable():
  names = {v.name for v in _small_revnet().trainable_weights}
  assert names == {"kernel", "gamma", "beta"}  # weight decay selects by these names


def test_float32_outputs_under_mixed_bfloat16():
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    model = _small_revnet()
    out = model(tf.random.uniform([2, 16, 16, 3]), training=True)
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert any(layer.compute_dtype == "bfloat16" for layer in model.layers)
  assert all(value.dtype == tf.float32 for value in out.values())


def test_sync_batch_norm_under_two_replicas(two_replica_strategy):
  helpers.check_sync_batch_norm_on_two_replicas(two_replica_strategy, _small_revnet, 128)
