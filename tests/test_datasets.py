import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tfssl import datasets
from tfssl import preprocess as pp
from tfssl.errors import UserError


def _jpeg(value, size=12):
  return tf.io.encode_jpeg(tf.fill([size, size, 3], tf.constant(value, tf.uint8))).numpy()


def _train_fn(example, seed):
  return {"image": pp.inception_crop(example["image"], seed, 8), "label": example["label"],
          "id": example["id"]}


def _eval_fn(example):
  return {"image": pp.eval_crop(example["image"], 8), "label": example["label"],
          "id": example["id"]}


def _all_ids(dataset):
  ids = []
  for batch in dataset:
    keep = batch["mask"].numpy() > 0
    ids.extend(batch["id"].numpy()[keep].tolist())
  return ids


# --- sources --------------------------------------------------------------------


def test_digits_offline_split():
  source = datasets.get_source("digits")
  assert (source.num_examples("train"), source.num_examples("test")) == (1437, 360)
  example = next(iter(source.read("train")))
  assert example["image"].shape == (32, 32, 3) and example["image"].dtype == tf.uint8
  ids, labels = source.labels_and_ids("train")
  assert len(set(ids)) == 1437 and set(labels) == set(range(10))


def _write_cifar10(folder, per_file=4):
  os.makedirs(folder)
  rng = np.random.RandomState(0)
  expected = []
  for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
    records = []
    for k in range(per_file):
      label = (len(expected) + k) % 10
      image = rng.randint(0, 256, [3, 32, 32], dtype=np.uint8)
      records.append(np.concatenate([[label], image.ravel()]).astype(np.uint8))
      if name != "test_batch.bin":
        expected.append((label, image.transpose(1, 2, 0)))
    np.stack(records).tofile(os.path.join(folder, name))
  return expected


def test_cifar10_binary_files(tmp_path):
  expected = _write_cifar10(str(tmp_path / "cifar-10-batches-bin"))
  source = datasets.get_source("cifar10", str(tmp_path))
  assert source.num_classes == 10 and source.num_examples("train") == 20
  examples = list(source.read("train"))
  for (label, image), example in zip(expected, examples):
    assert int(example["label"]) == label
    np.testing.assert_array_equal(example["image"], image)


def test_cifar10_through_tfds_mock_data(monkeypatch):
  # mock_data serves records but leaves the builder "unprepared"; prepared is what it mocks.
  monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
  with tfds.testing.mock_data(num_examples=12):
    source = datasets.get_source("cifar10")
    example = next(iter(source.read("train")))
    assert example["image"].dtype == tf.string  # decoded by the preprocessing
    assert pp.decode_image(example["image"]).shape == (32, 32, 3)
    assert len(source.labels_and_ids("train")[0]) == 12


def test_unprepared_tfds_says_how_to_prepare(tmp_path):
  with pytest.raises(UserError, match="not prepared.*tfds build cifar100"):
    datasets.get_source("cifar100", str(tmp_path))


