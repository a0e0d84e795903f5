import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import models
from tfssl.errors import UserError

TAPS = {
    "resnet": {"stem", "block1", "block2", "block3", "block4", "default"},
    "wide_resnet": {"stem", "block1", "block2", "block3", "default"},
    "vgg": {"block1", "block2", "block3", "block4", "block5", "default"},
}


def _family(name):
  return "wide_resnet" if name.startswith("wide") else "vgg" if name.startswith("vgg") else "resnet"


@pytest.mark.parametrize("name", [n for n in models.MODELS.names()
                                  if not n.startswith(("resnet101", "resnet152"))])
def test_every_model_builds_with_its_taps(name):
  model = models.build_model(name, image_size=32, width=0.0625)
  out = model(tf.random.uniform([2, 32, 32, 3]), training=True)
  assert set(out) == TAPS[_family(name)]
  assert out["default"].shape.rank == 2 and out["default"].shape[0] == 2
  assert all(v.dtype == tf.float32 for v in out.values())


@pytest.mark.parametrize("name", ["resnet101_v2", "resnet152_v1"])
def test_deep_resnets_build(name):
  model = models.build_model(name, image_size=32, width=0.0625)
  assert model(tf.zeros([1, 32, 32, 3]))["block3"].shape[1:3] == (8, 8)


def test_cifar_and_imagenet_stems():
  cifar = models.build_model("resnet18_v2", image_size=32, width=0.0625)
  out = cifar(tf.zeros([1, 32, 32, 3]))
  assert out["block1"].shape[1:3] == (32, 32) and out["block4"].shape[1:3] == (4, 4)
  imagenet = models.build_model("resnet18_v2", image_size=96, width=0.0625)
  out = imagenet(tf.zeros([1, 96, 96, 3]))
  assert out["stem"].shape[1:3] == (24, 24) and out["block4"].shape[1:3] == (3, 3)


@pytest.mark.parametrize("name,expected", [("resnet50_v1", 25_557_032),
                                           ("resnet50_v2", 25_549_352)])
def test_resnet50_has_the_published_parameter_count(name, expected):
  model = models.build_model(name, image_size=224)
  head = keras.layers.Dense(1000)
  head.build((None, 2048))
  trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables + head.trainable_variables)
  assert trainable == expected  # 25.6M, as the ResNet papers and torchvision count


def test_width_multiplier_scales_channels():
  narrow = models.build_model("resnet18_v1", image_size=32, width=0.25)
  wide = models.build_model("resnet18_v1", image_size=32, width=0.5)
  assert narrow.output["default"].shape[-1] == 128 and wide.output["default"].shape[-1] == 256


def test_other_input_sizes_and_mixed_precision():
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    model = models.build_model("resnet10_v2", image_size=32, width=0.0625)
    out = model(tf.random.uniform([2, 48, 48, 3]))
    assert out["default"].dtype == tf.float32 and out["block4"].shape[1:3] == (6, 6)
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_sync_batch_norm_under_two_replicas(two_replica_strategy):
  with two_replica_strategy.scope():
    model = models.build_model("resnet10_v2", image_size=16, width=0.0625, sync_bn=True)

  def step(images):
    return model(images, training=True)["default"]

  images = tf.random.uniform([4, 16, 16, 3])
  dataset = two_replica_strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(images).unbatch().batch(4))
  out = two_replica_strategy.run(tf.function(step), args=(next(iter(dataset)),))
  assert two_replica_strategy.experimental_local_results(out)[0].shape == (2, 64 // 2)


def test_jit_compiled_forward_and_gradient():
  model = models.build_model("resnet10_v1", image_size=16, width=0.0625)

  @tf.function(jit_compile=True)
  def grads(images):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(model(images, training=True)["default"])
    return tape.gradient(loss, model.trainable_variables)

  assert all(g is not None for g in grads(tf.random.uniform([2, 16, 16, 3])))


def test_unknown_model_lists_known_ones():
  with pytest.raises(UserError, match="Unknown model 'resnet51_v2'.*resnet50_v2"):
    models.build_model("resnet51_v2", image_size=32)
