"""Datasets on real-format files written here: CIFAR binaries, a TFDS mock, slim TFRecords,
image folders (with corrupt images), plus label subsets and the tf.data pipelines."""

import io
import os
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests.helpers import IMAGE_KINDS, tiny_config, write_digits, write_image
from tfssl import datasets
from tfssl import eval_hub
from tfssl import experiment
from tfssl import methods
from tfssl import trainer
from tfssl import preprocess as pp
from tfssl.datasets import subsets
from tfssl.datasets.pipeline import SKIPPED_MESSAGE
from tfssl.errors import UserError

SIZE = 8


def _decode(image):
  if image.dtype == tf.string:
    image = tf.io.decode_image(image, channels=3, expand_animations=False)
  return tf.image.resize(image, [SIZE, SIZE])


def _train_fn(example, seed):
  return {"image": _decode(example["image"]), "label": example["label"], "id": example["id"],
          "noise": tf.random.stateless_uniform([], seed)}


def _eval_fn(example):
  return {"image": _decode(example["image"]), "label": example["label"], "id": example["id"]}


def _all_ids(dataset):
  ids = []
  for batch in dataset:
    keep = batch["mask"].numpy() > 0
    ids.extend(batch["id"].numpy()[keep].tolist())
  return ids


def _read_ids(source, split, context=None):
  return [e["id"] for e in source.read(split, input_context=context).as_numpy_iterator()]


def _contexts(pipelines):
  return [tf.distribute.InputContext(pipelines, i, pipelines) for i in range(pipelines)]


def _assert_partition(shards, everything):
  assert sum(len(s) for s in shards) == len(everything)
  assert set().union(*map(set, shards)) == set(everything)


def _feature(value):
  if isinstance(value, int):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _jpeg(value, size=12):
  return tf.io.encode_jpeg(tf.fill([size, size, 3], tf.constant(value, tf.uint8))).numpy()


# --- digits ----------------------------------------------------------------------------


def test_digits_loads_offline_with_a_stratified_split():
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  source = datasets.get_source("digits")
  assert (source.name, source.num_classes, source.image_size) == ("digits", 10, 32)
  assert (source.train_split, source.eval_split) == ("train", "test")
  assert (source.num_examples("train"), source.num_examples("test")) == (1437, 360)
  train_ids, train_labels = source.labels_and_ids("train")
  test_ids, _ = source.labels_and_ids("test")
  assert len(set(train_ids) | set(test_ids)) == 1797 and not set(train_ids) & set(test_ids)
  np.testing.assert_array_equal(train_labels, load_digits().target[train_ids.astype(int)])
  stratified = np.abs(np.bincount(train_labels) - 0.8 * np.bincount(load_digits().target))
  assert stratified.max() <= 1
  example = next(iter(source.read("train")))
  assert example["image"].shape == (32, 32, 3) and example["image"].dtype == tf.uint8
  assert example["label"].dtype == tf.int32 and example["id"].dtype == tf.string
  assert 200 <= int(tf.reduce_max(example["image"])) <= 255


# --- CIFAR ----------------------------------------------------------------------------


def _write_cifar(folder, names, per_file, label_bytes=1, label_of=lambda i: i % 10):
  """Writes CIFAR binary files; returns {name: [(labels, image HWC)]} in file order."""
  os.makedirs(folder, exist_ok=True)
  rng = np.random.RandomState(0)
  written, index = {}, 0
  for name in names:
    records, written[name] = [], []
    for _ in range(per_file):
      labels = [label_of(index + k) for k in range(label_bytes)]
      image = rng.randint(0, 256, [3, 32, 32], dtype=np.uint8)
      records.append(np.concatenate([labels, image.ravel()]).astype(np.uint8))
      written[name].append((labels, image.transpose(1, 2, 0)))
      index += 1
    np.stack(records).tofile(os.path.join(folder, name))
  return written


CIFAR10_TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]


def test_cifar10_binary_files(tmp_path):
  written = _write_cifar(str(tmp_path / "cifar-10-batches-bin"),
                         CIFAR10_TRAIN + ["test_batch.bin"], per_file=3)
  source = datasets.get_source("cifar10", str(tmp_path))
  assert (source.name, source.num_classes, source.image_size) == ("cifar10", 10, 32)
  assert (source.num_examples("train"), source.num_examples("test")) == (15, 3)
  expected = [r for name in CIFAR10_TRAIN for r in written[name]]
  examples = list(source.read("train").as_numpy_iterator())
  for index, ((labels, image), example) in enumerate(zip(expected, examples)):
    assert example["label"] == labels[0] and example["id"] == str(index).encode()
    np.testing.assert_array_equal(example["image"], image)
  ids, labels = source.labels_and_ids("train")
  assert list(ids) == [e["id"] for e in examples]
  assert list(labels) == [e["label"] for e in examples]
  assert [e["label"] for e in source.read("test").as_numpy_iterator()] == [
      r[0][0] for r in written["test_batch.bin"]]


def test_cifar100_binary_uses_fine_labels(tmp_path):
  # Coarse label = index % 10, fine label = index % 10 + 1 (the second label byte).
  written = _write_cifar(str(tmp_path), ["train.bin", "test.bin"], per_file=4, label_bytes=2,
                         label_of=lambda i: i % 10)
  source = datasets.get_source("cifar100", str(tmp_path))
  assert source.num_classes == 100
  _, labels = source.labels_and_ids("train")
  assert list(labels) == [r[0][1] for r in written["train.bin"]]
  assert [e["label"] for e in source.read("train").as_numpy_iterator()] == list(labels)


def test_cifar_binary_shards_by_file_then_by_example(tmp_path):
  _write_cifar(str(tmp_path), CIFAR10_TRAIN + ["test_batch.bin"], per_file=3)
  source = datasets.get_source("cifar10", str(tmp_path))
  everything = _read_ids(source, "train")
  for pipelines in (2, 7):  # 5 files: by file, then by example
    _assert_partition([_read_ids(source, "train", c) for c in _contexts(pipelines)], everything)
  first = list(source.read("train", input_context=_contexts(2)[0]).as_numpy_iterator())
  assert [e["id"] for e in first[:4]] == [b"0", b"1", b"2", b"6"]  # files 1, 3, 5
  assert len(first) == 9
  shuffled = [[e["id"] for e in source.read("train", shuffle_files=True, seed=seed)
               .as_numpy_iterator()] for seed in (0, 0, 1)]
  assert sorted(shuffled[0]) == sorted(everything) and shuffled[0] == shuffled[1]
  assert shuffled[0] != everything


