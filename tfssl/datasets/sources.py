"""Dataset sources: where examples come from, validated when the source is made.

A source yields examples {"image": uint8 [H,W,3] or encoded JPEG/PNG string,
"label": int32 (0-based), "id": string}; decoding happens in the preprocessing so JPEG
crops decode only the crop. `read` shards by `tf.distribute.InputContext` before any
decoding: by files when there are at least as many files as input pipelines, else by
examples. Nothing here downloads: missing data is a UserError saying where to put it.
"""

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


def _num_pipelines(input_context):
  return input_context.num_input_pipelines if input_context else 1


def _shard(dataset, input_context):
  if _num_pipelines(input_context) > 1:
    return dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
  return dataset


def _read_files(files, make_dataset, input_context, shuffle_files, seed, deterministic=True):
  """Records of `files` (a list or a tuple of per-file columns), sharded before parsing."""
  num_files = len(files[0] if isinstance(files, tuple) else files)
  by_file = num_files >= _num_pipelines(input_context)
  dataset = tf.data.Dataset.from_tensor_slices(files)
  if by_file:
    dataset = _shard(dataset, input_context)
  if shuffle_files:
    dataset = dataset.shuffle(num_files, seed=seed)
  # Reading several files at once mixes them before the shuffle buffer when training;
  # evaluation reads one file after the other so the order is the files' order.
  dataset = dataset.interleave(
      make_dataset, cycle_length=min(num_files, 16) if shuffle_files else 1,
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic or not shuffle_files)
  if not by_file:
    dataset = _shard(dataset, input_context)
  return dataset


def _check_dir(dataset_dir, what):
  if not tf.io.gfile.isdir(dataset_dir):
    raise UserError(f"--dataset_dir {dataset_dir} does not exist. {what}")


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
    """(ids, labels) of every example of `split` in read order, read once and kept."""
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
    if not ids:
      return np.array([], dtype=object), np.array([], np.int64)
    return np.concatenate(ids), np.concatenate(labels).astype(np.int64)

  def read(self, split, *, input_context=None, shuffle_files=False, seed=0,
           decode_labels_only=False, deterministic=True):
    """tf.data.Dataset of {"image", "label", "id"} (no "image" if decode_labels_only)."""
    raise NotImplementedError


class ArraySource(Source):
  """Images held in memory (digits)."""

  def __init__(self, arrays):
    super().__init__()
    self._arrays = arrays  # split -> (uint8 images [N,H,W,3], labels [N], ids [N])

  def _read_labels_and_ids(self, split):
    _, labels, ids = self._arrays[split]
    return ids, labels

  def read(self, split, *, input_context=None, shuffle_files=False, seed=0,
           decode_labels_only=False, deterministic=True):
    del shuffle_files, seed, deterministic
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
  ids are the indices into `load_digits()`.
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


# --- CIFAR ---------------------------------------------------------------------------

_CIFAR_IMAGE_BYTES = 32 * 32 * 3


