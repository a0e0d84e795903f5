"""Remote workdirs and dataset dirs: every read and write goes through tf.io.gfile.

The cycle runs on TensorFlow's in-memory `ram://` filesystem, which lives in this process
only: a plain open/os.path/np.save on a workdir, dataset dir or label file would fail or
leave a local `ram:` directory behind. gs:// cannot be reached from a test, so its
failure without credentials is simulated by a gfile that raises what TF raises.
"""

import os
import uuid

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import tiny_config
from tfssl import datasets
from tfssl import eval_hub
from tfssl import experiment
from tfssl import report
from tfssl import trainer
from tfssl.errors import UserError

CIFAR10_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]


@pytest.fixture
def ram_root():
  root = f"ram://tfssl_{uuid.uuid4().hex}"
  tf.io.gfile.makedirs(root)
  yield root
  tf.io.gfile.rmtree(root)


def _write_cifar10(folder, per_file):
  """CIFAR-10 binaries (label byte + 3x32x32 pixels a record) written through gfile."""
  tf.io.gfile.makedirs(folder)
  rng = np.random.RandomState(0)
  for name in CIFAR10_FILES:
    labels = np.arange(per_file, dtype=np.uint8)[:, None] % 10
    pixels = rng.randint(0, 256, [per_file, 32 * 32 * 3], dtype=np.uint8)
    with tf.io.gfile.GFile(os.path.join(folder, name), "wb") as f:
      f.write(np.concatenate([labels, pixels], 1).tobytes())


def test_train_resume_export_evaluate_on_a_non_local_filesystem(ram_root, tmp_path,
                                                                monkeypatch):
  monkeypatch.chdir(tmp_path)  # a path taken for a local one would land here
  # ram:// says a path exists if it is a string prefix of one that does ("run" of "run2"):
  # no name here is a prefix of another.
  data, workdir, evaldir = (f"{ram_root}/cifar", f"{ram_root}/run", f"{ram_root}/evaluation")
  _write_cifar10(data, per_file=8)
  label_file = f"{ram_root}/labelled.txt"
  with tf.io.gfile.GFile(label_file, "w") as f:
    f.write("\n".join(str(i) for i in range(32)))

  def config(steps):
    # No XLA: compiling costs seconds and has nothing to do with paths.
    return tiny_config("supervised", f"train_steps={steps}", "steps_per_loop=2",
                       "summary_images=2", "jit_compile=false", dataset="cifar10",
                       dataset_dir=data, labels=f"file:{label_file}")

  trainer.train(config(2), workdir)
  assert tf.train.latest_checkpoint(f"{workdir}/checkpoints") == f"{workdir}/checkpoints/ckpt-2"
  assert tf.io.gfile.exists(f"{workdir}/export/hub/2/saved_model.pb")
  assert tf.io.gfile.listdir(f"{workdir}/summaries/train")

  resumed = trainer.train(config(4), workdir)
  assert [step for step, _ in resumed.history] == [4] and resumed.step == 4
  assert tf.io.gfile.exists(f"{workdir}/config.resumed.json")

  result = eval_hub.evaluate(f"{workdir}/export/hub", "knn", evaldir)
  assert result["hub_module"] == f"{workdir}/export/hub/4"
  assert result["num_examples"] == 8 and result["dataset"] == "cifar10"
  assert tf.io.gfile.listdir(f"{evaldir}/summaries")
  assert [row["top1"] for row in report.collect(evaldir)] == [result["top1"]]
  assert not os.listdir(tmp_path)


def test_image_folder_and_tfrecords_read_from_a_non_local_filesystem(ram_root, tmp_path,
                                                                     monkeypatch):
  monkeypatch.chdir(tmp_path)
  jpeg = tf.io.encode_jpeg(tf.fill([8, 8, 3], tf.constant(90, tf.uint8))).numpy()
  for split in ("train", "validation"):
    for name in ("cat", "dog"):
      # ram:// lists only dirs made explicitly (gs:// lists implied ones too).
      tf.io.gfile.makedirs(f"{ram_root}/folder/{split}/{name}")
      with tf.io.gfile.GFile(f"{ram_root}/folder/{split}/{name}/0.jpg", "wb") as f:
        f.write(jpeg)
    tf.io.gfile.makedirs(f"{ram_root}/records")
    with tf.io.TFRecordWriter(f"{ram_root}/records/{split}-00000-of-00001") as writer:
      for index in range(3):
        feature = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
                   "image/class/label": tf.train.Feature(
                       int64_list=tf.train.Int64List(value=[index + 1])),
                   "image/filename": tf.train.Feature(
                       bytes_list=tf.train.BytesList(value=[f"n{index}.JPEG".encode()]))}
        writer.write(tf.train.Example(features=tf.train.Features(feature=feature))
                     .SerializeToString())
  folder = datasets.get_source(f"folder:{ram_root}/folder")
  assert folder.classes == ["cat", "dog"]
  assert list(folder.labels_and_ids("train")[0]) == [b"cat/0.jpg", b"dog/0.jpg"]
  records = datasets.get_source("imagenet", f"{ram_root}/records")
  assert list(records.labels_and_ids("validation")[1]) == [0, 1, 2]
  for source in (folder, records):
    assert next(iter(source.read("train")))["image"].numpy() == jpeg
  assert not os.listdir(tmp_path)


def _no_credentials(monkeypatch):
  """tf.io.gfile.exists as it fails for gs:// on a machine without credentials."""
  exists = tf.io.gfile.exists

  def fake_exists(path):
    if str(path).startswith("gs://"):
      raise tf.errors.PermissionDeniedError(
          None, None, "Error executing an HTTP request: HTTP response code 401 with body "
          "'Anonymous caller does not have storage.objects.get access'\n\t when reading "
          f"metadata of {path}")
    return exists(path)

  monkeypatch.setattr(tf.io.gfile, "exists", fake_exists)


@pytest.mark.parametrize("where", ["workdir", "dataset_dir", "init_from", "hub_module"])
def test_gs_path_without_credentials_is_one_user_error(where, monkeypatch, tmp_path):
  _no_credentials(monkeypatch)
  path = f"gs://bucket/{where}"
  with pytest.raises(UserError) as caught:
    if where == "workdir":
      experiment.check_workdir(path, tiny_config())
    elif where == "hub_module":
      eval_hub.evaluate(path, "knn", str(tmp_path))
    else:
      experiment.resolve(tiny_config(dataset="cifar10", **{where: path}))
  message = str(caught.value)
  assert message.startswith(f"--{where} {path} cannot be accessed (PermissionDeniedError: ")
  for advice in ("gcloud auth application-default login", "GOOGLE_APPLICATION_CREDENTIALS",
                 "service account", "Nothing was written."):
    assert advice in message
  assert not os.listdir(tmp_path)