def test_cifar_truncated_binary_is_a_user_error(tmp_path):
  _write_cifar(str(tmp_path), CIFAR10_TRAIN + ["test_batch.bin"], per_file=2)
  with open(tmp_path / "test_batch.bin", "ab") as f:
    f.write(b"\x00" * 10)
  with pytest.raises(UserError, match="test_batch.bin are empty or truncated.*3073"):
    datasets.get_source("cifar10", str(tmp_path))


def test_cifar10_through_tfds_mock_data(monkeypatch):
  # mock_data serves records but leaves the builder "unprepared"; prepared is what it mocks.
  monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
  with tfds.testing.mock_data(num_examples=12):
    source = datasets.get_source("cifar10")
    assert isinstance(source, datasets.TFDSSource) and source.num_classes == 10
    example = next(iter(source.read("train")))
    assert example["image"].dtype == tf.string  # stays encoded until the preprocessing
    assert tf.io.decode_image(example["image"]).shape == (32, 32, 3)
    assert example["id"].dtype == tf.string and example["label"].dtype == tf.int32
    ids, labels = source.labels_and_ids("train")
    assert len(ids) == 12 and labels.min() >= 0 and labels.max() < 10
    batches = list(datasets.eval_dataset(source, batch_size=5, preprocess_fn=_eval_fn))
    assert [b["image"].shape[0] for b in batches] == [5, 5, 5]


class TfsslTinyImages(tfds.core.GeneratorBasedBuilder):
  """A real TFDS dataset prepared on disk from generated images (no download)."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(8, 8, 3)),
        "label": tfds.features.ClassLabel(num_classes=3), "id": tfds.features.Text()}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(10, "train"),
            "test": self._generate_examples(4, "test")}

  def _generate_examples(self, count, prefix):
    for i in range(count):
      yield i, {"image": np.full([8, 8, 3], i * 20, np.uint8), "label": i % 3,
                "id": f"{prefix}_{i:05d}"}


def test_prepared_tfds_dataset_reads_and_shards_by_example(tmp_path):
  tfds.builder("tfssl_tiny_images", data_dir=str(tmp_path)).download_and_prepare()
  source = datasets.TFDSSource("tfssl_tiny_images", str(tmp_path), image_size=8)
  assert (source.num_classes, source.num_examples("train"), source.num_examples("test")) == (
      3, 10, 4)
  ids, labels = source.labels_and_ids("train")
  assert sorted(ids) == [f"train_{i:05d}".encode() for i in range(10)]
  for example in source.read("train").as_numpy_iterator():
    index = int(example["id"][-5:])
    assert example["label"] == index % 3
    assert tf.io.decode_image(example["image"]).numpy().max() == index * 20
  # One file for two pipelines: TFDS sub-splits by example.
  _assert_partition([_read_ids(source, "train", c) for c in _contexts(2)], list(ids))
  chosen = datasets.select_labelled_ids("3_per_class", ids, labels, 3)
  assert len(chosen) == 9


def test_unprepared_tfds_says_how_to_prepare(tmp_path):
  with pytest.raises(UserError, match="not prepared.*tfds build cifar100.*train.bin"):
    datasets.get_source("cifar100", str(tmp_path))


class TfsslPhotos(tfds.core.GeneratorBasedBuilder):
  """STL-10's shape under other names: a grayscale `picture`, a `kind` ClassLabel, a train
  and an unlabelled split (label -1), no test split and no id feature."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "picture": tfds.features.Image(shape=(6, 6, 1)),
        "kind": tfds.features.ClassLabel(names=["a", "b"])}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(20, labelled=True),
            "unlabelled": self._generate_examples(8, labelled=False)}

  def _generate_examples(self, count, labelled):
    for i in range(count):
      yield i, {"picture": np.full([6, 6, 1], i * 10, np.uint8),
                "kind": i % 2 if labelled else -1}


def test_any_prepared_tfds_dataset_by_name(tmp_path):
  tfds.builder("tfssl_photos", data_dir=str(tmp_path)).download_and_prepare()
  source = datasets.get_source("tfds:tfssl_photos", str(tmp_path))
  assert (source.name, source.num_classes, source.image_size) == ("tfds:tfssl_photos", 2, 6)
  assert (source.train_split, source.eval_split) == ("train", datasets.HELD_OUT_SPLIT)
  assert (source.num_examples("train"), source.num_examples(datasets.HELD_OUT_SPLIT)) == (18, 2)
  ids, labels = source.labels_and_ids("train")
  held, _ = source.labels_and_ids(datasets.HELD_OUT_SPLIT)
  assert len(set(ids) | set(held)) == 20 and sorted(set(labels)) == [0, 1]
  example = next(source.read("train").as_numpy_iterator())
  assert pp.decode_image(tf.constant(example["image"])).shape == (6, 6, 3)
  _assert_partition([_read_ids(source, "train", c) for c in _contexts(2)], list(ids))
  # STL-10's unlabelled split: the unlabelled stream, and what label-free methods train on.
  # The 2 held-out train examples are not in it: they are what evaluation scores.
  assert source.unlabelled_split == "train+unlabelled"
  assert source.num_examples("train+unlabelled") == 26
  unlabelled_ids, unlabelled_labels = source.labels_and_ids("train+unlabelled")
  assert list(unlabelled_labels).count(datasets.UNLABELLED) == 8
  assert len(set(unlabelled_ids)) == 26 and not set(unlabelled_ids) & set(held)
  batch = next(iter(datasets.two_stream_dataset(
      source, sup_batch_size=4, unsup_batch_size=26, sup_preprocess_fn=_train_fn,
      unsup_preprocess_fn=_train_fn, shuffle_buffer=26)))
  assert datasets.UNLABELLED not in batch["sup"]["label"].numpy()
  assert set(batch["unsup"]["id"].numpy()) == set(unlabelled_ids)
  config = lambda method: tiny_config(method, dataset="tfds:tfssl_photos",
                                      dataset_dir=str(tmp_path))
  label_free = experiment.resolve(config("rotation"))
  assert (label_free.source.train_split, label_free.num_labelled) == ("train+unlabelled", 26)
  assert experiment.resolve(config("supervised")).source.train_split == "train"
  # A dataset with a test split evaluates on it.
  tfds.builder("tfssl_tiny_images", data_dir=str(tmp_path)).download_and_prepare()
  tiny = datasets.get_source("tfds:tfssl_tiny_images", str(tmp_path))
  assert (tiny.eval_split, tiny.unlabelled_split, tiny.image_size) == ("test", "train", 8)


def test_tfds_names_not_prepared_or_unknown(tmp_path):
  with pytest.raises(UserError, match="TFDS dataset 'stl10' is not prepared in .*nothing is "
                     "downloaded.*tfds build stl10 --data_dir=DIR"):
    datasets.get_source("tfds:stl10", str(tmp_path))
  with pytest.raises(UserError, match="Dataset stl11 not found.*TFDS catalog"):
    datasets.get_source("tfds:stl11", str(tmp_path))