class CifarBinarySource(Source):
  """The CIFAR binary format (fixed-length records: label byte(s), then 3x32x32 pixels).

  ids are the record's index in its split, in file order (the torchvision order).
  """
  image_size = 32

  def __init__(self, name, num_classes, files, label_bytes=1, label_index=0):
    super().__init__()
    self.name, self.num_classes = name, num_classes
    self.label_bytes, self.label_index = label_bytes, label_index
    self.record_bytes = label_bytes + _CIFAR_IMAGE_BYTES
    self._files = files  # split -> list of paths
    self._counts = {}
    for split, paths in files.items():
      sizes = [tf.io.gfile.stat(p).length for p in paths]
      bad = [p for p, size in zip(paths, sizes) if size == 0 or size % self.record_bytes]
      if bad:
        raise UserError(f"CIFAR binary file(s) {', '.join(bad)} are empty or truncated: their "
                        f"size is not a multiple of {self.record_bytes} bytes. Copy them again.")
      self._counts[split] = [size // self.record_bytes for size in sizes]

  def num_examples(self, split):
    self._check_split(split)
    return sum(self._counts[split])

  def _read_labels_and_ids(self, split):
    labels = []
    for path in self._files[split]:
      with tf.io.gfile.GFile(path, "rb") as f:
        records = np.frombuffer(f.read(), np.uint8).reshape(-1, self.record_bytes)
      labels.append(records[:, self.label_index].astype(np.int64))
    labels = np.concatenate(labels)
    return np.array([str(i).encode() for i in range(len(labels))]), labels

  def read(self, split, *, input_context=None, shuffle_files=False, seed=0,
           decode_labels_only=False, deterministic=True):
    self._check_split(split)
    record_bytes, label_bytes, label_index = (self.record_bytes, self.label_bytes,
                                              self.label_index)
    offsets = np.cumsum([0] + self._counts[split][:-1]).astype(np.int64)

    def records(path, offset):
      return tf.data.FixedLengthRecordDataset(path, record_bytes,
                                              buffer_size=1 << 20).enumerate(offset)

    dataset = _read_files((self._files[split], offsets), records, input_context,
                          shuffle_files, seed, deterministic)

    def parse(index, record):
      raw = tf.io.decode_raw(record, tf.uint8)
      out = {"label": tf.cast(raw[label_index], tf.int32), "id": tf.strings.as_string(index)}
      if not decode_labels_only:
        out["image"] = tf.transpose(tf.reshape(raw[label_bytes:], [3, 32, 32]), [1, 2, 0])
      return out

    return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def _find_files(dataset_dir, subdirs, names):
  for sub in subdirs:
    paths = [os.path.join(dataset_dir, sub, n) for n in names]
    if all(tf.io.gfile.exists(p) for p in paths):
      return paths
  return None


def _cifar(tfds_name, num_classes, subdir, train_names, test_names, label_bytes, label_index,
           dataset_dir):
  """CIFAR binaries in dataset_dir (or its `subdir`) if present, else prepared TFDS data."""
  if dataset_dir:
    _check_dir(dataset_dir, f"Point it at a TFDS data dir holding {tfds_name}, or at the "
               f"CIFAR binary files ({subdir}/{train_names[0]} ...).")
    train = _find_files(dataset_dir, ("", subdir), train_names)
    test = _find_files(dataset_dir, ("", subdir), test_names)
    if train and test:
      return CifarBinarySource(tfds_name, num_classes, {"train": train, "test": test},
                               label_bytes, label_index)
  binaries = (f"or put the CIFAR binary files ({', '.join(train_names + test_names)}) in "
              f"DIR or DIR/{subdir}")
  return TFDSSource(tfds_name, dataset_dir, image_size=32, eval_split="test",
                    alternative=binaries)


@DATASETS.register("cifar10")
def cifar10(dataset_dir=None):
  return _cifar("cifar10", 10, "cifar-10-batches-bin",
                [f"data_batch_{i}.bin" for i in range(1, 6)], ["test_batch.bin"],
                label_bytes=1, label_index=0, dataset_dir=dataset_dir)


@DATASETS.register("cifar100")
def cifar100(dataset_dir=None):
  # CIFAR-100 records hold the coarse label, then the fine label we train on.
  return _cifar("cifar100", 100, "cifar-100-binary", ["train.bin"], ["test.bin"],
                label_bytes=2, label_index=1, dataset_dir=dataset_dir)


# --- TFDS ----------------------------------------------------------------------------


class TFDSSource(Source):
  """A prepared TensorFlow Datasets dataset; never downloads.

  Images stay encoded (TFDS stores PNG/JPEG); ids are the `id` feature where the dataset
  has one (CIFAR: "train_01234", the index in the original train order), else `file_name`.
  """

  def __init__(self, tfds_name, data_dir=None, image_size=224, eval_split="test",
               alternative=None):
    super().__init__()
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    self._tfds = tfds
    self.name = tfds_name
    self.image_size = image_size
    self.eval_split = eval_split
    self.builder = tfds.builder(tfds_name, data_dir=data_dir)
    if not self.builder.is_prepared():
      where = data_dir or "the default TFDS data dir (~/tensorflow_datasets)"
      manual = (" (ImageNet needs its manual download: see the TFDS catalog page of "
                f"{tfds_name})" if tfds_name.startswith("imagenet") else "")
      raise UserError(
          f"TFDS dataset '{tfds_name}' is not prepared in {where}, and nothing is downloaded "
          f"at run time. On a machine with network run `tfds build {tfds_name} "
          f"--data_dir=DIR`{manual}, copy DIR to this machine and pass --dataset_dir=DIR"
          + (f"; {alternative}." if alternative else "."))
    features = self.builder.info.features
    self.num_classes = features["label"].num_classes
    self._id_key = "id" if "id" in features else "file_name"

  def _split_info(self, split):
    self._check_split(split)
    # Empty only under tfds.testing.mock_data, which serves records without metadata.
    splits = self.builder.info.splits
    return splits[split] if split in splits else None

  def num_examples(self, split):
    info = self._split_info(split)
    return info.num_examples if info else super().num_examples(split)

  def read(self, split, *, input_context=None, shuffle_files=False, seed=0,
           decode_labels_only=False, deterministic=True):
    info = self._split_info(split)
    tfds = self._tfds
    num_pipelines = _num_pipelines(input_context)
    read_context = input_context
    if num_pipelines > 1 and (info.num_shards if info else 1) < num_pipelines:
      # Too few files to give every pipeline one: split by examples. TFDS reads only the
      # records of a sub-split, unlike Dataset.shard which reads everything.
      split = tfds.even_splits(split, num_pipelines)[input_context.input_pipeline_id]
      read_context = None
    options = tf.data.Options()
    options.deterministic = deterministic or not shuffle_files
    read_config = tfds.ReadConfig(input_context=read_context, shuffle_seed=seed,
                                  skip_prefetch=True, options=options)
    dataset = self.builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()},
                                      read_config=read_config, shuffle_files=shuffle_files)
    id_key = self._id_key

    def convert(example):
      out = {"label": tf.cast(example["label"], tf.int32), "id": example[id_key]}
      if not decode_labels_only:
        out["image"] = example["image"]
      return out

    return dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


