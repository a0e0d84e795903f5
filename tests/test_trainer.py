import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import REPO, tiny_config, trainer_command
from tfssl import export as export_lib
from tfssl import methods
from tfssl import optim
from tfssl import trainer
from tfssl.errors import NonFiniteLossError, UserError


def _losses(run):
  return [metrics["loss"] for _, metrics in run.history]


def test_supervised_one_replica_jit_loss_falls(tmp_path):
  config = tiny_config("supervised", "train_steps=40", "jit_compile=true")
  run = trainer.train(config, str(tmp_path))
  losses = _losses(run)
  assert all(np.isfinite(losses))
  assert np.mean(losses[-2:]) < losses[0]
  assert run.step == 40
  assert tf.io.gfile.exists(os.path.join(tmp_path, "export", "hub", "40", "saved_model.pb"))
  assert os.listdir(os.path.join(tmp_path, "summaries", "train"))
  saved = json.load(open(os.path.join(tmp_path, "config.json")))
  assert saved["model"] == "resnet10_v2" and saved["train_steps"] == 40


def test_supervised_two_replicas_loss_falls(tmp_path, two_replica_strategy):
  config = tiny_config("supervised", "train_steps=40", "jit_compile=true")
  run = trainer.train(config, str(tmp_path), two_replica_strategy)
  assert run.strategy.num_replicas_in_sync == 2
  losses = _losses(run)
  assert all(np.isfinite(losses)) and np.mean(losses[-2:]) < losses[0]


def test_sync_batch_norm_two_replicas(tmp_path, two_replica_strategy):
  config = tiny_config("supervised", "train_steps=10", "sync_bn=true")
  run = trainer.train(config, str(tmp_path), two_replica_strategy)
  assert all(np.isfinite(_losses(run)))


def test_resume_continues_from_checkpoint(tmp_path):
  trainer.train(tiny_config("supervised", "train_steps=20"), str(tmp_path))
  resumed = trainer.train(tiny_config("supervised", "train_steps=30"), str(tmp_path))
  assert resumed.history[0][0] == 25  # first loop after step 20
  assert resumed.step == 30
  assert os.path.exists(os.path.join(tmp_path, "config.resumed.json"))


def test_rerun_of_a_trained_workdir_redoes_only_an_unfinished_export(tmp_path):
  config = tiny_config("supervised", "train_steps=10")
  trainer.train(config, str(tmp_path))
  module = os.path.join(tmp_path, "export", "hub", "10")
  finished = os.path.getmtime(os.path.join(module, "saved_model.pb"))
  trainer.train(config, str(tmp_path))
  assert os.path.getmtime(os.path.join(module, "saved_model.pb")) == finished
  os.remove(os.path.join(module, export_lib.MODULE_INFO))  # preempted while exporting
  trainer.train(config, str(tmp_path))
  assert os.path.exists(os.path.join(module, export_lib.MODULE_INFO))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  trainer.train(tiny_config("supervised", "train_steps=10"), str(tmp_path))
  with pytest.raises(NonFiniteLossError, match="step 1[1-9]|step 20"):
    trainer.train(tiny_config("supervised", "train_steps=20", "learning_rate=1e30"),
                  str(tmp_path))
  assert tf.train.latest_checkpoint(os.path.join(tmp_path, "checkpoints")).endswith("ckpt-10")


def test_workdir_of_another_model_is_refused_untouched(tmp_path):
  trainer.train(tiny_config("supervised", "train_steps=5"), str(tmp_path))
  before = sorted(os.listdir(tmp_path))
  config_before = open(os.path.join(tmp_path, "config.json")).read()
  with pytest.raises(UserError, match="another configuration.*model"):
    trainer.train(tiny_config("supervised", "train_steps=5", model="resnet10_v1"), str(tmp_path))
  assert sorted(os.listdir(tmp_path)) == before
  assert open(os.path.join(tmp_path, "config.json")).read() == config_before


@pytest.mark.parametrize("field,value,message", [
    ("method", "nope", "Unknown method 'nope'.*supervised"),
    ("model", "resnet7", "Unknown model 'resnet7'.*resnet50_v2"),
    ("dataset", "mnist_xl", "Unknown dataset 'mnist_xl'.*digits"),
])
def test_unknown_names(tmp_path, field, value, message):
  with pytest.raises(UserError, match=message):
    if field == "method":
      tiny_config(value)
    else:
      trainer.train(tiny_config("supervised", **{field: value}), str(tmp_path))
  assert not os.path.exists(os.path.join(tmp_path, "config.json"))


def test_label_subset_too_large(tmp_path):
  with pytest.raises(UserError, match="5000"):
    trainer.train(tiny_config("supervised", "train_steps=5", labels="5000"), str(tmp_path))


def test_batch_not_divisible_by_replicas(tmp_path, two_replica_strategy):
  with pytest.raises(UserError, match="replicas"):
    trainer.train(tiny_config("supervised", "train_steps=5", "batch_size=33"), str(tmp_path),
                  two_replica_strategy)


