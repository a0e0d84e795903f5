import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
import tf_keras

from tests.helpers import tiny_config
from tfssl import export
from tfssl import trainer
from tfssl.errors import UserError


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  trainer.train(tiny_config("supervised", "train_steps=5"), str(workdir))
  return export.resolve_module_dir(str(workdir / "export" / "hub"))


def _images(batch=3, size=16):
  return tf.random.stateless_uniform([batch, size, size, 3], seed=[1, 2])


def test_module_info_describes_the_run(module_dir):
  info = json.load(open(os.path.join(module_dir, "module_info.json")))
  assert info["method"] == "supervised" and info["model"] == "resnet10_v2"
  assert info["dataset"] == "digits" and info["image_size"] == 16
  assert info["num_classes"] == 10 and info["step"] == 5
  assert {"default", "logits", "block1", "block4"} <= set(info["outputs"])


def test_four_loaders_compute_the_same_features(module_dir):
  images = _images()
  reference = tf.saved_model.load(module_dir)(images, training=False)
  assert reference["logits"].shape == (3, 10)

  hub_out = hub.load(module_dir)(images, training=False)
  np.testing.assert_allclose(hub_out["default"], reference["default"], rtol=1e-5, atol=1e-6)

  keras2 = tf_keras.Sequential([
      tf_keras.Input((16, 16, 3)),
      hub.KerasLayer(module_dir, trainable=True, output_key="default")])
  np.testing.assert_allclose(keras2(images), reference["default"], rtol=1e-5, atol=1e-6)
  assert keras2.trainable_variables  # fine-tunable

  inputs = keras.Input((16, 16, 3))
  outputs = keras.layers.TFSMLayer(module_dir, call_endpoint="serving_default")(inputs)
  keras3 = keras.Model(inputs, outputs)
  np.testing.assert_allclose(keras3(images)["default"], reference["default"], rtol=1e-5,
                             atol=1e-6)


def test_module_takes_any_batch_size_and_trains(module_dir):
  module = tf.saved_model.load(module_dir)
  assert module(_images(batch=1), training=False)["default"].shape[0] == 1
  assert module(_images(batch=7), training=True)["default"].shape[0] == 7
  assert len(module.trainable_variables) > 0
  assert len(module.variables) >= len(module.trainable_variables)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(module(_images(), training=True)["logits"])
  grads = tape.gradient(loss, module.trainable_variables)
  assert all(g is not None for g in grads)


def test_resolve_newest_and_missing(module_dir, tmp_path):
  hub_dir = os.path.dirname(module_dir)
  assert export.resolve_module_dir(hub_dir) == module_dir
  assert export.resolve_module_dir(os.path.dirname(os.path.dirname(hub_dir))) == module_dir
  with pytest.raises(UserError, match="holds no SavedModel"):
    export.resolve_module_dir(str(tmp_path))
  with pytest.raises(UserError, match="does not exist"):
    export.resolve_module_dir(str(tmp_path / "missing"))
