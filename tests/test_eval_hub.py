import json
import os

import numpy as np
import pytest

from tests.helpers import tiny_config
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


def test_all_representations_in_one_call(run_dir, tmp_path):
  rows = eval_hub.evaluate(run_dir, "knn", str(tmp_path), representation="all",
                           config=_fast_config())
  assert {r["representation"] for r in rows} >= {"default", "block1", "block4"}


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