class FakeImagenetSubset(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """What `tfds build imagenet2012_subset/1pct` leaves, for two training images (whose bytes
  are no image: only their file names are read)."""
  name = "imagenet2012_subset"
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="1pct", version=tfds.core.Version("5.0.0"))]

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(), "label": tfds.features.ClassLabel(num_classes=1000),
        "file_name": tfds.features.Text()}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for name in ("n01_1.JPEG", "n02_0.JPEG"):
      yield name, {"image": io.BytesIO(b"not an image"), "label": 0, "file_name": name}


def test_imagenet_percent_subsets_from_a_prepared_tfds_imagenet2012_subset(tmp_path):
  builder = FakeImagenetSubset(data_dir=str(tmp_path), config="1pct")
  builder.download_and_prepare()
  names = np.array([b"n01_0.JPEG", b"n01_1.JPEG", b"n02_0.JPEG", b"n02_1.JPEG"])
  choose = lambda: datasets.select_labelled_ids(
      "1pct", names, np.array([0, 0, 1, 1]), 2, dataset_name="imagenet",
      dataset_dir=str(tmp_path))
  cache = os.path.join(builder.data_dir, subsets.SUBSET_FILE_NAMES)
  with open(cache, "w") as f:
    f.write("n01_0.JPEG\n")  # not as many names as the split holds: not trusted
  assert list(choose()) == [b"n01_1.JPEG", b"n02_0.JPEG"]
  # The names are read once: later resolves, here and in other processes, use no record.
  records = tf.io.gfile.glob(os.path.join(builder.data_dir, "*.tfrecord*"))
  assert records
  for record in records:
    os.remove(record)
  assert list(choose()) == [b"n01_1.JPEG", b"n02_0.JPEG"]
  subsets._subset_file_names.clear()  # pylint: disable=protected-access
  assert list(choose()) == [b"n01_1.JPEG", b"n02_0.JPEG"]
  with pytest.raises(UserError, match="10percent.txt.*nor prepared as TFDS "
                     "imagenet2012_subset/10pct"):
    datasets.select_labelled_ids("10pct", names, np.array([0, 0, 1, 1]), 2,
                                 dataset_name="tfds:imagenet2012", dataset_dir=str(tmp_path))


def test_cifar_missing_dir(tmp_path):
  with pytest.raises(UserError, match="does not exist.*CIFAR binary"):
    datasets.get_source("cifar10", str(tmp_path / "nope"))


# --- ImageNet (slim TFRecords) --------------------------------------------------------------