def _write_slim_records(folder, corrupt_index=None):
  os.makedirs(folder, exist_ok=True)
  for split, shards, per_shard in (("train", 4, 5), ("validation", 2, 3)):
    for shard in range(shards):
      path = os.path.join(folder, f"{split}-{shard:05d}-of-{shards:05d}")
      with tf.io.TFRecordWriter(path) as writer:
        for k in range(per_shard):
          index = shard * per_shard + k
          encoded = _jpeg(index * 10)
          if split == "train" and index == corrupt_index:
            encoded = encoded[:len(encoded) // 3]
          feature = {
              "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
              "image/class/label": tf.train.Feature(
                  int64_list=tf.train.Int64List(value=[index % 3 + 1])),
              "image/filename": tf.train.Feature(bytes_list=tf.train.BytesList(
                  value=[f"n000{index % 3}_{index}.JPEG".encode()])),
          }
          writer.write(tf.train.Example(
              features=tf.train.Features(feature=feature)).SerializeToString())


def test_imagenet_slim_records_skip_a_corrupt_jpeg(tmp_path):
  _write_slim_records(str(tmp_path), corrupt_index=7)
  source = datasets.get_source("imagenet", str(tmp_path))
  ids, labels = source.labels_and_ids("train")
  assert len(ids) == 20 and set(labels) == {0, 1, 2}  # slim labels are 1-based
  assert ids[0] == b"n0000_0.JPEG"
  before = datasets.skipped_corrupt_images()
  dataset = datasets.eval_dataset(source, split="train", batch_size=8, preprocess_fn=_eval_fn)
  seen = _all_ids(dataset)
  assert len(seen) == 19 and b"n0001_7.JPEG" not in seen
  assert datasets.skipped_corrupt_images() == before + 1
  train = datasets.train_dataset(source, batch_size=4, preprocess_fn=_train_fn, shuffle_buffer=4)
  assert next(iter(train))["image"].shape == (4, 8, 8, 3)


def test_input_context_shards_are_disjoint_and_complete(tmp_path):
  _write_slim_records(str(tmp_path))
  source = datasets.get_source("imagenet", str(tmp_path))
  for split, pipelines in (("train", 2), ("validation", 3)):  # by file, then by example
    shards = [set(_all_ids(datasets.eval_dataset(
        source, split=split, batch_size=4, preprocess_fn=_eval_fn,
        input_context=tf.distribute.InputContext(pipelines, i, pipelines))))
              for i in range(pipelines)]
    assert sum(len(s) for s in shards) == source.num_examples(split)
    assert len(set.union(*shards)) == source.num_examples(split)


def test_imagenet_missing_or_empty_dir(tmp_path):
  with pytest.raises(UserError, match="does not exist"):
    datasets.get_source("imagenet", str(tmp_path / "nope"))
  with pytest.raises(UserError, match="holds no ImageNet records"):
    datasets.get_source("imagenet", str(tmp_path))


def _write_folder(root, corrupt=True):
  for split, count in (("train", 4), ("validation", 2)):
    for c, name in enumerate(("cat", "dog")):
      folder = os.path.join(root, split, name)
      os.makedirs(folder)
      for k in range(count):
        image = np.full([10, 14, 3], 40 * c + k, np.uint8)
        encode = tf.io.encode_png if k % 2 else tf.io.encode_jpeg
        ext = "png" if k % 2 else "jpg"
        with open(os.path.join(folder, f"{k}.{ext}"), "wb") as f:
          f.write(encode(image).numpy())
  if corrupt:
    with open(os.path.join(root, "train", "dog", "broken.jpg"), "wb") as f:
      f.write(b"\xff\xd8\xff not really a jpeg")


def test_image_folder_with_a_corrupt_file(tmp_path):
  _write_folder(str(tmp_path))
  source = datasets.get_source(f"folder:{tmp_path}")
  assert source.num_classes == 2 and source.eval_split == "validation"
  assert source.num_examples("train") == 9
  seen = _all_ids(datasets.eval_dataset(source, split="train", batch_size=4,
                                        preprocess_fn=_eval_fn))
  assert len(seen) == 8 and b"dog/broken.jpg" not in seen
  assert len(_all_ids(datasets.eval_dataset(source, batch_size=3, preprocess_fn=_eval_fn))) == 4


def test_image_folder_errors(tmp_path):
  with pytest.raises(UserError, match="no train/ dir"):
    datasets.get_source(f"folder:{tmp_path}")
  os.makedirs(tmp_path / "train" / "a")
  os.makedirs(tmp_path / "validation" / "a")
  with pytest.raises(UserError, match="no images"):
    datasets.get_source(f"folder:{tmp_path}")


def test_unknown_dataset():
  with pytest.raises(UserError, match="Unknown dataset 'svhn'.*cifar10.*folder:PATH"):
    datasets.get_source("svhn")


# --- pipelines ------------------------------------------------------------------


def test_eval_dataset_pads_and_masks():
  source = datasets.get_source("digits")
  batches = list(datasets.eval_dataset(source, batch_size=100, preprocess_fn=_eval_fn))
  assert all(b["image"].shape[0] == 100 for b in batches)
  assert float(sum(tf.reduce_sum(b["mask"]) for b in batches)) == 360
  assert len(set(_all_ids(batches))) == 360


def test_train_dataset_is_reproducible_and_filters_ids():
  source = datasets.get_source("digits")
  keep = source.labels_and_ids("train")[0][:50]
  make = lambda seed: datasets.train_dataset(source, batch_size=16, preprocess_fn=_train_fn,
                                             keep_ids=keep, seed=seed, shuffle_buffer=64)
  first, again, other = (next(iter(make(s))) for s in (0, 0, 1))
  np.testing.assert_array_equal(first["id"], again["id"])
  np.testing.assert_allclose(first["image"], again["image"])
  assert not np.array_equal(first["id"], other["id"])
  assert set(first["id"].numpy()) <= set(keep)


def test_two_streams_have_their_own_batch_sizes():
  source = datasets.get_source("digits")
  ids, _ = source.labels_and_ids("train")
  batch = next(iter(datasets.two_stream_dataset(
      source, sup_batch_size=4, unsup_batch_size=12, sup_preprocess_fn=_train_fn,
      unsup_preprocess_fn=_train_fn, sup_ids=ids[:20], shuffle_buffer=32)))
  assert batch["sup"]["image"].shape[0] == 4 and batch["unsup"]["image"].shape[0] == 12
  assert set(batch["sup"]["id"].numpy()) <= set(ids[:20])


# --- label subsets ---------------------------------------------------------------

IDS = np.array([f"img{i}".encode() for i in range(1000)])
LABELS = np.arange(1000) % 10


@pytest.mark.parametrize("spec,size", [("10pct", 100), ("1pct", 10), ("250", 250),
                                       ("7_per_class", 70), ("all", 1000)])
def test_subsets_are_deterministic_balanced_and_sized(spec, size):
  chosen = datasets.select_labelled_ids(spec, IDS, LABELS, 10, seed=0)
  assert len(chosen) == size and len(set(chosen)) == size
  np.testing.assert_array_equal(chosen, datasets.select_labelled_ids(spec, IDS, LABELS, 10, seed=0))
  counts = np.bincount(LABELS[np.isin(IDS, chosen)], minlength=10)
  assert counts.max() - counts.min() <= 1
  if spec != "all":
    assert not np.array_equal(chosen, datasets.select_labelled_ids(spec, IDS, LABELS, 10, seed=1))
    complement = np.setdiff1d(IDS, chosen)
    assert len(complement) == 1000 - size and not set(complement) & set(chosen)


def test_subset_from_file_and_imagenet_style_names(tmp_path):
  path = tmp_path / "ids.txt"
  path.write_text("img3\nimg5\n")
  chosen = datasets.select_labelled_ids(f"file:{path}", IDS, LABELS, 10)
  assert sorted(chosen) == [b"img3", b"img5"]
  (tmp_path / "1percent.txt").write_text("n01_1.JPEG\n")
  names = np.array([b"n01_0.JPEG", b"n01_1.JPEG"])
  chosen = datasets.select_labelled_ids("1pct", names, np.array([0, 0]), 1,
                                        dataset_name="imagenet", dataset_dir=str(tmp_path))
  assert list(chosen) == [b"n01_1.JPEG"]


@pytest.mark.parametrize("spec,message", [
    ("5000", "only 1000"),
    ("101_per_class", "at most 100 per class"),
    ("5", "cannot cover 10 classes"),
    ("ten", "Cannot read --labels=ten"),
    ("file:/no/such/file.txt", "does not exist"),
])
def test_subset_errors(spec, message):
  with pytest.raises(UserError, match=message):
    datasets.select_labelled_ids(spec, IDS, LABELS, 10)


def test_subset_errors_for_unknown_ids_empty_class_and_missing_imagenet_list(tmp_path):
  path = tmp_path / "ids.txt"
  path.write_text("img3\nnot_there\n")
  with pytest.raises(UserError, match="1 of the 2 ids"):
    datasets.select_labelled_ids(f"file:{path}", IDS, LABELS, 10)
  labels = np.where(LABELS == 9, 0, LABELS)  # class 9 has no examples
  with pytest.raises(UserError, match="Class 9 has only 0"):
    datasets.select_labelled_ids("100", IDS, labels, 10)
  with pytest.raises(UserError, match="imagenet2012_subset.*1percent.txt"):
    datasets.select_labelled_ids("1pct", IDS, LABELS, 10, dataset_name="imagenet",
                                 dataset_dir=str(tmp_path))
