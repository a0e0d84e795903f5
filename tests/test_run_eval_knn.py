"""--run_eval of a method without a classifier scores each checkpoint by eval_hub's k-NN on
`default`; every run's config is in TensorBoard's HParams tab with its final metrics."""

import json
import os

import numpy as np
import pytest

from tests.helpers import tiny_config, write_digits
from tfssl import eval_hub
from tfssl import hparams as hparams_lib
from tfssl import trainer
from tfssl.errors import UserError

FOLLOW = ["eval_poll_seconds=0", "eval_timeout_seconds=1", "jit_compile=false",
          "checkpoint_every_steps=10"]


def _rotation_config(steps, *overrides):
  return tiny_config("rotation", f"train_steps={steps}", *FOLLOW, *overrides)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
  """Two workdirs of one logdir: rotation trained to 10 then 20 steps, --run_eval following
  it after each; and an untrained supervised run."""
  root = tmp_path_factory.mktemp("logdir")
  workdir = str(root / "rotation")
  for steps in (10, 20):
    trainer.train(_rotation_config(steps), workdir)
    trainer.run_eval(_rotation_config(20), workdir)
  trainer.train(tiny_config("supervised", "train_epochs=0", *FOLLOW), str(root / "supervised"))
  return root


def test_each_checkpoint_gets_knn_accuracy_equal_to_eval_hubs(logdir, tmp_path):
  workdir = str(logdir / "rotation")
  results = json.load(open(os.path.join(workdir, "eval", "results.json")))
  assert sorted(results, key=int) == ["10", "20"]
  for step, record in results.items():
    assert record["step"] == int(step) and record["split"] == "test"
    assert 0.0 <= record["knn_top1"] <= record["knn_top5"] <= 1.0
    assert record["knn_top1"] > 0.1  # chance
    assert record["num_examples"] == 360 and record["knn_memory_examples"] == 1437
    assert record["knn_k"] == eval_hub.default_config().knn_k
    assert record["knn_feature_seconds"] > 0 and record["knn_score_seconds"] > 0
    hub = eval_hub.evaluate(os.path.join(workdir, "export", "hub", step), "knn",
                            str(tmp_path / step))
    assert record["knn_top1"] == pytest.approx(hub["top1"])  # the same features
    assert record["knn_top5"] == pytest.approx(hub["top5"])


def test_memory_is_the_label_subset_capped_by_a_seeded_sample(logdir):
  workdir = str(logdir / "rotation")
  config = _rotation_config(20, "knn_max_train_examples=100")
  evaluator = trainer.Evaluator(trainer.experiment_lib.resolve(config), workdir,
                                trainer.tf.distribute.get_strategy())
  again = trainer.Evaluator(trainer.experiment_lib.resolve(config), workdir,
                            trainer.tf.distribute.get_strategy())
  assert len(evaluator.knn.memory_ids) == 100
  np.testing.assert_array_equal(evaluator.knn.memory_ids, again.knn.memory_ids)
  subset = tiny_config("rotation", "train_steps=20", *FOLLOW, labels="50_per_class")
  knn = trainer.Evaluator(trainer.experiment_lib.resolve(subset), workdir,
                          trainer.tf.distribute.get_strategy()).knn
  features, labels = knn.features("memory")
  assert features.shape[0] == knn.num_memory == 500
  assert np.bincount(labels).tolist() == [50] * 10


def test_unlabelled_images_say_knn_needs_labels(tmp_path):
  write_digits(str(tmp_path / "images"), count=40)
  config = tiny_config("rotation", "train_steps=1", *FOLLOW, dataset=f"folder:{tmp_path}/images")
  with pytest.raises(UserError, match="k-NN.*needs labelled images.*PATH/train/<class>.*--dataset=folder:PATH"):
    trainer.run_eval(config, str(tmp_path / "run"))


def _session_groups(logdir):
  """{session group name: (hparams, {metric tag: (value, step)})} as TensorBoard's HParams
  plugin serves them for `logdir`."""
  from tensorboard import context  # pylint: disable=g-import-not-at-top
  from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
  from tensorboard.plugins import base_plugin
  from tensorboard.plugins.hparams import (api_pb2, get_experiment, hparams_plugin,
                                           list_session_groups)
  multiplexer = plugin_event_multiplexer.EventMultiplexer()
  multiplexer.AddRunsFromDirectory(str(logdir))
  multiplexer.Reload()
  plugin = hparams_plugin.HParamsPlugin(base_plugin.TBContext(
      logdir=str(logdir), multiplexer=multiplexer,
      data_provider=data_provider.MultiplexerDataProvider(multiplexer, str(logdir))))
  request_context = context.RequestContext()
  experiment = get_experiment.Handler(request_context, plugin._context, "",  # pylint: disable=protected-access
                                      api_pb2.GetExperimentRequest()).run()
  columns = ([api_pb2.ColParams(hparam=info.name) for info in experiment.hparam_infos]
             + [api_pb2.ColParams(metric=info.name) for info in experiment.metric_infos])
  response = list_session_groups.Handler(
      request_context, plugin._context, "",  # pylint: disable=protected-access
      api_pb2.ListSessionGroupsRequest(col_params=columns, slice_size=100,
                                       allowed_statuses=[api_pb2.STATUS_UNKNOWN])).run()
  return {group.name: ({key: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
                        for key, value in group.hparams.items()},
                       {metric.name.tag: (metric.value, metric.training_step)
                        for metric in group.metric_values})
          for group in response.session_groups}


def test_hparams_tab_compares_the_runs_of_a_logdir(logdir):
  groups = _session_groups(logdir)
  rotation, supervised = str(logdir / "rotation"), str(logdir / "supervised")
  assert sorted(groups) == [rotation, supervised]
  hparams, metrics = groups[rotation]
  # The config the run was last started with; values that are not scalars as text.
  assert hparams["method"] == "rotation" and hparams["train_steps"] == 20
  assert hparams["jit_compile"] is False and hparams["decay_epochs"] == "(30.0, 60.0, 80.0)"
  assert hparams == pytest.approx(hparams_lib.hparam_values(_rotation_config(20)))
  # Final metrics: the last values of the training job's and the --run_eval job's scalars.
  results = json.load(open(logdir / "rotation" / "eval" / "results.json"))
  assert metrics["eval/knn_top1"] == (pytest.approx(results["20"]["knn_top1"]), 20)
  assert metrics["train/loss"][1] == 20 and np.isfinite(metrics["train/loss"][0])
  assert groups[supervised][0]["method"] == "supervised"