# --- ImageNet ------------------------------------------------------------------------

_SLIM_LABEL_FEATURES = {
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
    "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
}
_SLIM_FEATURES = dict(_SLIM_LABEL_FEATURES,
                      **{"image/encoded": tf.io.FixedLenFeature([], tf.string)})


def _expected_imagenet_files(dataset_dir):
  return (f"Expected slim-layout TFRecords {dataset_dir}/train-00000-of-01024 ... and "
          f"{dataset_dir}/validation-00000-of-00128 ... (any shard counts), or a TFDS data dir "
          "holding a prepared imagenet2012/.")


class TFRecordSource(Source):
  """ImageNet TFRecords in the slim layout: train-*-of-*, validation-*-of-*.

  Features image/encoded (JPEG), image/class/label (slim: 1..1000, 0 was "background",
  hence label_offset=1) and image/filename (the id, e.g. n01440764_10026.JPEG).
  """

  def __init__(self, dataset_dir, name="imagenet", num_classes=1000, image_size=224,
               label_offset=1, train_split="train", eval_split="validation"):
    super().__init__()
    self.name, self.num_classes, self.image_size = name, num_classes, image_size
    self.train_split, self.eval_split = train_split, eval_split
    self.label_offset = label_offset
    _check_dir(dataset_dir, _expected_imagenet_files(dataset_dir))
    self._files = {split: sorted(tf.io.gfile.glob(os.path.join(dataset_dir, f"{split}-*-of-*")))
                   for split in self.splits()}
    missing = [split for split in self.splits() if not self._files[split]]
    if missing:
      raise UserError(f"--dataset_dir {dataset_dir} has no "
                      f"{' or '.join(f'{s}-*-of-*' for s in missing)} TFRecord files. "
                      + _expected_imagenet_files(dataset_dir))

  def num_examples(self, split):
    # Counting means reading every record; the standard ImageNet shards have known sizes.
    self._check_split(split)
    standard = {"train": (1024, 1_281_167), "validation": (128, 50_000)}
    shards, size = standard.get(split, (None, None))
    if self.name == "imagenet" and len(self._files[split]) == shards:
      return size
    return super().num_examples(split)

  @staticmethod
  def holds_records(dataset_dir):
    return bool(tf.io.gfile.glob(os.path.join(dataset_dir, "train-*-of-*")))

  def read(self, split, *, input_context=None, shuffle_files=False, seed=0,
           decode_labels_only=False, deterministic=True):
    self._check_split(split)
    dataset = _read_files(self._files[split],
                          lambda f: tf.data.TFRecordDataset(f, buffer_size=8 << 20),
                          input_context, shuffle_files, seed, deterministic)
    offset = self.label_offset
    features = _SLIM_LABEL_FEATURES if decode_labels_only else _SLIM_FEATURES

    def parse(record):
      example = tf.io.parse_single_example(record, features)
      out = {"label": tf.cast(example["image/class/label"] - offset, tf.int32),
             "id": example["image/filename"]}
      if not decode_labels_only:
        out["image"] = example["image/encoded"]
      return out

    return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)