def _write_slim_records(folder, corrupt_index=None, splits=(("train", 4, 5),
                                                             ("validation", 2, 3))):
  os.makedirs(folder, exist_ok=True)
  for split, shards, per_shard in splits:
    for shard in range(shards):
      path = os.path.join(folder, f"{split}-{shard:05d}-of-{shards:05d}")
      with tf.io.TFRecordWriter(path) as writer:
        for k in range(per_shard):
          index = shard * per_shard + k
          encoded = _jpeg(index * 10)
          if split == "train" and index == corrupt_index:
            encoded = encoded[:len(encoded) // 3]  # a truncated JPEG
          feature = {"image/encoded": _feature(encoded),
                     "image/class/label": _feature(index % 3 + 1),
                     "image/filename": _feature(f"n000{index % 3}_{index}.JPEG".encode())}
          writer.write(tf.train.Example(
              features=tf.train.Features(feature=feature)).SerializeToString())


def test_imagenet_slim_records(tmp_path):
  _write_slim_records(str(tmp_path))
  source = datasets.get_source("imagenet", str(tmp_path))
  assert (source.num_classes, source.image_size) == (1000, 224)
  assert (source.train_split, source.eval_split) == ("train", "validation")
  assert (source.num_examples("train"), source.num_examples("validation")) == (20, 6)
  ids, labels = source.labels_and_ids("train")
  assert ids[7] == b"n0001_7.JPEG" and labels[7] == 1  # slim labels are 1-based
  example = list(source.read("train").as_numpy_iterator())[7]
  assert example["id"] == b"n0001_7.JPEG" and example["label"] == 1
  pixels = tf.io.decode_jpeg(example["image"]).numpy()
  assert abs(int(pixels.mean()) - 70) <= 2
  zero_based = datasets.TFRecordSource(str(tmp_path), label_offset=0)
  assert list(zero_based.labels_and_ids("train")[1][:3]) == [1, 2, 3]


def _skip_reports(capfd):
  """The (skipped, so far) counts the pipelines printed to stderr since the last call."""
  pattern = re.escape(SKIPPED_MESSAGE).replace(r"\{\}", r"(\d+)")
  return [tuple(map(int, m)) for m in re.findall(pattern, capfd.readouterr().err)]


def test_corrupt_jpeg_in_tfrecords_is_skipped_and_reported(tmp_path, capfd):
  _write_slim_records(str(tmp_path), corrupt_index=7)
  source = datasets.get_source("imagenet", str(tmp_path))
  capfd.readouterr()
  seen = _all_ids(datasets.eval_dataset(source, split="train", batch_size=8,
                                        preprocess_fn=_eval_fn))
  assert len(seen) == 19 and b"n0001_7.JPEG" not in seen
  assert _skip_reports(capfd) == [(1, 1)]
  train = iter(datasets.train_dataset(source, batch_size=4, preprocess_fn=_train_fn,
                                      shuffle_buffer=4))
  for _ in range(6):  # more than one epoch of 19 good images
    batch = next(train)
    assert batch["image"].shape == (4, SIZE, SIZE, 3)
    assert b"n0001_7.JPEG" not in batch["id"].numpy()
  reports = _skip_reports(capfd)  # once an epoch, with this pipeline's running count
  assert len(reports) >= 1 and reports == [(1, n + 1) for n in range(len(reports))]


def test_tfrecords_shard_by_file_then_by_example(tmp_path):
  _write_slim_records(str(tmp_path))
  source = datasets.get_source("imagenet", str(tmp_path))
  for split, pipelines in (("train", 2), ("train", 4), ("validation", 3)):
    shards = [_read_ids(source, split, c) for c in _contexts(pipelines)]
    _assert_partition(shards, _read_ids(source, split))
  by_file = _read_ids(source, "train", _contexts(2)[0])
  assert by_file[:6] == [f"n000{i % 3}_{i}.JPEG".encode() for i in (0, 1, 2, 3, 4, 10)]


def test_eval_dataset_gives_every_pipeline_the_same_number_of_batches(tmp_path):
  _write_slim_records(str(tmp_path), splits=(("train", 1, 3), ("validation", 2, 7)))
  source = datasets.get_source("imagenet", str(tmp_path))
  shards = [list(datasets.eval_dataset(source, batch_size=2, preprocess_fn=_eval_fn,
                                       input_context=c)) for c in _contexts(3)]
  assert [len(s) for s in shards] == [3, 3, 3]  # 14 examples: 5, 5, 4 per pipeline
  assert all(b["image"].shape[0] == 2 for s in shards for b in s)
  _assert_partition([_all_ids(s) for s in shards], _read_ids(source, "validation"))


def test_imagenet_missing_or_empty_dir(tmp_path):
  with pytest.raises(UserError, match="nope does not exist.*train-00000-of-01024"):
    datasets.get_source("imagenet", str(tmp_path / "nope"))
  with pytest.raises(UserError, match="holds no ImageNet records.*validation-00000-of-00128"):
    datasets.get_source("imagenet", str(tmp_path))
  _write_slim_records(str(tmp_path), splits=(("train", 1, 2),))
  with pytest.raises(UserError, match="no validation-\\*-of-\\* TFRecord files"):
    datasets.get_source("imagenet", str(tmp_path))


# --- image folders ---------------------------------------------------------------------


def _write_folder(root, eval_split="validation", corrupt=True):
  for split, count in (("train", 4), (eval_split, 2)):
    for c, name in enumerate(("dog", "cat")):  # not sorted: classes must come out sorted
      folder = os.path.join(root, split, name)
      os.makedirs(folder)
      for k in range(count):
        image = np.full([10, 14, 3], 40 * c + k, np.uint8)
        encode, ext = (tf.io.encode_png, "png") if k % 2 else (tf.io.encode_jpeg, "jpg")
        with open(os.path.join(folder, f"{k}.{ext}"), "wb") as f:
          f.write(encode(image).numpy())
      with open(os.path.join(folder, "notes.txt"), "w") as f:
        f.write("not an image")
  if corrupt:
    with open(os.path.join(root, "train", "dog", "broken.jpg"), "wb") as f:
      f.write(b"\xff\xd8\xff not really a jpeg")


def test_image_folder(tmp_path):
  _write_folder(str(tmp_path), corrupt=False)
  source = datasets.get_source(f"folder:{tmp_path}")
  assert source.classes == ["cat", "dog"] and source.num_classes == 2
  assert (source.eval_split, source.image_size) == ("validation", 224)
  ids, labels = source.labels_and_ids("train")
  assert list(ids[:2]) == [b"cat/0.jpg", b"cat/1.png"] and list(labels) == [0] * 4 + [1] * 4
  examples = list(source.read("train").as_numpy_iterator())
  for example, (value, png) in zip(examples, [(40, False), (41, True), (42, False)]):
    assert example["image"][:4] == b"\x89PNG" if png else example["image"][:2] == b"\xff\xd8"
    assert abs(int(tf.io.decode_image(example["image"]).numpy().mean()) - value) <= 1
  assert datasets.FolderSource(str(tmp_path), image_size=64).image_size == 64
  context_shards = [_read_ids(source, "train", c) for c in _contexts(3)]
  _assert_partition(context_shards, list(ids))


def test_image_folder_skips_a_corrupt_file_and_evaluates_on_test(tmp_path, capfd):
  _write_folder(str(tmp_path), eval_split="test")
  source = datasets.get_source(f"folder:{tmp_path}")
  assert source.eval_split == "test" and source.num_examples("train") == 9
  capfd.readouterr()
  seen = _all_ids(datasets.eval_dataset(source, split="train", batch_size=4,
                                        preprocess_fn=_eval_fn))
  assert len(seen) == 8 and b"dog/broken.jpg" not in seen
  assert _skip_reports(capfd) == [(1, 1)]
  assert len(_all_ids(datasets.eval_dataset(source, batch_size=3, preprocess_fn=_eval_fn))) == 4


def test_image_folder_errors(tmp_path):
  with pytest.raises(UserError, match="nope does not exist"):
    datasets.get_source(f"folder:{tmp_path / 'nope'}")
  with pytest.raises(UserError, match="has no images: it holds no files.*at any depth"):
    datasets.get_source(f"folder:{tmp_path}")
  (tmp_path / "notes").mkdir()
  for name in ("a.txt", "notes/b.pdf"):
    (tmp_path / name).write_text("not an image")
  with pytest.raises(UserError, match="has no images: none of its 2 files is an image "
                     "\\(jpg/jpeg/png/gif/bmp/webp; e.g. a.txt, notes/b.pdf\\)"):
    datasets.get_source(f"folder:{tmp_path}")
  os.makedirs(tmp_path / "train" / "a")
  os.makedirs(tmp_path / "validation" / "a")
  with pytest.raises(UserError, match="1 class\\(es\\) have no images.*: a"):
    datasets.get_source(f"folder:{tmp_path}")
  (tmp_path / "train" / "a" / "x.png").write_bytes(
      tf.io.encode_png(tf.zeros([2, 2, 3], tf.uint8)).numpy())
  with pytest.raises(UserError, match="validation has no images"):
    datasets.get_source(f"folder:{tmp_path}")


def _splits(source):
  return tuple(set(source.labels_and_ids(split)[0]) for split in ("train", datasets.HELD_OUT_SPLIT))


def test_labelled_folder_without_eval_dir_holds_out_a_stable_share_of_every_class(
    tmp_path, caplog):
  for label in range(2):
    for k in range(10):
      write_image(str(tmp_path / "train" / f"c{label}" / "deeper" / f"{k}.png"),
                  np.full([4, 4, 3], k, np.uint8))
  source = datasets.get_source(f"folder:{tmp_path}")
  assert (source.num_classes, source.eval_split) == (2, datasets.HELD_OUT_SPLIT)
  held, held_labels = source.labels_and_ids(datasets.HELD_OUT_SPLIT)
  train, labels = source.labels_and_ids("train")
  assert len(held) + len(train) == 20 and not set(held) & set(train)
  assert sorted(held_labels) == [0, 1]  # stratified: a class of 10 holds out one
  assert b"c0/deeper/0.png" in set(train) | set(held)  # images at any depth in a class dir
  assert sorted(set(labels)) == [0, 1]
  warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert any(f"holding out {len(held)} of its 20 images (about 10% of every class" in m
             and f"put them in {tmp_path}/validation/<class>/" in m for m in warned), warned
  train_set, held_set = _splits(source)
  assert _splits(datasets.get_source(f"folder:{tmp_path}")) == (train_set, held_set)
  # Adding or losing a file moves no other file between the splits.
  write_image(str(tmp_path / "train" / "c1" / "new.png"), np.zeros([4, 4, 3], np.uint8))
  added_train, added_held = _splits(datasets.get_source(f"folder:{tmp_path}"))
  assert added_train - {b"c1/new.png"} == train_set and added_held - {b"c1/new.png"} == held_set
  for gone in (sorted(train_set)[0], sorted(held_set)[0]):
    os.rename(tmp_path / "train" / gone.decode(), tmp_path / "aside.png")
    assert _splits(datasets.get_source(f"folder:{tmp_path}")) == (
        added_train - {gone}, added_held - {gone})
    os.rename(tmp_path / "aside.png", tmp_path / "train" / gone.decode())


def test_unlabelled_folder_at_any_depth(tmp_path):
  paths = write_digits(str(tmp_path), count=30)
  source = datasets.get_source(f"folder:{tmp_path}")
  assert not source.has_labels and source.num_classes == 0
  assert source.eval_split == datasets.HELD_OUT_SPLIT
  train, labels = source.labels_and_ids("train")
  held, _ = source.labels_and_ids(datasets.HELD_OUT_SPLIT)
  assert len(train) + len(held) == 30 and 1 <= len(held) <= 6
  assert set(labels) == {datasets.UNLABELLED}
  assert sorted(i.decode() for i in set(train) | set(held)) == sorted(
      os.path.relpath(p, tmp_path) for p in paths)
  example = next(source.read("train").as_numpy_iterator())
  assert example["label"] == -1 and example["image"][:4] == b"\x89PNG"
  with pytest.raises(UserError, match="--method=fixmatch needs labelled images, but folder:.* "
                     "has no labels \\(its images are not in class folders .*train/<class>/.*"
                     "folder:PATH, .*csv:FILE .*tfds:NAME"):
    source.check_labelled("--method=fixmatch")


def test_unlabelled_train_dir_evaluates_on_its_validation_dir(tmp_path):
  for split, count in (("train", 4), ("validation", 2)):
    for k in range(count):
      write_image(str(tmp_path / split / f"{k}.jpg"), np.full([4, 4, 3], k, np.uint8), "jpeg")
  source = datasets.get_source(f"folder:{tmp_path}")
  assert (source.num_classes, source.eval_split) == (0, "validation")
  assert (source.num_examples("train"), source.num_examples("validation")) == (4, 2)


def test_images_as_they_come_decode_and_a_broken_one_is_counted(tmp_path, capfd):
  y, x = np.mgrid[0:24, 0:36]  # smooth colours, which JPEG keeps
  pixels = np.stack([x * 7, y * 10, np.full_like(x, 128)], -1).astype(np.uint8)
  for kind, ext in IMAGE_KINDS.items():
    write_image(str(tmp_path / "shots" / f"{kind}{ext}"), pixels, kind)
  (tmp_path / "shots" / "broken.png").write_bytes(b"\x89PNG not really")
  source = datasets.get_source(f"folder:{tmp_path}")
  everything = sorted(source.labels_and_ids("train")[0].tolist()
                      + source.labels_and_ids(datasets.HELD_OUT_SPLIT)[0].tolist())
  assert len(everything) == len(IMAGE_KINDS) + 1
  capfd.readouterr()
  crops = lambda e: {"image": pp.inception_crop(e["image"], tf.constant([1, 2], tf.int64), 8),
                     "eval": pp.eval_crop(e["image"], 8), "id": e["id"], "label": e["label"]}
  seen = {}
  for split in ("train", datasets.HELD_OUT_SPLIT):
    for batch in datasets.eval_dataset(source, split=split, batch_size=4, preprocess_fn=crops):
      for image_id, image, keep in zip(batch["id"].numpy(), batch["eval"].numpy(),
                                       batch["mask"].numpy()):
        if keep:
          seen[image_id.decode()] = image
  assert sorted(seen) == [i.decode() for i in everything if b"broken" not in i]
  assert sum(n for n, _ in _skip_reports(capfd)) == 1
  for name, image in seen.items():
    assert image.shape == (8, 8, 3) and 0.2 < image.mean() < 0.8, name
    if "gray" not in name and "palette" not in name and "gif" not in name:  # colour kept
      expected = pp.eval_crop(tf.constant(pixels), 8).numpy()
      assert np.abs(image - expected).mean() < 0.1, name


LABEL_FREE = {"rotation", "exemplar", "jigsaw", "relative_patch_location", "simclr", "fnc",
              "swav", "dino"}


def test_which_methods_learn_without_labels():
  free = {name for name in methods.METHODS.names()
          if not methods.get_method(name).uses_labels(tiny_config(name))}
  assert free == LABEL_FREE
  assert methods.get_method("simclr").uses_labels(tiny_config("simclr", "train_mode=finetune"))


# What makes each label-free method's input small enough for 16 px images and quick to make.
CHEAP_INPUT = {"jigsaw": ["patch_size=5", "patch_jitter=1"],
               "relative_patch_location": ["patch_size=5", "patch_jitter=1"],
               "fnc": ["support_size=1"]}


def test_data_without_labels_trains_label_free_methods_and_refuses_the_others(tmp_path):
  """Every label-free method resolves on unlabelled photos and its input pipeline makes a
  batch from them (training one: test_simclr_trains_on_unlabelled_photos_...)."""
  photos = f"folder:{tmp_path}"
  write_digits(str(tmp_path), count=40)
  for method_name in sorted(LABEL_FREE):
    exp = experiment.resolve(tiny_config(method_name, "batch_size=8",
                                         *CHEAP_INPUT.get(method_name, []), dataset=photos))
    held = exp.source.num_examples(datasets.HELD_OUT_SPLIT)
    assert (exp.num_classes, exp.num_labelled) == (0, 40 - held), method_name
    method = exp.new_method()
    batch = next(iter(trainer.make_train_dataset_fn(exp, method)(tf.distribute.InputContext())))
    sizes = {tuple(value.shape)[:1] for value in tf.nest.flatten(batch)}
    assert sizes == {(8,)}, method_name
    assert set(batch.get("label", tf.constant([datasets.UNLABELLED])).numpy()) == {
        datasets.UNLABELLED}, method_name
  exp = experiment.resolve(tiny_config("simclr", dataset=photos))
  assert exp.steps_per_epoch == 1
  method = exp.new_method()
  method.build()
  assert method.head is None and "head" not in method.trackables()
  assert "logits" not in method.representations(tf.zeros([2, 16, 16, 3]))
  for method_name, extra, who in (("s4l_rotation", [], "--method=s4l_rotation"),
                                  ("supervised", [], "--method=supervised"),
                                  ("rotation", ["labels=10pct"], "--labels=10pct")):
    with pytest.raises(UserError, match=f"{who} needs labelled images, but {photos} has no "
                       "labels.*Give labels with an image folder"):
      experiment.resolve(tiny_config(method_name, *extra, dataset=photos))
  with pytest.raises(UserError, match="Scoring a module .* needs labelled images, but "
                     f"{photos} has no labels"):
    eval_hub.Task(str(tmp_path / "module"), photos, None, eval_hub.default_config())


def test_simclr_trains_on_unlabelled_photos_and_eval_hub_scores_it_on_labelled_ones(tmp_path):
  """The issue's "done": a folder of unlabelled images at any depth, SimCLR on it, then the
  module scored on a labelled source (a CSV of other labelled images)."""
  write_digits(str(tmp_path / "photos"), count=64)
  workdir = str(tmp_path / "run")
  run = trainer.train(tiny_config("simclr", "train_steps=2", "sync_bn=false",
                                  dataset=f"folder:{tmp_path / 'photos'}"), workdir)
  assert run.step == 2 and all(np.isfinite(m["loss"]) for _, m in run.history)
  rows = [(os.path.relpath(path, tmp_path), os.path.basename(os.path.dirname(path)),
           "test" if index % 4 == 0 else "train")  # labelled/train/<digit>/<n>.png
          for index, path in enumerate(write_digits(str(tmp_path / "labelled"), count=40,
                                                    labelled=True))]
  labelled = _write_csv(tmp_path / "labelled.csv", "path,label,split", rows)
  config = eval_hub.default_config()
  config.knn_k = 3
  result = eval_hub.evaluate(os.path.join(workdir, "export", "hub"), "knn",
                             str(tmp_path / "eval"), dataset=labelled, config=config)
  assert result["dataset"] == labelled and result["num_examples"] == 10
  assert 0.0 <= result["top1"] <= 1.0


# --- CSV file lists ------------------------------------------------------------------


def _write_csv(path, header, rows):
  path.write_text("\n".join([header] + [",".join(map(str, row)) for row in rows]) + "\n")
  return f"csv:{path}"


def test_csv_file_list_with_names_splits_and_paths(tmp_path):
  rows = []
  for k in range(6):
    name = write_image(str(tmp_path / "imgs" / f"{k}.png"), np.full([4, 4, 3], k, np.uint8))
    path = name if k == 0 else os.path.relpath(name, tmp_path)  # absolute and relative
    rows.append((path, ["zebra", "ant"][k % 2], "validation" if k >= 4 else "train"))
  source = datasets.get_source(_write_csv(tmp_path / "list.csv", "path,label,split", rows))
  assert source.classes == ["ant", "zebra"] and source.num_classes == 2
  assert (source.eval_split, source.num_examples("train"), source.num_examples("validation")) \
      == ("validation", 4, 2)
  ids, labels = source.labels_and_ids("train")
  assert ids[1] == b"imgs/1.png" and list(labels) == [1, 0, 1, 0]
  example = list(source.read("train").as_numpy_iterator())[3]
  assert example["label"] == 0 and tf.io.decode_png(example["image"]).numpy().max() == 3
  # Integer labels, no split column: a held-out share; no label column: unlabelled.
  ints = datasets.get_source(_write_csv(tmp_path / "ints.csv", "label,path",
                                        [(k % 3, r[0]) for k, r in enumerate(rows)]))
  assert ints.num_classes == 3 and ints.eval_split == datasets.HELD_OUT_SPLIT
  assert ints.num_examples("train") + ints.num_examples(datasets.HELD_OUT_SPLIT) == 6
  bare = datasets.get_source(_write_csv(tmp_path / "bare.csv", "path", [r[:1] for r in rows]))
  assert not bare.has_labels
  with pytest.raises(UserError, match="needs labelled images.*no 'label' column"):
    bare.check_labelled("Scoring a module")


def test_csv_missing_files_are_counted_and_refused_past_the_threshold(tmp_path, caplog):
  rows = [(os.path.relpath(write_image(str(tmp_path / f"{k}.png"), np.zeros([2, 2, 3], np.uint8)),
                           tmp_path),) for k in range(100)]
  (tmp_path / "empty.png").write_bytes(b"")
  many = rows + [("gone/a.png",), ("b.png",), ("empty.png",)]
  with pytest.raises(UserError, match="3 of the 103 files .*many.csv lists are missing or "
                     "unreadable \\(e.g. gone/a.png, b.png, empty.png\\), more than the 1%"):
    datasets.get_source(_write_csv(tmp_path / "many.csv", "path", many))
  source = datasets.get_source(_write_csv(tmp_path / "few.csv", "path", rows + [("b.png",)]))
  assert source.num_examples("train") + source.num_examples(datasets.HELD_OUT_SPLIT) == 100
  assert "1 of the 101 files" in caplog.text and "b.png" in caplog.text


def test_csv_classes_come_from_every_row_and_its_held_out_rows_from_their_paths(tmp_path,
                                                                                caplog):
  """A host missing a whole class's files numbers the classes as the others do, and losing
  a file moves no other file between training and held-out."""
  rows = [(f"{name}/{k}.png", name) for name in ("ant", "cat") for k in range(60)]
  rows.insert(60, ("bee/0.png", "bee"))
  for path, _ in rows:
    write_image(str(tmp_path / path), np.zeros([2, 2, 3], np.uint8))
  csv_name = _write_csv(tmp_path / "list.csv", "path,label", rows)
  everything = datasets.get_source(csv_name)
  assert everything.eval_split == datasets.HELD_OUT_SPLIT
  train_set, held_set = _splits(everything)
  assert _splits(datasets.get_source(csv_name)) == (train_set, held_set)
  held_labels = everything.labels_and_ids(datasets.HELD_OUT_SPLIT)[1]
  assert set(held_labels) == {0, 2}  # every class of 10 or more rows is held out from
  assert 6 <= len(held_set) <= 18  # about 10% of 121
  for gone in (b"bee/0.png", sorted(train_set - {b"bee/0.png"})[0], sorted(held_set)[0]):
    os.rename(tmp_path / gone.decode(), tmp_path / "aside.png")
    source = datasets.get_source(csv_name)
    os.rename(tmp_path / "aside.png", tmp_path / gone.decode())
    assert f"1 of the 121 files {tmp_path / 'list.csv'} lists are missing" in caplog.text
    assert (source.classes, source.num_classes) == (["ant", "bee", "cat"], 3)
    ids, labels = source.labels_and_ids("train")
    assert {label for i, label in zip(ids, labels) if i.startswith(b"cat/")} == {2}
    assert _splits(source) == (train_set - {gone}, held_set - {gone})


def test_which_eval_split_and_which_classes_are_used_is_logged(tmp_path, caplog):
  rows = [(f"{k}.png", k % 2, ["train", "validation", "test"][k % 3]) for k in range(6)]
  for path, _, _ in rows:
    write_image(str(tmp_path / path), np.zeros([2, 2, 3], np.uint8))
  caplog.set_level("INFO", logger="absl")
  both = datasets.get_source(_write_csv(tmp_path / "both.csv", "path,label,split", rows))
  assert both.eval_split == "validation" and "test" not in both.splits()
  assert "has both a validation and a test split in its rows: evaluating on validation; " \
      "test is not used" in caplog.text
  # Photos in one subfolder of train/ are one class: said, with how to read them unlabelled.
  write_image(str(tmp_path / "photos" / "train" / "holiday" / "a.png"),
              np.zeros([2, 2, 3], np.uint8))
  write_image(str(tmp_path / "photos" / "train" / "holiday" / "b.png"),
              np.zeros([2, 2, 3], np.uint8))
  caplog.clear()
  assert datasets.get_source(f"folder:{tmp_path / 'photos'}").classes == ["holiday"]
  train_dir = tmp_path / "photos" / "train"
  assert [r.levelname for r in caplog.records if "is labelled" in r.getMessage()] == [
      "WARNING"]
  assert f"its 1 class(es) are the folders of {train_dir} (holiday). To read every image " \
      f"under it as unlabelled instead, pass --dataset=folder:{train_dir}." in caplog.text
  assert not datasets.get_source(f"folder:{train_dir}").has_labels


@pytest.mark.parametrize("text,message", [
    ("file,label\na.png,1\n", "no 'path' column \\(its header: file,label\\)"),
    ("path,label\n", "lists no images"),
    ("path,label\na.png,cat\nb.png,\n", "row 3 has an empty label"),
    ("path,split\na.png,dev\n", "split\\(s\\) dev"),
    ("path\na.png\na.png\n", "lists 1 file\\(s\\) more than once"),
])
def test_csv_errors(tmp_path, text, message):
  for name in ("a.png", "b.png"):
    write_image(str(tmp_path / name), np.zeros([2, 2, 3], np.uint8))
  (tmp_path / "list.csv").write_text(text)
  with pytest.raises(UserError, match=message):
    datasets.get_source(f"csv:{tmp_path / 'list.csv'}")


def test_csv_that_does_not_exist(tmp_path):
  with pytest.raises(UserError, match="no.csv does not exist.*path\\[,label\\]\\[,split\\]"):
    datasets.get_source(f"csv:{tmp_path / 'no.csv'}")


def test_unknown_dataset():
  with pytest.raises(UserError, match="Unknown dataset 'svhn'.*cifar10.*digits.*imagenet"
                     ".*folder:PATH.*csv:FILE.*tfds:NAME"):
    datasets.get_source("svhn")
  assert datasets.DATASETS.names() == ["cifar10", "cifar100", "digits", "imagenet"]


# --- pipelines ----------------------------------------------------------------------


def test_eval_dataset_pads_and_masks():
  source = datasets.get_source("digits")
  batches = list(datasets.eval_dataset(source, batch_size=100, preprocess_fn=_eval_fn))
  assert len(batches) == 4 and all(b["image"].shape[0] == 100 for b in batches)
  np.testing.assert_array_equal(batches[-1]["mask"], [1.0] * 60 + [0.0] * 40)
  ids = _all_ids(batches)
  assert ids == list(source.labels_and_ids("test")[0])  # in order, each once


def test_train_dataset_is_reproducible_and_filters_ids():
  source = datasets.get_source("digits")
  keep = source.labels_and_ids("train")[0][:50]
  make = lambda seed: datasets.train_dataset(source, batch_size=16, preprocess_fn=_train_fn,
                                             keep_ids=keep, seed=seed, shuffle_buffer=64)
  first, again, other = (next(iter(make(s))) for s in (0, 0, 1))
  assert first["image"].shape == (16, SIZE, SIZE, 3)
  np.testing.assert_array_equal(first["id"], again["id"])
  np.testing.assert_array_equal(first["noise"], again["noise"])
  assert len(set(first["noise"].numpy())) == 16  # every example has its own seed
  assert not np.array_equal(first["id"], other["id"])
  assert set(first["id"].numpy()) <= set(keep)
  many = [b for _, b in zip(range(10), make(0))]  # 160 > 50: repeats, with new seeds
  assert {i for b in many for i in b["id"].numpy()} == set(keep)
  assert len({float(n) for b in many for n in b["noise"].numpy()}) == 160


def test_train_dataset_pipelines_read_disjoint_shards():
  source = datasets.get_source("digits")
  shards = [{i for _, b in zip(range(5), datasets.train_dataset(
      source, batch_size=32, preprocess_fn=_train_fn, input_context=c, shuffle_buffer=1000))
             for i in b["id"].numpy()} for c in _contexts(2)]
  assert not shards[0] & shards[1]
  assert len(shards[0]) > 100 and len(shards[1]) > 100


def test_two_streams_have_their_own_batch_sizes():
  source = datasets.get_source("digits")
  ids, _ = source.labels_and_ids("train")
  batch = next(iter(datasets.two_stream_dataset(
      source, sup_batch_size=4, unsup_batch_size=12, sup_preprocess_fn=_train_fn,
      unsup_preprocess_fn=_train_fn, sup_ids=ids[:20], shuffle_buffer=32)))
  assert set(batch) == {"sup", "unsup"}
  assert batch["sup"]["image"].shape[0] == 4 and batch["unsup"]["image"].shape[0] == 12
  assert set(batch["sup"]["id"].numpy()) <= set(ids[:20])


PYTHON_CALLBACK_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc", "GeneratorDataset"}


def _graph_ops(dataset):
  """Every op of the dataset's graph, its functions' (map, scan, flat_map...) included."""
  graph = tf.compat.v1.GraphDef()
  graph.ParseFromString(dataset._as_serialized_graph().numpy())  # pylint: disable=protected-access
  ops = {node.op for node in graph.node}
  for function in graph.library.function:
    ops |= {node.op for node in function.node_def}
  return ops


def test_pipelines_hold_no_python_callbacks():
  """A remote TPU host's worker cannot run PyFunc (numpy_function, py_function,
  from_generator): every pipeline must be graph ops only."""
  python = tf.data.Dataset.range(2).map(lambda x: tf.numpy_function(np.negative, [x], tf.int64))
  assert "PyFunc" in _graph_ops(python)  # the check sees inside functions
  source = datasets.get_source("digits")
  ids, labels = source.labels_and_ids("train")
  keep = datasets.select_labelled_ids("5_per_class", ids, labels, 10, seed=0)
  context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                       num_replicas_in_sync=2)
  pipelines = {  # eval_dataset skips corrupt images through the same code as train_dataset
      "train": datasets.train_dataset(source, batch_size=4, preprocess_fn=_train_fn,
                                      input_context=context),
      "support": datasets.support_dataset(
          source, keep_ids=keep, classes_per_step=4, images_per_class=2,
          preprocess_fn=_train_fn, input_context=context)}
  for name, dataset in pipelines.items():
    assert not _graph_ops(dataset) & PYTHON_CALLBACK_OPS, name


