"""Dataset sources: where examples come from, validated when the source is made.

A source yields examples {"image": uint8 [H,W,3] or encoded JPEG/PNG string,
"label": int32 (0-based), "id": string}; decoding happens in the preprocessing so JPEG
crops decode only the crop. `read` shards by `tf.distribute.InputContext` before any
decoding: by files when there are enough, else by examples.
"""

import glob
import os

import numpy as np
import tensorflow as tf

from tfssl.errors import UserError
from tfssl.registry import Registry

DATASETS = Registry("dataset")
FOLDER_PREFIX = "folder:"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def get_source(name, dataset_dir=None):
  """The source for `name` (a registered dataset or `folder:PATH`); checks its files now."""
  if name.startswith(FOLDER_PREFIX):
    return FolderSource(name[len(FOLDER_PREFIX):])
  if name not in DATASETS:
    raise UserError(DATASETS.unknown_message(name) + f" Or use {FOLDER_PREFIX}PATH for an "
                    "image folder (PATH/train/<class>/*, PATH/validation/<class>/*).")
  return DATASETS.get(name)(dataset_dir)


def _shard(dataset, input_context):
  if input_context and input_context.num_input_pipelines > 1:
    return dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
  return dataset


class Source:
  """What the pipeline needs of a dataset."""
  name = ""
  num_classes = 0
  image_size = 224
  train_split = "train"
  eval_split = "test"

  def __init__(self):
    self._labels_and_ids = {}

  def splits(self):
    return (self.train_split, self.eval_split)

  def _check_split(self, split):
    if split not in self.splits():
      raise UserError(f"Dataset {self.name} has no split '{split}'. Splits: "
                      f"{', '.join(self.splits())}.")

  def labels_and_ids(self, split):
    """(ids, labels) of every example of `split`, read once and kept."""
    self._check_split(split)
    if split not in self._labels_and_ids:
      self._labels_and_ids[split] = self._read_labels_and_ids(split)
    return self._labels_and_ids[split]

  def num_examples(self, split):
    return len(self.labels_and_ids(split)[0])

  def _read_labels_and_ids(self, split):
    ids, labels = [], []
    for example in self.read(split, decode_labels_only=True).batch(4096):
      ids.append(example["id"].numpy())
      labels.append(example["label"].numpy())
    return np.concatenate(ids), np.concatenate(labels).astype(np.int64)

  def read(self, split, *, input_context=None, shuffle_files=False, seed=0,
           decode_labels_only=False):
    raise NotImplementedError


class ArraySource(Source):
  """Images held in memory (digits, CIFAR binaries)."""

  def __init__(self, arrays):
    super().__init__()
    self._arrays = arrays  # split -> (uint8 images [N,H,W,3], labels [N], ids [N])

  def _read_labels_and_ids(self, split):
    _, labels, ids = self._arrays[split]
    return ids, labels

  def read(self, split, *, input_context=None, shuffle_files=False, seed=0,
           decode_labels_only=False):
    del shuffle_files, seed
    self._check_split(split)
    images, labels, ids = self._arrays[split]
    columns = {"label": labels.astype(np.int32), "id": ids}
    if not decode_labels_only:
      columns["image"] = images
    return _shard(tf.data.Dataset.from_tensor_slices(columns), input_context)


@DATASETS.register("digits")
class DigitsSource(ArraySource):
  """scikit-learn's bundled 8x8 digits, upsampled to 32x32 RGB: real images, offline.

  Split: a stratified 80/20 train/test split with random_state 0 (1437 / 360 images).
  """
  name = "digits"
  num_classes = 10
  image_size = 32

  def __init__(self, dataset_dir=None):
    del dataset_dir
    from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
    from sklearn.model_selection import train_test_split  # pylint: disable=g-import-not-at-top
    digits = load_digits()
    small = (digits.images / 16.0).astype(np.float32)[..., None]
    images = tf.image.resize(small, [32, 32], method="bilinear").numpy()
    images = np.repeat(np.clip(images * 255.0 + 0.5, 0, 255).astype(np.uint8), 3, axis=-1)
    index = np.arange(len(images))
    train_idx, test_idx = train_test_split(index, test_size=0.2, stratify=digits.target,
                                           random_state=0)
    arrays = {}
    for split, idx in (("train", np.sort(train_idx)), ("test", np.sort(test_idx))):
      arrays[split] = (images[idx], digits.target[idx].astype(np.int64),
                       np.array([str(i).encode() for i in idx]))
    super().__init__(arrays)


def _cifar_binary_files(dataset_dir, train_names, test_names):
  for sub in ("", "cifar-10-batches-bin", "cifar-100-binary"):
    folder = os.path.join(dataset_dir, sub)
    train = [os.path.join(folder, n) for n in train_names]
    test = [os.path.join(folder, n) for n in test_names]
    if all(tf.io.gfile.exists(f) for f in train + test):
      return train, test
  return None


