import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import tiny_config
from tfssl import config as config_lib
from tfssl import eval_hub
from tfssl import trainer
from tfssl.errors import UserError


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  trainer.train(tiny_config("supervised", "train_steps=60", "learning_rate=0.2"), str(workdir))
  return str(workdir)


def _fast_config():
  config = eval_hub.default_config()
  config.linear_epochs = 30
  config.linear_min_steps = 0
  config.finetune_epochs = 0.5
  return config


def test_linear_writes_results(run_dir, tmp_path):
  result = eval_hub.evaluate(run_dir + "/export/hub", "linear", str(tmp_path),
                             config=_fast_config())
  saved = json.load(open(tmp_path / "results.json"))
  for key in ("protocol", "dataset", "representation", "top1", "top5", "num_examples",
              "hub_module"):
    assert key in saved
  assert saved["num_examples"] == 360 and saved["dataset"] == "digits"
  assert result["top1"] > 0.3  # 60 steps of a tiny model; chance is 0.1
  assert os.listdir(tmp_path / "summaries")


def test_linear_fit_takes_more_epochs_when_they_are_too_few_steps():
  # digits: 1437 images at batch 1024 are one step an epoch.
  assert eval_hub.linear_fit_steps(1437, 1024, 100, min_steps=1000) == (1024, 1, 1000)
  assert eval_hub.linear_fit_steps(1437, 1024, 100) == (1024, 1, 100)
  # Partial epochs round up; enough steps from the epochs alone are left as they are.
  assert eval_hub.linear_fit_steps(50_000, 1024, 10, min_steps=1000) == (1024, 48, 21)
  assert eval_hub.linear_fit_steps(50_000, 1024, 100, min_steps=1000) == (1024, 48, 100)
  assert eval_hub.linear_fit_steps(100, 1024, 3, min_steps=0) == (100, 1, 3)


def test_all_representations_in_one_call(run_dir, tmp_path):
  rows = eval_hub.evaluate(run_dir, "knn", str(tmp_path), representation="all",
                           config=_fast_config())
  names = [r["representation"] for r in rows]
  # The tiny supervised module exports logits too; `all` skips them.
  assert names == ["default", "block1", "block2", "block3", "block4", "stem"]
  assert all(r["pool_mode"] == "global_avg" for r in rows)
  assert {r["representation"]: r["feature_dim"] for r in rows}["block4"] == 32


def test_linear_on_all_taps_with_revisiting_max_pooling(run_dir, tmp_path):
  config = _fast_config()
  config.linear_epochs = 5
  config.linear_l2_values = (0.0, 1e-3)
  config.pool_mode = "max"
  config.pool_max_dims = 200  # small enough that the tiny model's big taps get pooled
  rows = eval_hub.evaluate(run_dir, "linear", str(tmp_path), representation="all",
                           config=config)
  by_name = {r["representation"]: r for r in rows}
  assert len(rows) == len(by_name) == 6 and "logits" not in by_name
  # Tiny model, 16 px: stem/block1 16x16x4, block2 8x8x8, block3 4x4x16, block4 2x2x32.
  assert by_name["block1"]["pooling"] == "max 3x3/3 16x16x4 -> 5x5x4 (100)"
  assert by_name["block2"]["pooling"] == "max 2x2/2 8x8x8 -> 4x4x8 (128)"
  assert by_name["block4"]["pooling"] == "flatten 2x2x32 (128)"
  assert by_name["default"]["pooling"] == "none (32)"
  for row in rows:
    assert row["pool_mode"] == "max" and row["pool_max_dims"] == 200
    assert row["feature_dim"] <= 200 and 0.0 <= row["top1"] <= 1.0
  saved = json.load(open(tmp_path / "results.json"))
  assert [r["pooling"] for r in saved] == [r["pooling"] for r in rows]


def test_pool_mode_from_the_command_line(run_dir, tmp_path):
  subprocess.run([sys.executable, "-m", "tfssl.eval_hub", f"--hub_module={run_dir}",
                  "--protocol=knn", "--representation=stem,default", f"--workdir={tmp_path}",
                  "--config.pool_mode=avg", "--config.pool_max_dims=300"], check=True,
                 capture_output=True)
  rows = json.load(open(tmp_path / "results.json"))
  assert [(r["representation"], r["pooling"]) for r in rows] == [
      ("stem", "avg 2x2/2 16x16x4 -> 8x8x4 (256)"), ("default", "none (32)")]


