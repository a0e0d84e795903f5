"""eval_hub on SavedModels tfssl did not write: a Keras export, a tf.Module with two
signatures and a TF1 Hub module, all made here in a fraction of a second each.

The installed tensorflow_hub (0.16) no longer has `hub.create_module_spec` / `hub.Module`,
so the TF1 Hub module is written as hub.Module.export wrote one: a TF1 SavedModel (one
MetaGraph for the empty tag set, one for {"train"}, signature `default`) and
`tfhub_module.pb` (ModuleDef, format FORMAT_V3), which is what makes `hub.load` take it
for the TF1 Hub format.
"""

import json
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfssl import eval_hub
from tfssl.errors import UserError

# tensorflow_hub's ModuleDef {format: FORMAT_V3}, the whole of a TF1 module's tfhub_module.pb.
TFHUB_MODULE_PB = b"\x08\x03"


def _config(image_size=16):
  config = eval_hub.default_config()
  config.image_size = image_size
  return config


def _pixels(images):
  """[N, 16, 16, 3] -> [N, 48]: 4x4-average-pooled pixels (k-NN on them beats 0.8 on digits)."""
  pooled = tf.nn.avg_pool2d(images, 4, 4, "VALID")
  return tf.reshape(pooled, [-1, 48])


def _min_max(images):
  """[N, 2]: each image's smallest and largest value, to see the input range the call got."""
  return tf.stack([tf.reduce_min(images, [1, 2, 3]), tf.reduce_max(images, [1, 2, 3])], 1)


@pytest.fixture(scope="module")
def keras_module(tmp_path_factory):
  """A Keras conv net for inputs in [-1, 1], exported: `serving_default(image)` -> output_0."""
  keras.utils.set_random_seed(0)
  inputs = keras.Input([16, 16, 3], name="image")
  x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inputs)
  x = keras.layers.AveragePooling2D(2)(x)
  outputs = keras.layers.Flatten(name="features")(x)
  path = str(tmp_path_factory.mktemp("keras") / "module")
  keras.Model(inputs, outputs).export(path, verbose=False)
  return path


class _TwoSignatures(tf.Module):
  """`__call__` returns one tensor; signatures `embed` (float32 `images`) and `stats`
  (uint8 `image`, two outputs, neither named `default`)."""

  def __init__(self):
    super().__init__()
    self.scale = tf.Variable(1.0)

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
  def __call__(self, images):
    return _pixels(images) * self.scale

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="image")])
  def stats(self, image):
    image = tf.cast(image, tf.float32)
    return {"features": self(image / 255.0), "minmax": _min_max(image)}


@pytest.fixture(scope="module")
def two_signature_module(tmp_path_factory):
  module = _TwoSignatures()
  path = str(tmp_path_factory.mktemp("two_signatures") / "module")
  tf.saved_model.save(module, path, signatures={
      "embed": module.__call__.get_concrete_function(),
      "stats": module.stats.get_concrete_function()})
  return path


@pytest.fixture(scope="module")
def tf1_hub_module(tmp_path_factory):
  """`default(images)` -> default, block4, logits, minmax; `with_scale(images, scale)`."""
  path = str(tmp_path_factory.mktemp("tf1_hub") / "module")
  v1 = tf.compat.v1
  with tf.Graph().as_default(), v1.Session() as session:
    images = v1.placeholder(tf.float32, [None, None, None, 3], name="images")
    scale = v1.placeholder(tf.float32, [], name="scale")
    weights = v1.get_variable("logits/w", [48, 10], initializer=v1.zeros_initializer())
    block4 = tf.nn.avg_pool2d(images, 4, 4, "VALID")
    default = tf.reshape(block4, [-1, 48])
    outputs = {"default": default, "block4": block4, "logits": tf.matmul(default, weights),
               "minmax": _min_max(images)}
    signatures = {
        "default": v1.saved_model.signature_def_utils.predict_signature_def(
            {"images": images}, outputs),
        "with_scale": v1.saved_model.signature_def_utils.predict_signature_def(
            {"images": images, "scale": scale}, {"default": default * scale})}
    session.run(v1.global_variables_initializer())
    builder = v1.saved_model.Builder(path)
    builder.add_meta_graph_and_variables(session, [], signature_def_map=signatures)
    builder.add_meta_graph(["train"], signature_def_map=signatures)
    builder.save()
  with open(f"{path}/tfhub_module.pb", "wb") as f:
    f.write(TFHUB_MODULE_PB)
  return path