def _read_cifar_binary(files, label_bytes, label_index):
  record_bytes = label_bytes + 32 * 32 * 3
  raw = b"".join(tf.io.gfile.GFile(f, "rb").read() for f in files)
  if len(raw) % record_bytes:
    raise UserError(f"CIFAR binary files {files} are truncated: their size is not a multiple "
                    f"of {record_bytes} bytes. Download them again.")
  records = np.frombuffer(raw, np.uint8).reshape(-1, record_bytes)
  labels = records[:, label_index].astype(np.int64)
  images = records[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), labels


class _Cifar(Source):
  image_size = 32
  tfds_name = ""
  binary_train = ()
  binary_test = ()
  label_bytes = 1
  label_index = 0

  def __new__(cls, dataset_dir=None):
    if dataset_dir:
      if not tf.io.gfile.isdir(dataset_dir):
        raise UserError(f"--dataset_dir {dataset_dir} does not exist. Point it at a TFDS data "
                        f"dir holding {cls.tfds_name}, or at the CIFAR binary files.")
      files = _cifar_binary_files(dataset_dir, cls.binary_train, cls.binary_test)
      if files:
        return _CifarBinary(cls, files)
    return TFDSSource(cls.tfds_name, dataset_dir, image_size=32, eval_split="test")


class _CifarBinary(ArraySource):

  def __init__(self, spec, files):
    self.name = spec.tfds_name
    self.num_classes = spec.num_classes
    self.image_size = spec.image_size
    arrays = {}
    for split, split_files in zip(("train", "test"), files):
      images, labels = _read_cifar_binary(split_files, spec.label_bytes, spec.label_index)
      arrays[split] = (images, labels, np.array([str(i).encode() for i in range(len(labels))]))
    super().__init__(arrays)


@DATASETS.register("cifar10")
class Cifar10(_Cifar):
  tfds_name = "cifar10"
  num_classes = 10
  binary_train = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
  binary_test = ("test_batch.bin",)


@DATASETS.register("cifar100")
class Cifar100(_Cifar):
  tfds_name = "cifar100"
  num_classes = 100
  binary_train = ("train.bin",)
  binary_test = ("test.bin",)
  label_bytes = 2  # coarse label, then fine label
  label_index = 1


class TFDSSource(Source):
  """A prepared TensorFlow Datasets dataset; never downloads."""

  def __init__(self, tfds_name, data_dir=None, image_size=224, eval_split="test"):
    super().__init__()
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    self._tfds = tfds
    self.name = tfds_name
    self.image_size = image_size
    self.eval_split = eval_split
    self.builder = tfds.builder(tfds_name, data_dir=data_dir)
    if not self.builder.is_prepared():
      where = data_dir or "the default TFDS data dir (~/tensorflow_datasets)"
      raise UserError(
          f"TFDS dataset '{tfds_name}' is not prepared in {where}, and nothing is downloaded "
          f"at run time. On a machine with network run `tfds build {tfds_name} "
          f"--data_dir=DIR` (ImageNet needs its manual download, see the TFDS catalog), copy "
          "DIR here and pass --dataset_dir=DIR.")
    self.num_classes = self.builder.info.features["label"].num_classes
    self._id_key = "id" if "id" in self.builder.info.features else "file_name"

  def num_examples(self, split):
    self._check_split(split)
    return self.builder.info.splits[split].num_examples

  def read(self, split, *, input_context=None, shuffle_files=False, seed=0,
           decode_labels_only=False):
    self._check_split(split)
    tfds = self._tfds
    decoders = {"image": tfds.decode.SkipDecoding()}
    read_config = tfds.ReadConfig(input_context=input_context, shuffle_seed=seed,
                                  skip_prefetch=True)
    dataset = self.builder.as_dataset(split=split, decoders=decoders, read_config=read_config,
                                      shuffle_files=shuffle_files)
    id_key = self._id_key

    def convert(example):
      out = {"label": tf.cast(example["label"], tf.int32), "id": example[id_key]}
      if not decode_labels_only:
        out["image"] = example["image"]
      return out

    return dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


_SLIM_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
    "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
}


class TFRecordSource(Source):
  """ImageNet TFRecords in the slim layout: train-*-of-*, validation-*-of-*."""

  def __init__(self, dataset_dir, name="imagenet", num_classes=1000, image_size=224,
               label_offset=1):
    super().__init__()
    self.name, self.num_classes, self.image_size = name, num_classes, image_size
    self.eval_split = "validation"
    self.label_offset = label_offset  # slim writes labels 1..1000 (0 is "background")
    self._files = {split: sorted(tf.io.gfile.glob(os.path.join(dataset_dir, f"{split}-*-of-*")))
                   for split in self.splits()}

  def num_examples(self, split):
    # Counting means reading every record; the standard ImageNet shards have known sizes.
    standard = {"train": (1024, 1_281_167), "validation": (128, 50_000)}
    shards, size = standard.get(split, (None, None))
    if self.name == "imagenet" and len(self._files.get(split, ())) == shards:
      return size
    return super().num_examples(split)

  @staticmethod
  def holds_records(dataset_dir):
    return bool(tf.io.gfile.glob(os.path.join(dataset_dir, "train-*-of-*")))

  def read(self, split, *, input_context=None, shuffle_files=False, seed=0,
           decode_labels_only=False):
    self._check_split(split)
    files = self._files[split]
    if not files:
      raise UserError(f"No {split}-*-of-* TFRecord files for {self.name}.")
    num_pipelines = input_context.num_input_pipelines if input_context else 1
    by_file = len(files) >= num_pipelines
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if by_file:
      dataset = _shard(dataset, input_context)
    if shuffle_files:
      dataset = dataset.shuffle(len(files), seed=seed)
    dataset = dataset.interleave(
        lambda f: tf.data.TFRecordDataset(f, buffer_size=8 << 20),
        cycle_length=16 if shuffle_files else 1, num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not shuffle_files)
    if not by_file:
      dataset = _shard(dataset, input_context)
    offset = self.label_offset

    def parse(record):
      example = tf.io.parse_single_example(record, _SLIM_FEATURES)
      out = {"label": tf.cast(example["image/class/label"] - offset, tf.int32),
             "id": example["image/filename"]}
      if not decode_labels_only:
        out["image"] = example["image/encoded"]
      return out

    return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)


