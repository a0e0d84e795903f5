"""What preemptible machines and shared buckets do to a workdir: a second trainer, a
checkpoint cut short or damaged, a damaged record of the config, of the evaluations or of
an export. Each ends in a resumed run or one clear message, and nothing already written is
lost."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from tests import test_datasets
from tests.helpers import REPO, tiny_config, trainer_command, write_digits
from tfssl import datasets
from tfssl import eval_hub
from tfssl import experiment
from tfssl import export as export_lib
from tfssl import lease as lease_lib
from tfssl import trainer
from tfssl.errors import UserError


def _cut_in_half(path):
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])


def _data_files(workdir, step):
  return glob.glob(os.path.join(workdir, "checkpoints", f"ckpt-{step}.data-*"))


@pytest.fixture
def trained_20(tmp_path):
  """A tiny run trained to step 20 with checkpoints at 10 and 20."""
  trainer.train(tiny_config("supervised", "train_steps=20"), str(tmp_path))
  return str(tmp_path)


def test_a_truncated_newest_checkpoint_falls_back_to_the_one_before(trained_20):
  cut = {}
  for path in _data_files(trained_20, 20):
    _cut_in_half(path)
    with open(path, "rb") as f:
      cut[os.path.basename(path)] = f.read()
  resumed = trainer.train(tiny_config("supervised", "train_steps=30"), trained_20)
  assert resumed.history[0][0] == 15  # the first host loop after step 10: ckpt-10 restored
  assert resumed.step == 30
  # The damaged files were moved aside, not overwritten by the new save of step 20.
  aside = os.path.join(trained_20, "checkpoints", "damaged")
  for name, data in cut.items():
    with open(os.path.join(aside, name), "rb") as f:
      assert f.read() == data
  assert trainer.checkpoint_damage(os.path.join(trained_20, "checkpoints", "ckpt-20")) is None


def test_a_checkpoint_saved_after_the_state_file_was_written_is_resumed_from(trained_20):
  """A save cut off between its checkpoint and the state file that lists it: the state
  file names only ckpt-10, but the whole ckpt-20 beside it is newer."""
  with open(os.path.join(trained_20, "checkpoints", "checkpoint"), "w") as f:
    f.write('model_checkpoint_path: "ckpt-10"\nall_model_checkpoint_paths: "ckpt-10"\n')
  exp = experiment.resolve(tiny_config("supervised", "train_steps=30"))
  assert trainer.Trainer(exp, trained_20, tf.distribute.get_strategy()).restore() == 20


def test_a_damaged_or_missing_checkpoint_state_file_resumes_from_the_checkpoints(trained_20):
  """checkpoints/checkpoint only lists the ckpt-N files: without it (or with it garbled) the
  run resumes from the newest of them, never from step 0."""
  exp = experiment.resolve(tiny_config("supervised", "train_steps=30"))
  resumed_step = lambda: trainer.Trainer(exp, trained_20, tf.distribute.get_strategy()).restore()
  state = os.path.join(trained_20, "checkpoints", "checkpoint")
  with open(state, "wb") as f:
    f.write(b"model_checkpoint_path: \"ckpt-2\xff")  # cut, and not text
  assert resumed_step() == 20
  assert glob.glob(state + ".unreadable-*")  # moved aside, not lost
  with open(state, "w") as f:
    f.write('model_checkpoint_path: "ckpt-2')  # cut
  assert resumed_step() == 20
  os.remove(state)
  assert resumed_step() == 20


def test_every_checkpoint_damaged_is_one_message_and_nothing_is_deleted(trained_20):
  for step in (10, 20):
    for path in _data_files(trained_20, step):
      _cut_in_half(path)
  os.remove(os.path.join(trained_20, "checkpoints", "ckpt-10.index"))  # a lost object
  before = sorted(os.listdir(os.path.join(trained_20, "checkpoints")))
  with pytest.raises(UserError, match=r"No checkpoint .* can be read: ckpt-20 \(.*\); "
                                      r"ckpt-10 \(.*\).*Nothing was deleted"):
    trainer.train(tiny_config("supervised", "train_steps=30"), trained_20)
  assert sorted(os.listdir(os.path.join(trained_20, "checkpoints"))) == before


def test_a_checkpoint_of_another_model_keeps_its_own_message(trained_20):
  # Without config.json to compare with, the checkpoint itself shows the other model.
  os.remove(os.path.join(trained_20, "config.json"))
  with pytest.raises(UserError, match="does not match this run's method/model"):
    trainer.train(tiny_config("supervised", "train_steps=30", "model_width=0.125"),
                  trained_20)


def test_a_damaged_config_json_is_named_and_kept(trained_20):
  path = os.path.join(trained_20, "config.json")
  with open(path) as f:
    damaged = f.read()[:40]
  with open(path, "w") as f:
    f.write(damaged)
  with pytest.raises(UserError, match="config.json cannot be read.*move it aside and rerun"):
    trainer.train(tiny_config("supervised", "train_steps=30"), trained_20)
  with open(path) as f:
    assert f.read() == damaged


def test_damaged_eval_results_are_copied_aside_and_their_whole_steps_kept(trained_20):
  config = tiny_config("supervised", "train_steps=20", "eval_poll_seconds=0",
                       "eval_timeout_seconds=1")
  results_path = os.path.join(trained_20, "eval", "results.json")
  os.makedirs(os.path.dirname(results_path))
  finished = {"5": {"step": 5, "top1": 0.5}, "10": {"step": 10, "top1": 0.6}}
  text = json.dumps(finished, indent=2)
  with open(results_path, "w") as f:
    f.write(text[:text.index('"10"') + 12])  # cut inside step 10's entry
  results = trainer.run_eval(config, trained_20)
  assert set(results) == {"5", "20"}
  assert results["5"] == finished["5"]
  with open(results_path) as f:
    assert set(json.load(f)) == {"5", "20"}
  copies = glob.glob(results_path + ".unreadable-*")
  assert len(copies) == 1 and open(copies[0]).read() == text[:text.index('"10"') + 12]


def test_a_damaged_module_info_is_exported_again_and_named_to_eval_hub(trained_20, tmp_path):
  module = os.path.join(trained_20, "export", "hub", "20")
  info_path = os.path.join(module, export_lib.MODULE_INFO)
  with open(info_path, "r+") as f:
    f.truncate(30)
  with pytest.raises(UserError, match="module_info.json cannot be read"):
    eval_hub.evaluate(module, "knn", str(tmp_path / "eval"))
  trainer.train(tiny_config("supervised", "train_steps=20"), trained_20)
  assert export_lib.read_module_info(module)["step"] == 20


def test_a_module_info_write_cut_short_leaves_no_half_file(tmp_path, monkeypatch):
  """A writer stopped half way (a full disk, a kill) leaves the export unfinished, never
  a module_info.json that is half there."""
  method = experiment.resolve(tiny_config("supervised")).new_method()
  method.build()
  dump = json.dump

  def cut_short(obj, f, **options):
    text = json.dumps(obj, **options)
    f.write(text[:len(text) // 2])
    raise OSError("No space left on device")

  monkeypatch.setattr(json, "dump", cut_short)
  with pytest.raises(OSError, match="No space left"):
    export_lib.export_hub_module(method, str(tmp_path / "module"), {"step": 0})
  monkeypatch.setattr(json, "dump", dump)
  assert not os.path.exists(tmp_path / "module" / export_lib.MODULE_INFO)
  assert not export_lib.has_module_info(str(tmp_path / "module"))


# --- a resumed run continues its input stream ---------------------------------------


def _ids_and_seeds(example, seed):
  return {"id": example["id"], "noise": tf.random.stateless_uniform([], seed)}


def _resumed_streams(photos_dir):
  """name -> make(start) of every training stream, small enough to cross epochs; photos_dir
  holds a folder of images (a source that shuffles its files every epoch, unlike digits)."""
  write_digits(photos_dir, count=40)
  photos = datasets.get_source(f"folder:{photos_dir}")
  source = datasets.get_source("digits")
  ids, labels = source.labels_and_ids("train")
  fn = _ids_and_seeds
  second_of_two = tf.distribute.InputContext(2, 1, 2)
  support_ids = datasets.select_labelled_ids("5_per_class", ids, labels, 10, seed=0)
  return {
      "label subset": lambda start: datasets.train_dataset(
          source, batch_size=16, preprocess_fn=fn, keep_ids=ids[:50], shuffle_buffer=64,
          start_batch=start),
      "cached": lambda start: datasets.train_dataset(
          source, batch_size=16, preprocess_fn=fn, keep_ids=ids[:50], shuffle_buffer=64,
          cache=True, start_batch=start),
      "second of two pipelines": lambda start: datasets.train_dataset(
          source, batch_size=64, preprocess_fn=fn, input_context=second_of_two,
          shuffle_buffer=64, start_batch=start),
      "two streams": lambda start: datasets.two_stream_dataset(
          source, sup_batch_size=4, unsup_batch_size=64, sup_preprocess_fn=fn,
          unsup_preprocess_fn=fn, sup_ids=ids[:20], shuffle_buffer=32, start_batch=start),
      "image folder, second of two pipelines": lambda start: datasets.train_dataset(
          photos, batch_size=8, preprocess_fn=fn, input_context=second_of_two,
          shuffle_buffer=8, start_batch=start),
      "support": lambda start: datasets.support_dataset(
          source, keep_ids=support_ids, classes_per_step=4, images_per_class=2,
          preprocess_fn=fn, start_step=start),
  }


def test_a_resumed_input_stream_continues_where_it_stopped(tmp_path):
  """The batches after the first 13 are the same whether the stream ran through them or
  starts after them (the label subset's 50 examples are 3 epochs of 16-example batches;
  the other streams cross an epoch too), and a resumed stream is still graph ops only."""
  for name, make in _resumed_streams(str(tmp_path)).items():
    uninterrupted = [batch for _, batch in zip(range(24), make(0))][13:]
    resumed = [batch for _, batch in zip(range(11), make(13))]
    for want, got in zip(uninterrupted, resumed, strict=True):
      tf.nest.map_structure(lambda w, g: np.testing.assert_array_equal(w, g, err_msg=name),
                            want, got)
    assert not test_datasets._graph_ops(make(13)) & test_datasets.PYTHON_CALLBACK_OPS, name  # pylint: disable=protected-access


def _weights(checkpoint):
  reader = tf.train.load_checkpoint(checkpoint)
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
          if "/.ATTRIBUTES/" in name and "OBJECT_GRAPH" not in name}


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
  # 150 labelled examples: an epoch is under 5 steps, so the resume at step 5 lands
  # inside the second.
  config = tiny_config("supervised", "train_steps=10", "checkpoint_every_steps=5",
                       "labels=150", "summary_images=0")
  uninterrupted = str(tmp_path / "uninterrupted")
  trainer.train(config, uninterrupted)
  want = _weights(os.path.join(uninterrupted, "checkpoints", "ckpt-10"))
  resumed = str(tmp_path / "resumed")
  shutil.copytree(uninterrupted, resumed)
  for path in _data_files(resumed, 10):  # as if killed before step 10: resumes at 5
    _cut_in_half(path)
  assert trainer.train(config, resumed).history[0][0] == 10
  got = _weights(os.path.join(resumed, "checkpoints", "ckpt-10"))
  assert set(got) == set(want)
  for name in want:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)


# --- one trainer per workdir ----------------------------------------------------------

LEASE = ["lease_heartbeat_seconds=0.5", "lease_stale_seconds=3"]


def _write_lease(workdir, **fields):
  now = time.time()
  holder = dict(dict(host="another-host", pid=1, start_time=now - 60, heartbeat=now,
                     token="theirs"), **fields)
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, lease_lib.LEASE_FILE)
  with open(path + ".tmp", "w") as f:  # whole, as the holder's rename makes it
    json.dump(holder, f)
  os.replace(path + ".tmp", path)


def test_a_second_trainer_of_a_workdir_is_refused_naming_the_first(tmp_path):
  workdir = str(tmp_path / "run")
  first = subprocess.Popen(trainer_command(workdir, "--config.train_steps=100000",
                                           *[f"--config.{o}" for o in LEASE]),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    lease_path = os.path.join(workdir, lease_lib.LEASE_FILE)
    deadline = time.time() + 120
    while not os.path.exists(lease_path) and time.time() < deadline:
      time.sleep(0.2)
    assert os.path.exists(lease_path) and first.poll() is None, "the first trainer stopped"
    with pytest.raises(UserError, match=rf"being trained by another trainer: process "
                                        rf"{first.pid} on host .*--force_takeover"):
      trainer.train(tiny_config("supervised", "train_steps=100000", *LEASE), workdir)
    assert os.path.exists(lease_path)  # the first one's lease is left alone
  finally:
    first.kill()
    first.wait()


def test_the_workdir_is_checked_once_and_leased_right_after(tmp_path, monkeypatch):
  calls = []
  check, acquire = experiment.check_workdir, lease_lib.WorkdirLease.acquire
  monkeypatch.setattr(experiment, "check_workdir",
                      lambda *args: calls.append("check") or check(*args))
  monkeypatch.setattr(lease_lib.WorkdirLease, "acquire",
                      lambda self, **kw: calls.append("lease") or acquire(self, **kw))
  trainer.train(tiny_config("supervised", "train_epochs=0"), str(tmp_path))
  assert calls == ["check", "lease"]


def test_a_stale_lease_of_a_host_that_went_away_is_taken_over(tmp_path):
  workdir = str(tmp_path / "run")
  _write_lease(workdir, heartbeat=time.time() - 1)  # goes stale within the wait
  run = trainer.train(tiny_config("supervised", "train_steps=10", *LEASE), workdir)
  assert run.step == 10
  assert not os.path.exists(os.path.join(workdir, lease_lib.LEASE_FILE))  # released


def test_a_lease_renewed_from_another_host_is_refused(tmp_path):
  workdir = str(tmp_path / "run")
  _write_lease(workdir)
  stop = threading.Event()

  def renew():
    while not stop.wait(0.2):
      _write_lease(workdir)

  renewer = threading.Thread(target=renew)
  renewer.start()
  try:
    with pytest.raises(UserError, match="another-host.*its heartbeat is being renewed"):
      trainer.train(tiny_config("supervised", "train_steps=10", *LEASE), workdir)
  finally:
    stop.set()
    renewer.join()


def test_force_takeover_stops_the_holder_at_its_next_check(tmp_path):
  holder = lease_lib.WorkdirLease(str(tmp_path), heartbeat_seconds=0.1,
                                  stale_seconds=10).acquire()
  holder.check()
  newcomer = lease_lib.WorkdirLease(str(tmp_path), heartbeat_seconds=0.1,
                                    stale_seconds=10).acquire(force=True)
  with pytest.raises(UserError, match="was taken over by process"):
    holder.check()
  holder.release()  # leaves the newcomer's lease in place
  assert newcomer.read().token == newcomer.mine.token
  newcomer.release()
  assert newcomer.read() is None


def test_only_the_holders_own_process_counts_as_alive(tmp_path):
  """A restarted container's trainer is pid 1 again: a lease naming this process's id, or
  a live id whose process started at another time, is not a live holder's."""
  mine = vars(lease_lib.WorkdirLease(str(tmp_path)).mine)
  read = lambda: lease_lib.WorkdirLease(str(tmp_path)).read()
  alive = lease_lib._holder_alive_here  # pylint: disable=protected-access
  _write_lease(str(tmp_path), **dict(mine, token="theirs"))
  assert alive(read()) is False
  sleeper = subprocess.Popen(["sleep", "30"])
  try:
    _write_lease(str(tmp_path), **dict(mine, token="theirs", pid=sleeper.pid,
                                       process_start="1"))
    assert alive(read()) is False
    _write_lease(str(tmp_path), **dict(mine, token="theirs", pid=sleeper.pid,
                                       process_start=lease_lib._process_start(sleeper.pid)))  # pylint: disable=protected-access
    assert alive(read()) is True
    _write_lease(str(tmp_path), **dict(mine, token="theirs", host="another-host"))
    assert alive(read()) is None  # the heartbeat must tell
  finally:
    sleeper.kill()
    sleeper.wait()