def test_steps_per_epoch():
  assert datasets.steps_per_epoch(50_000, 512) == 97
  assert datasets.steps_per_epoch(10, 512) == 1


# --- label subsets ----------------------------------------------------------------------

IDS = np.array([f"img{i}".encode() for i in range(1000)])
LABELS = np.arange(1000) % 10


@pytest.mark.parametrize("spec,size", [("10pct", 100), ("1pct", 10), ("250", 250),
                                       ("7_per_class", 70), ("all", 1000)])
def test_subsets_are_deterministic_balanced_and_sized(spec, size):
  chosen = datasets.select_labelled_ids(spec, IDS, LABELS, 10, seed=0)
  assert len(chosen) == size and len(set(chosen)) == size and set(chosen) <= set(IDS)
  np.testing.assert_array_equal(chosen, datasets.select_labelled_ids(spec, IDS, LABELS, 10, seed=0))
  counts = np.bincount(LABELS[np.isin(IDS, chosen)], minlength=10)
  assert counts.max() - counts.min() <= (0 if spec.endswith("per_class") else 1)
  if spec != "all":
    assert not np.array_equal(chosen, datasets.select_labelled_ids(spec, IDS, LABELS, 10, seed=1))
    complement = np.setdiff1d(IDS, chosen)
    assert len(complement) == 1000 - size and not set(complement) & set(chosen)