@DATASETS.register("imagenet")
def imagenet(dataset_dir=None):
  """Slim TFRecords in `dataset_dir` if there are any, else TFDS imagenet2012."""
  if dataset_dir:
    if not tf.io.gfile.isdir(dataset_dir):
      raise UserError(f"--dataset_dir {dataset_dir} does not exist. For ImageNet pass a dir "
                      "with slim TFRecords (train-00000-of-01024 ..., validation-00000-of-00128 "
                      "...) or a TFDS data dir holding imagenet2012.")
    if TFRecordSource.holds_records(dataset_dir):
      return TFRecordSource(dataset_dir)
    if not tf.io.gfile.isdir(os.path.join(dataset_dir, "imagenet2012")):
      raise UserError(f"--dataset_dir {dataset_dir} holds no ImageNet records: expected slim "
                      "TFRecords train-*-of-* and validation-*-of-*, or a TFDS "
                      "imagenet2012/ folder.")
  return TFDSSource("imagenet2012", dataset_dir, image_size=224, eval_split="validation")


class FolderSource(Source):
  """PATH/train/<class>/*.{jpg,jpeg,png} and PATH/validation|test/<class>/*."""

  def __init__(self, path, image_size=224):
    super().__init__()
    self.name = FOLDER_PREFIX + path
    self.image_size = image_size
    train_dir = os.path.join(path, "train")
    if not tf.io.gfile.isdir(train_dir):
      raise UserError(f"Image folder {path} has no train/ dir. Expected "
                      f"{path}/train/<class>/*.jpg and {path}/validation/<class>/*.jpg.")
    self.classes = sorted(c.rstrip("/") for c in tf.io.gfile.listdir(train_dir)
                          if tf.io.gfile.isdir(os.path.join(train_dir, c)))
    if not self.classes:
      raise UserError(f"{train_dir} has no class subdirectories.")
    self.num_classes = len(self.classes)
    eval_dirs = [s for s in ("validation", "test") if tf.io.gfile.isdir(os.path.join(path, s))]
    if not eval_dirs:
      raise UserError(f"Image folder {path} has no validation/ or test/ dir to evaluate on.")
    self.eval_split = eval_dirs[0]
    self._path = path
    self._files = {split: self._list(split) for split in self.splits()}
    empty = [c for c, n in zip(self.classes, np.bincount(self._files["train"][1],
                                                         minlength=self.num_classes)) if n == 0]
    if empty:
      raise UserError(f"Classes with no images in {train_dir}: {', '.join(empty[:10])}. "
                      "Every class needs at least one .jpg/.jpeg/.png.")

  def _list(self, split):
    paths, labels = [], []
    for label, name in enumerate(self.classes):
      folder = os.path.join(self._path, split, name)
      if not tf.io.gfile.isdir(folder):
        continue
      for filename in sorted(tf.io.gfile.listdir(folder)):
        if filename.lower().endswith(IMAGE_EXTENSIONS):
          paths.append(os.path.join(folder, filename))
          labels.append(label)
    return np.array(paths), np.array(labels, np.int64)

  def _read_labels_and_ids(self, split):
    paths, labels = self._files[split]
    root = os.path.join(self._path, split)
    return np.array([os.path.relpath(p, root).encode() for p in paths]), labels

  def read(self, split, *, input_context=None, shuffle_files=False, seed=0,
           decode_labels_only=False):
    del shuffle_files, seed
    self._check_split(split)
    paths, labels = self._files[split]
    ids, _ = self.labels_and_ids(split)
    dataset = _shard(tf.data.Dataset.from_tensor_slices(
        {"path": paths, "label": labels.astype(np.int32), "id": ids}), input_context)
    if decode_labels_only:
      return dataset.map(lambda e: {"label": e["label"], "id": e["id"]})
    return dataset.map(lambda e: {"image": tf.io.read_file(e["path"]), "label": e["label"],
                                  "id": e["id"]}, num_parallel_calls=tf.data.AUTOTUNE)