def _knn(path, workdir, config=None, **kwargs):
  return eval_hub.evaluate(path, "knn", str(workdir), dataset="digits",
                           config=config or _config(), **kwargs)


# Per image: all 0 but one pixel at 1; all 0.5.
_PROBE_IMAGES = tf.constant(np.stack([np.eye(1, 16 * 16 * 3).reshape(16, 16, 3),
                                      np.full([16, 16, 3], 0.5)]), tf.float32)


def test_keras_export_is_scored_at_its_fixed_input_size(keras_module, tmp_path):
  # No --config.image_size: the signature's 16x16 input is taken, not digits' default.
  result = _knn(keras_module, tmp_path, config=_config(image_size=0), input_range="-1,1")
  assert result["top1"] > 0.5  # chance is 0.1
  assert (result["signature"], result["output_key"], result["input_range"],
          result["image_size"], result["feature_dim"]) == ("serving_default", "output_0",
                                                           "-1,1", 16, 128)
  saved = json.load(open(tmp_path / "results.json"))
  assert saved["signature"] == "serving_default" and saved["input_range"] == "-1,1"
  with pytest.raises(UserError, match=r"takes 16x16 images, not --config.image_size=24"):
    _knn(keras_module, tmp_path, config=_config(image_size=24))


def test_tf1_hub_module(tf1_hub_module, tmp_path):
  rows = _knn(tf1_hub_module, tmp_path, representation="all")
  # `default` is the signature's own; logits are left out of `all` as for tfssl modules.
  assert [r["representation"] for r in rows] == ["default", "block4", "minmax"]
  assert rows[0]["top1"] > 0.8 and rows[0]["feature_dim"] == 48
  assert {(r["signature"], r["output_key"], r["input_range"]) for r in rows} == {
      ("default", "default", "0,1")}
  # --output_key: block4 (4x4x3, averaged to 3 values) is scored as `default`.
  picked = _knn(tf1_hub_module, tmp_path, output_key="block4")
  assert (picked["output_key"], picked["pooling"]) == ("block4", "global_avg 4x4x3 -> 3 (3)")


def test_input_range_is_applied(tf1_hub_module, two_signature_module):
  def min_max(path, **kwargs):
    task = eval_hub.Task(path, "digits", None, _config(), **kwargs)
    return task.module(_PROBE_IMAGES)["minmax"].numpy()

  np.testing.assert_allclose(min_max(tf1_hub_module), [[0, 1], [0.5, 0.5]])
  np.testing.assert_allclose(min_max(tf1_hub_module, input_range="-1,1"), [[-1, 1], [0, 0]])
  np.testing.assert_allclose(min_max(tf1_hub_module, input_range="0,255"),
                             [[0, 255], [127.5, 127.5]])
  # A uint8 input takes 0..255 unless told otherwise; 0.5 rounds to 128.
  np.testing.assert_allclose(
      min_max(two_signature_module, signature="stats", output_key="features"),
      [[0, 255], [128, 128]])


def test_module_with_two_signatures(two_signature_module, tmp_path):
  rows = _knn(two_signature_module, tmp_path, signature="stats", output_key="features",
              representation="default,minmax")
  assert [r["representation"] for r in rows] == ["default", "minmax"]
  assert rows[0]["top1"] > 0.8
  assert (rows[0]["signature"], rows[0]["output_key"], rows[0]["input_range"]) == (
      "stats", "features", "0,255")
  # __call__ returns a single tensor: it is output_0, the only output, so `default`.
  called = _knn(two_signature_module, tmp_path, signature="__call__")
  assert (called["output_key"], called["feature_dim"]) == ("output_0", 48)
  assert called["top1"] == pytest.approx(rows[0]["top1"])