# --- SIGKILL in the middle of writing --------------------------------------------------

# Trains the tiny run to step 20 in a subprocess that SIGKILLs itself in the middle of
# writing: "checkpoint": ckpt-20's files written, the manager's state file not yet naming
# it (the whole ckpt-20 is resumed from); "export": the SavedModel written, its
# module_info.json (written last) not yet.
_KILLED_MID_WRITE = r"""
import os, signal, sys
import tensorflow as tf
from tensorflow.python.checkpoint import checkpoint_management
from tests.helpers import tiny_config
from tfssl import trainer

where, workdir = sys.argv[1:]
kill = lambda: os.kill(os.getpid(), signal.SIGKILL)
if where == "checkpoint":
  record_state = checkpoint_management.CheckpointManager._record_state
  def killed_before_recording(self):
    if os.path.exists(os.path.join(workdir, "checkpoints", "ckpt-20.index")):
      kill()
    return record_state(self)
  checkpoint_management.CheckpointManager._record_state = killed_before_recording
else:
  save = tf.saved_model.save
  def killed_after_saving(*args, **kwargs):
    save(*args, **kwargs)
    kill()
  tf.saved_model.save = killed_after_saving
trainer.train(tiny_config("supervised", "train_steps=20"), workdir)
"""


@pytest.mark.parametrize("where", ["checkpoint", "export"])
def test_a_sigkill_while_writing_is_followed_by_a_rerun_that_finishes(tmp_path, where):
  workdir = str(tmp_path / "run")
  killed = subprocess.run([sys.executable, "-c", _KILLED_MID_WRITE, where, workdir],
                          cwd=REPO, capture_output=True, text=True)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  assert os.path.exists(os.path.join(workdir, lease_lib.LEASE_FILE))  # the killed one's
  rerun = trainer.train(tiny_config("supervised", "train_steps=20"), workdir)
  assert not rerun.history  # resumed from the whole ckpt-20: nothing trained again
  module = os.path.join(workdir, "export", "hub", "20")
  assert export_lib.read_module_info(module)["step"] == 20
  outputs = tf.saved_model.load(module)(tf.zeros([2, 16, 16, 3]), training=False)
  assert outputs["logits"].shape == (2, 10)