def test_balanced_subset_with_unequal_classes():
  labels = np.array([0] * 500 + [1] * 30 + [2] * 470)
  ids = np.arange(1000).astype(str)
  chosen = datasets.select_labelled_ids("61", ids, labels, 3, seed=3)
  assert sorted(np.bincount(labels[chosen.astype(int)])) == [20, 20, 21]
  with pytest.raises(UserError, match="Class 1 has only 30 .* needs 3[34] .*at most 90"):
    datasets.select_labelled_ids("100", ids, labels, 3)


def test_subset_from_files(tmp_path):
  path = tmp_path / "ids.txt"
  path.write_text("img3\nimg5\n\nimg3\n")  # blank lines and repeats are tolerated
  chosen = datasets.select_labelled_ids(f"file:{path}", IDS, LABELS, 10)
  assert list(chosen) == [b"img3", b"img5"]
  s4l = tmp_path / "label_map_count_2_index_0"
  s4l.write_text('{"values": ["img7", "img1"]}')
  assert list(datasets.select_labelled_ids(f"file:{s4l}", IDS, LABELS, 10)) == [b"img1", b"img7"]
  # Index lists (SUNCET's CIFAR-10 splits) against TFDS ids, file names against paths.
  (tmp_path / "indices.txt").write_text("2\n0\n")
  tfds_ids = np.array([b"train_00000", b"train_00001", b"train_00002"])
  assert list(datasets.select_labelled_ids(f"file:{tmp_path / 'indices.txt'}", tfds_ids,
                                           np.zeros(3), 1)) == [b"train_00000", b"train_00002"]
  (tmp_path / "names.txt").write_text("n01_1.JPEG\n")
  paths = np.array([b"n01/n01_0.JPEG", b"n01/n01_1.JPEG"])
  assert list(datasets.select_labelled_ids(f"file:{tmp_path / 'names.txt'}", paths,
                                           np.zeros(2), 1)) == [b"n01/n01_1.JPEG"]