def _assert_lists(message, lines):
  """Each of `lines` (regexes) is a whole line of the signature listing in `message`."""
  for line in lines:
    assert re.search(f"^  {line}$", message, re.MULTILINE), (line, message)


LISTING = [r"embed\(images: float32 \[\?, \?, \?, 3\]\) -> output_0 \[\?, 48\]",
           r"stats\(image: uint8 \[\?, \?, \?, 3\]\) -> features \[\?, 48\], minmax \[\?, 2\]",
           r"__call__\(images: float32 \[\?, \?, \?, 3\]\) -> output_0 \[\?, 48\]"]


@pytest.mark.parametrize("kwargs, problem, advice", [
    ({}, "2 signatures and none is serving_default or default", "--signature=NAME"),
    ({"signature": "serving"}, "no signature 'serving'", "--signature=NAME"),
    ({"signature": "stats"}, "signature 'stats' has 2 outputs and none named 'default'",
     "--output_key=NAME"),
    ({"signature": "stats", "output_key": "pooled"}, "signature 'stats' has no output 'pooled'",
     "--output_key=NAME"),
])
def test_failed_guesses_list_the_signatures(two_signature_module, tmp_path, kwargs, problem,
                                            advice):
  with pytest.raises(UserError) as error:
    _knn(two_signature_module, tmp_path, **kwargs)
  message = str(error.value)
  assert problem in message and f"Pass {advice}" in message
  _assert_lists(message, LISTING)


def test_bad_inputs_and_flag_values(tf1_hub_module, two_signature_module, tmp_path):
  with pytest.raises(UserError, match="signature 'with_scale' does not take one float or uint8 "
                     "image tensor") as error:
    _knn(tf1_hub_module, tmp_path, signature="with_scale")
  _assert_lists(str(error.value), [
      r"with_scale\(images: float32 \[\?, \?, \?, 3\], scale: float32 \[\]\) -> "
      r"default \[\?, 48\]",
      r"default\(images: float32 \[\?, \?, \?, 3\]\) -> block4 \[\?, \?, \?, 3\], "
      r"default \[\?, 48\], logits \[\?, 10\], minmax \[\?, 2\]"])
  for bad in ("1,0", "0", "a,b", "0,inf", ""):
    with pytest.raises(UserError, match="Bad --input_range"):
      _knn(tf1_hub_module, tmp_path, input_range=bad)
  with pytest.raises(UserError, match="does not fit the uint8 input of signature 'stats'"):
    _knn(two_signature_module, tmp_path, signature="stats", output_key="features",
         input_range="-1,1")
  with pytest.raises(UserError, match="no module_info.json naming its dataset: pass --dataset"):
    eval_hub.evaluate(tf1_hub_module, "knn", str(tmp_path), config=_config())


def test_command_line_lists_the_signatures(two_signature_module, tmp_path):
  done = subprocess.run([sys.executable, "-m", "tfssl.eval_hub",
                         f"--hub_module={two_signature_module}", "--dataset=digits",
                         "--protocol=knn", f"--workdir={tmp_path}", "--config.image_size=16"],
                        capture_output=True, text=True)
  assert done.returncode == 2, done.stderr
  error = done.stderr[done.stderr.index("error: "):]
  assert "2 signatures and none is serving_default or default" in error
  assert "embed(images: float32 [?, ?, ?, 3]) -> output_0 [?, 48]" in error
  assert "stats(image: uint8 [?, ?, ?, 3]) -> features [?, 48], minmax [?, 2]" in error
  assert "Pass --signature=NAME." in error and "Traceback" not in done.stderr