def test_run_eval_evaluates_each_checkpoint_once(tmp_path):
  config = tiny_config("supervised", "train_steps=20", "keep_checkpoints=5",
                       "eval_poll_seconds=0", "eval_timeout_seconds=1")
  trainer.train(config, str(tmp_path))
  results = trainer.run_eval(config, str(tmp_path))
  assert list(results) == ["20"]  # the iterator starts from the newest checkpoint
  assert 0.0 <= results["20"]["top1"] <= results["20"]["top5"] <= 1.0
  assert results["20"]["num_examples"] == 360
  again = trainer.run_eval(config, str(tmp_path))
  assert again == results
  saved = json.load(open(os.path.join(tmp_path, "eval", "results.json")))
  assert saved["20"]["top5"] == results["20"]["top5"]


def test_cli_reports_bad_input_in_one_line(tmp_path):
  result = subprocess.run(trainer_command(tmp_path, "--dataset=imagenet", "--dataset_dir=/nonexistent"),
                          capture_output=True, text=True, cwd=REPO, timeout=120)
  assert result.returncode == 2
  assert "error:" in result.stderr and "/nonexistent" in result.stderr
  assert "Traceback" not in result.stderr


def test_killed_run_resumes_at_saved_step(tmp_path):
  workdir = tmp_path / "run"
  command = trainer_command(workdir, "--config.train_steps=1000", "--config.checkpoint_every_steps=50",
                 "--config.steps_per_loop=20", "--config.keep_checkpoints=20")
  process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  checkpoints = workdir / "checkpoints"
  deadline = time.time() + 120
  while time.time() < deadline and process.poll() is None:
    if tf.train.latest_checkpoint(str(checkpoints)):
      break
    time.sleep(0.2)
  process.send_signal(signal.SIGKILL)
  process.wait()
  saved_step = int(tf.train.latest_checkpoint(str(checkpoints)).rsplit("-", 1)[1])
  assert 50 <= saved_step < 1000
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert f"at step {saved_step}" in result.stderr
  assert json.loads(result.stdout[result.stdout.index("{"):])["step"] == 1000


def test_mixed_bfloat16_precision_trains(tmp_path):
  import keras  # pylint: disable=g-import-not-at-top
  try:
    run = trainer.train(tiny_config("supervised", "train_steps=10", "precision=mixed_bfloat16"),
                        str(tmp_path))
    assert all(np.isfinite(_losses(run)))
    assert run.method.backbone.compute_dtype == "bfloat16"
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_same_seed_gives_the_same_initial_weights(tmp_path):
  first = trainer.train(tiny_config("supervised", "train_epochs=0"), str(tmp_path / "a"))
  second = trainer.train(tiny_config("supervised", "train_epochs=0"), str(tmp_path / "b"))
  other = trainer.train(tiny_config("supervised", "train_epochs=0", "seed=1"),
                        str(tmp_path / "c"))
  weights = [v.numpy() for v in first.method.variables]
  assert all(np.array_equal(a, v.numpy()) for a, v in zip(weights, second.method.variables))
  assert not all(np.array_equal(a, v.numpy()) for a, v in zip(weights, other.method.variables))


def test_the_same_config_trains_identically_in_two_processes(tmp_path):
  """Initial weights and every update are the same in a new process: the seed, not the
  process, decides them (an initializer made at import time once broke this)."""
  outputs = []
  for name in ("a", "b"):
    result = subprocess.run(trainer_command(tmp_path / name, "--config.train_steps=10",
                                 "--config.steps_per_loop=5"),
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    outputs.append(json.loads(result.stdout[result.stdout.index("{"):])["metrics"])
  assert outputs[0] == outputs[1]


@pytest.mark.parametrize("name", methods.METHODS.names())
def test_checkpoint_of_the_trackables_holds_every_variable(name, tmp_path):
  """Keras 3 layers kept in plain lists are invisible to TF checkpoints; every variable
  of a method must be reachable from its trackables."""
  patches = ["image_size=32", "patch_size=8", "patch_jitter=1", "patch_net=false"]
  overrides = patches if name in ("jigsaw", "relative_patch_location") else []
  if name == "pseudo_label":
    config = tiny_config(name, pseudo_labels="labels.json")
  else:
    config = tiny_config(name, "labels=10pct", *overrides)
  method = methods.get_method(name)(config, 10, config.image_size)
  method.build()
  path = tf.train.Checkpoint(**method.trackables()).write(str(tmp_path / "ckpt"))
  # Dropout's random-seed state is the one variable a checkpoint may go without.
  weights = [v for v in method.variables if "seed_generator" not in optim.variable_path(v)]
  saved = [v.numpy() for v in weights]
  for variable in weights:
    variable.assign(variable + tf.ones_like(variable))
  tf.train.Checkpoint(**method.trackables()).read(path).expect_partial()
  for variable, value in zip(weights, saved):
    np.testing.assert_array_equal(variable.numpy(), value, err_msg=optim.variable_path(variable))