@DATASETS.register("imagenet")
def imagenet(dataset_dir=None, label_offset=1):
  """Slim TFRecords in `dataset_dir` if there are any, else TFDS imagenet2012."""
  if dataset_dir:
    if not tf.io.gfile.isdir(dataset_dir) or TFRecordSource.holds_records(dataset_dir):
      return TFRecordSource(dataset_dir, label_offset=label_offset)
    if not tf.io.gfile.isdir(os.path.join(dataset_dir, "imagenet2012")):
      raise UserError(f"--dataset_dir {dataset_dir} holds no ImageNet records. "
                      + _expected_imagenet_files(dataset_dir))
  return TFDSSource("imagenet2012", dataset_dir, image_size=224, eval_split="validation")


# --- image folders -------------------------------------------------------------------


class FolderSource(Source):
  """PATH/train/<class>/*.{jpg,jpeg,png} and PATH/validation|test/<class>/*.

  Classes are the sorted subdirectory names of train/; ids are paths relative to the
  split's dir ("<class>/<file>"); images are the encoded file contents.
  """

  def __init__(self, path, image_size=224):
    super().__init__()
    self.name = FOLDER_PREFIX + path
    self.image_size = image_size
    layout = (f"Expected {path}/train/<class>/*.jpg|jpeg|png and "
              f"{path}/validation/<class>/* (or {path}/test/<class>/*).")
    train_dir = os.path.join(path, "train")
    if not tf.io.gfile.isdir(train_dir):
      raise UserError(f"Image folder {path} has no train/ dir. {layout}")
    self.classes = sorted(c.rstrip("/") for c in tf.io.gfile.listdir(train_dir)
                          if tf.io.gfile.isdir(os.path.join(train_dir, c)))
    if not self.classes:
      raise UserError(f"{train_dir} has no class subdirectories. {layout}")
    self.num_classes = len(self.classes)
    eval_dirs = [s for s in ("validation", "test") if tf.io.gfile.isdir(os.path.join(path, s))]
    if not eval_dirs:
      raise UserError(f"Image folder {path} has no validation/ or test/ dir to evaluate on. "
                      + layout)
    self.eval_split = eval_dirs[0]
    self._path = path
    self._files = {split: self._list(split) for split in self.splits()}
    counts = np.bincount(self._files["train"][1], minlength=self.num_classes)
    empty = [c for c, n in zip(self.classes, counts) if n == 0]
    if empty:
      raise UserError(f"{len(empty)} class(es) have no images in {train_dir}: "
                      f"{', '.join(empty[:10])}. Every class needs at least one "
                      ".jpg/.jpeg/.png file, or remove its dir.")
    if not len(self._files[self.eval_split][0]):
      raise UserError(f"{os.path.join(path, self.eval_split)} has no images in class dirs "
                      f"named like those of train/ ({', '.join(self.classes[:5])} ...).")

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
    return np.array(paths, dtype=object), np.array(labels, np.int64)

  def _read_labels_and_ids(self, split):
    paths, labels = self._files[split]
    root = os.path.join(self._path, split)
    ids = np.array([os.path.relpath(p, root).replace(os.sep, "/").encode() for p in paths],
                   dtype=object)
    return ids, labels

  def read(self, split, *, input_context=None, shuffle_files=False, seed=0,
           decode_labels_only=False, deterministic=True):
    del deterministic
    self._check_split(split)
    paths, labels = self._files[split]
    ids, _ = self.labels_and_ids(split)
    columns = {"path": np.array([p.encode() for p in paths], dtype=object),
               "label": labels.astype(np.int32), "id": ids}
    dataset = _shard(tf.data.Dataset.from_tensor_slices(columns), input_context)
    if shuffle_files:
      # Every example is its own file: shuffling them all is cheap and mixes classes,
      # which are listed one after the other.
      dataset = dataset.shuffle(len(paths), seed=seed)
    if decode_labels_only:
      return dataset.map(lambda e: {"label": e["label"], "id": e["id"]})
    return dataset.map(lambda e: {"image": tf.io.read_file(e["path"]), "label": e["label"],
                                  "id": e["id"]}, num_parallel_calls=tf.data.AUTOTUNE)