@pytest.mark.parametrize("where", ["", "imagenet_subsets", "downloads"])
def test_imagenet_percent_subsets_are_the_standard_lists(tmp_path, where):
  name = {"": "1percent.txt", "imagenet_subsets": "1percent.txt",
          # Where `tfds build imagenet2012_subset` leaves 1percent.txt.
          "downloads": ("raw.gith.com_goog-rese_simc_mast_imag_subs"
                        "cegqSLp4JSaDrjNMTQGevVxuhVuVmcE4n76D65VJzxc.txt")}[where]
  os.makedirs(tmp_path / where, exist_ok=True)
  (tmp_path / where / name).write_text("n01_1.JPEG\nn02_0.JPEG\n")
  names = np.array([b"n01_0.JPEG", b"n01_1.JPEG", b"n02_0.JPEG", b"n02_1.JPEG"])
  for dataset_name in ("imagenet", "imagenet2012"):
    chosen = datasets.select_labelled_ids("1pct", names, np.array([0, 0, 1, 1]), 2, seed=5,
                                          dataset_name=dataset_name, dataset_dir=str(tmp_path))
    assert list(chosen) == [b"n01_1.JPEG", b"n02_0.JPEG"]


@pytest.mark.parametrize("spec,message", [
    ("5000", "5000 labelled examples but the training split has only 1000"),
    ("101_per_class", "101 labelled examples per class.*only 100.*at most 100 per class"),
    ("0_per_class", "at least 1"),
    ("5", "5 labelled examples cannot cover 10 classes"),
    ("ten", "Cannot read --labels=ten.*N_per_class"),
    ("5pct", "Cannot read --labels=5pct"),
    ("file:/no/such/file.txt", "/no/such/file.txt does not exist"),
])
def test_subset_errors(spec, message):
  with pytest.raises(UserError, match=message):
    datasets.select_labelled_ids(spec, IDS, LABELS, 10)


def test_subset_errors_for_unknown_ids_empty_class_and_missing_imagenet_list(tmp_path):
  path = tmp_path / "ids.txt"
  path.write_text("img3\nnot_there\nnor_this\n")
  with pytest.raises(UserError, match="2 of the 3 ids .* \\(e.g. not_there, nor_this;"):
    datasets.select_labelled_ids(f"file:{path}", IDS, LABELS, 10)
  (tmp_path / "empty.txt").write_text("\n")
  with pytest.raises(UserError, match="lists no ids"):
    datasets.select_labelled_ids(f"file:{tmp_path / 'empty.txt'}", IDS, LABELS, 10)
  labels = np.where(LABELS == 9, 0, LABELS)  # class 9 has no examples
  for spec in ("100", "2_per_class"):
    with pytest.raises(UserError, match="Class 9 has only 0"):
      datasets.select_labelled_ids(spec, IDS, labels, 10)
  with pytest.raises(UserError, match="1percent.txt.*imagenet2012_subset/1pct.*"
                     "google-research/simclr.*--labels=file:PATH"):
    datasets.select_labelled_ids("1pct", IDS, LABELS, 10, dataset_name="imagenet",
                                 dataset_dir=str(tmp_path))