def test_adaptive_pool_window_as_revisiting():
  # ResNet-50 at 224 px, N = 9000: s = ceil(sqrt(H * W * C / 9000)).
  shapes = {(56, 56, 256): (10, (5, 5, 256)), (28, 28, 512): (7, (4, 4, 512)),
            (14, 14, 1024): (5, (2, 2, 1024)), (7, 7, 2048): (4, (1, 1, 2048))}
  for shape, (window, out_shape) in shapes.items():
    pooling = eval_hub.plan_pooling(shape, "max", 9000)
    assert (pooling.window, pooling.out_shape) == (window, out_shape)
    assert pooling.dim <= 9000
  # Exactly 4x the budget: a 2x2 window lands on the budget.
  assert eval_hub.plan_pooling((6, 6, 2), "avg", 18).out_shape == (3, 3, 2)
  # More channels than the budget: pooled to 1x1, all channels kept (as the original).
  assert eval_hub.plan_pooling((4, 4, 10000), "max", 9000).out_shape == (1, 1, 10000)
  # Small enough maps are flattened whole; vectors and global_avg as before.
  assert eval_hub.plan_pooling((4, 4, 8), "max", 9000).mode == "flatten"
  assert eval_hub.plan_pooling((2048,), "max", 9000).mode == "none"
  assert eval_hub.plan_pooling((7, 7, 2048), "global_avg", 9000).out_shape == (2048,)
  with pytest.raises(UserError, match="Unknown pool_mode 'adaptive_max'"):
    eval_hub.plan_pooling((7, 7, 2048), "adaptive_max", 9000)


def test_adaptive_pooling_values_on_a_constructed_map():
  # value(h, w, c) = 14 h + 2 w + c on a 7x7x2 map; N = 24: s = ceil(sqrt(98 / 24)) = 3,
  # so 3x3 windows at stride 3 give 2x2x2 = 8 values; row 6 and column 6 are dropped (VALID).
  h, w, c = np.meshgrid(np.arange(7), np.arange(7), np.arange(2), indexing="ij")
  feature_map = tf.constant((14 * h + 2 * w + c)[None], tf.float32)
  for mode, expected in (
      # max of window (i, j) sits at its bottom-right corner (3i + 2, 3j + 2).
      ("max", [[[32, 33], [38, 39]], [[74, 75], [80, 81]]]),
      # avg of a window is its centre's value, (3i + 1, 3j + 1).
      ("avg", [[[16, 17], [22, 23]], [[58, 59], [64, 65]]])):
    pooling = eval_hub.plan_pooling((7, 7, 2), mode, 24)
    assert (pooling.window, pooling.out_shape, pooling.dim) == (3, (2, 2, 2), 8)
    pooled = eval_hub.apply_pooling(feature_map, pooling).numpy()
    np.testing.assert_allclose(pooled, np.reshape(expected, [1, 8]))
  global_avg = eval_hub.apply_pooling(feature_map, eval_hub.plan_pooling((7, 7, 2), "global_avg"))
  np.testing.assert_allclose(global_avg.numpy(), [[48, 49]])  # the centre (3, 3): 42 + 6 + c


def test_pool_config_overrides_parse():
  config = config_lib.apply_overrides(eval_hub.default_config(),
                                      ["pool_mode=max", "pool_max_dims=4096"])
  assert (config.pool_mode, config.pool_max_dims) == ("max", 4096)


def test_feature_cache_limit_is_a_clear_error(run_dir, tmp_path):
  config = _fast_config()
  config.feature_cache_max_gb = 1e-6  # 1797 digits x 1024 stem values x 4 bytes is 7 MB
  config.pool_mode = "max"
  config.pool_max_dims = 10000
  with pytest.raises(UserError, match="flatten 16x16x4 .*feature_cache_max_gb"):
    eval_hub.evaluate(run_dir, "linear", str(tmp_path), representation="stem", config=config)


def test_finetune_on_label_subset(run_dir, tmp_path):
  result = eval_hub.evaluate(run_dir, "finetune", str(tmp_path), labels="10_per_class",
                             config=_fast_config())
  assert result["labels"] == "10_per_class" and 0.0 <= result["top1"] <= 1.0


def test_knn_scores_constructed_case():
  train = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
  labels = np.array([0, 0, 1, 1])
  scores = eval_hub.knn_scores(train, labels, np.array([[1.0, 0.05], [0.0, 2.0]]), 2, k=2,
                               temperature=0.1)
  assert list(scores.argmax(1)) == [0, 1]


def test_linear_classifier_separates_separable_data():
  rng = np.random.RandomState(0)
  x = np.concatenate([rng.randn(50, 5) + 3, rng.randn(50, 5) - 3]).astype(np.float32)
  y = np.array([0] * 50 + [1] * 50)
  weights, biases = eval_hub.fit_linear_classifiers(x, y, 2, [0.0, 1.0], epochs=20,
                                                    batch_size=32, learning_rate=0.1)
  scores = eval_hub.linear_scores(x, weights, biases)
  assert (scores[0].argmax(1) == y).mean() == 1.0
  # The strongly regularised classifier has smaller weights.
  assert np.abs(weights[1]).sum() < np.abs(weights[0]).sum()


def test_bad_inputs(tmp_path, run_dir):
  with pytest.raises(UserError, match="Unknown protocol 'svm'"):
    eval_hub.evaluate(run_dir, "svm", str(tmp_path))
  with pytest.raises(UserError, match="holds no SavedModel"):
    eval_hub.evaluate(str(tmp_path), "linear", str(tmp_path))
  with pytest.raises(UserError, match="no representation 'block9'"):
    eval_hub.evaluate(run_dir, "linear", str(tmp_path / "e"), representation="block9",
                      config=_fast_config())
