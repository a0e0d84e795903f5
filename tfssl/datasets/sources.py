"""Dataset sources: where examples come from, validated when the source is made.

A source yields examples {"image": uint8 [H,W,3] or an encoded image string (JPEG, PNG,
GIF, BMP, WebP), "label": int32 (0-based; UNLABELLED where the data has none), "id": string};
decoding happens in the preprocessing so JPEG crops decode only the crop. `read` shards by
`tf.distribute.InputContext` before any decoding: by files when there are at least as many
files as input pipelines, else by examples. Nothing here downloads: missing data is a
UserError saying where to put it.

A source without labels (num_classes 0: an image folder without class folders, a CSV
without a label column, a TFDS dataset without a ClassLabel) trains label-free methods;
`check_labelled` is the one message everything that needs labels gives.
"""

import csv
import hashlib
import io
import os

import numpy as np
import tensorflow as tf
from absl import logging

from tfssl.errors import UserError
from tfssl.registry import Registry

DATASETS = Registry("dataset")
FOLDER_PREFIX = "folder:"
CSV_PREFIX = "csv:"
TFDS_PREFIX = "tfds:"
# What tf.io.decode_image reads (grayscale/CMYK/progressive JPEG, PNG with alpha or 16 bits,
# palette PNG, GIF's first frame, BMP, WebP); a file that still fails is skipped and counted.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
UNLABELLED = -1  # the label of an example whose dataset has none
# A file list without a validation/test split evaluates on about this share of its
# training files, chosen by a seeded hash of each file's id (see held_out_mask), which it
# then does not train on.
HELD_OUT_SPLIT = "held_out"
HELD_OUT_FRACTION = 0.1
HELD_OUT_SEED = 0
# A CSV may name up to this share of files that are missing or unreadable (left out, with
# a warning naming them); more is refused before training.
MAX_MISSING_FRACTION = 0.01
HOW_TO_LABEL = (
    "Give labels with an image folder PATH/train/<class>/... (optionally PATH/validation/"
    "<class>/...) as --dataset=folder:PATH, a CSV with a label column as --dataset=csv:FILE "
    "(header path,label[,split]), or a labelled TFDS dataset as --dataset=tfds:NAME.")


def get_source(name, dataset_dir=None):
  """The source for `name`: a registered dataset, `folder:PATH`, `csv:FILE` or
  `tfds:NAME[/CONFIG]`; checks its files now."""
  if name.startswith(FOLDER_PREFIX):
    return FolderSource(name[len(FOLDER_PREFIX):])
  if name.startswith(CSV_PREFIX):
    return CsvSource(name[len(CSV_PREFIX):])
  if name.startswith(TFDS_PREFIX):
    return TFDSSource(name[len(TFDS_PREFIX):], dataset_dir, name=name)
  if name not in DATASETS:
    raise UserError(DATASETS.unknown_message(name) + f" Or use {FOLDER_PREFIX}PATH for an "
                    "image folder (labelled: PATH/train/<class>/*; unlabelled: images at any "
                    f"depth), {CSV_PREFIX}FILE for a file list (header path[,label][,split]) "
                    f"or {TFDS_PREFIX}NAME[/CONFIG] for a prepared TFDS dataset.")
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
  """What the pipeline needs of a dataset.

  `unlabelled_split` is what semi-supervised methods read as their unlabelled stream and
  label-free methods train on (`train_without_labels`): the train split, unless the data
  has images without labels besides it (STL-10).
  """
  name = ""
  num_classes = 0
  image_size = 224
  train_split = "train"
  eval_split = "test"
  _unlabelled_split = None

  def __init__(self):
    self._labels_and_ids = {}

  @property
  def unlabelled_split(self):
    return self._unlabelled_split or self.train_split

  def splits(self):
    return tuple(dict.fromkeys((self.train_split, self.eval_split, self.unlabelled_split)))

  @property
  def has_labels(self):
    return self.num_classes > 0

  def check_labelled(self, who):
    """One UserError if the data has no labels: `who` (e.g. "--method=fixmatch") needs them."""
    if not self.has_labels:
      raise UserError(f"{who} needs labelled images, but {self.name} has no labels"
                      f"{self.no_labels_reason()}. {HOW_TO_LABEL}")

  def no_labels_reason(self):
    """Why the data has no labels, as a clause of `check_labelled`'s message."""
    return ""

  def train_without_labels(self):
    """Label-free methods train on the unlabelled split: every image there is."""
    self.train_split = self.unlabelled_split

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


def _preferred_key(features, feature_type, preferred):
  """The top-level feature named `preferred` if it has `feature_type`, else the first one
  that has it, else None."""
  if preferred in features and isinstance(features[preferred], feature_type):
    return preferred
  return next((key for key, feature in features.items() if isinstance(feature, feature_type)),
              None)


class TFDSSource(Source):
  """A prepared TensorFlow Datasets dataset; never downloads.

  Its image and label features and its splits come from the builder's info: the image is the
  `image` feature (else the first Image feature), the label `label` (else the first
  ClassLabel; none: an unlabelled dataset), the evaluation split `test`, else `validation`,
  else the last HELD_OUT_FRACTION of `train` (TFDS shuffled it when it prepared it). An
  `unlabelled` split (STL-10's) joins `train` (what remains of it after the held-out part)
  as the unlabelled split. Images stay encoded;
  ids are the `id` feature where the dataset has one (CIFAR: "train_01234", the index in
  the original train order), else `file_name`, else TFDS's record id.
  """

  def __init__(self, tfds_name, data_dir=None, image_size=None, eval_split=None,
               alternative=None, name=None):
    super().__init__()
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    self._tfds = tfds
    self.name = name or tfds_name
    try:
      self.builder = tfds.builder(tfds_name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
      known = str(e).split("Available datasets:")[0].strip()
      raise UserError(f"{known} Names are those of the TFDS catalog "
                      "(https://www.tensorflow.org/datasets/catalog), e.g. "
                      f"{TFDS_PREFIX}stl10 or {TFDS_PREFIX}imagenette/320px-v2.") from e
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
    self._image_key = _preferred_key(features, tfds.features.Image, "image")
    if self._image_key is None:
      raise UserError(f"TFDS dataset '{tfds_name}' has no image feature (its features: "
                      f"{', '.join(features)}); tfssl learns from images.")
    self._label_key = _preferred_key(features, tfds.features.ClassLabel, "label")
    self.num_classes = features[self._label_key].num_classes if self._label_key else 0
    self._id_key = next((k for k in ("id", "file_name") if k in features), None)
    shape = features[self._image_key].shape
    self.image_size = image_size or (shape[0] if shape[0] and shape[0] == shape[1] else 224)
    self._tfds_splits = {}  # our split name -> TFDS split expression, where they differ
    prepared = list(self.builder.info.splits)
    if prepared and "train" not in prepared:
      raise UserError(f"TFDS dataset '{tfds_name}' has no train split (it has "
                      f"{', '.join(prepared)}).")
    self.eval_split = eval_split or next(
        (split for split in ("test", "validation") if split in prepared), None)
    if self.eval_split is None and prepared:
      self.eval_split = HELD_OUT_SPLIT
      cut = f"{round(100 * (1 - HELD_OUT_FRACTION))}%"
      self._tfds_splits = {"train": f"train[:{cut}]", HELD_OUT_SPLIT: f"train[{cut}:]"}
      logging.info("TFDS dataset %s has no test or validation split: evaluating on "
                   "train[%s:] (split '%s') and training on train[:%s].", tfds_name, cut,
                   HELD_OUT_SPLIT, cut)
    unlabelled = next((split for split in ("unlabelled", "unlabeled") if split in prepared), None)
    if unlabelled:
      self._unlabelled_split = f"train+{unlabelled}"
      if "train" in self._tfds_splits:  # without the held-out part of train
        self._tfds_splits[self._unlabelled_split] = f"{self._tfds_splits['train']}+{unlabelled}"

  def no_labels_reason(self):
    return " (its features have no ClassLabel)"

  def _tfds_split(self, split):
    self._check_split(split)
    return self._tfds_splits.get(split, split)

  def _split_info(self, split):
    split = self._tfds_split(split)
    # Empty only under tfds.testing.mock_data, which serves records without metadata.
    splits = self.builder.info.splits
    return splits[split] if list(splits) else None

  def num_examples(self, split):
    info = self._split_info(split)
    return info.num_examples if info else super().num_examples(split)

  def read(self, split, *, input_context=None, shuffle_files=False, seed=0,
           decode_labels_only=False, deterministic=True):
    info = self._split_info(split)
    split = self._tfds_split(split)
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
                                  skip_prefetch=True, options=options,
                                  add_tfds_id=self._id_key is None)
    image_key, label_key = self._image_key, self._label_key
    dataset = self.builder.as_dataset(split=split,
                                      decoders={image_key: tfds.decode.SkipDecoding()},
                                      read_config=read_config, shuffle_files=shuffle_files)
    id_key = self._id_key or "tfds_id"

    def convert(example):
      label = example[label_key] if label_key else UNLABELLED
      out = {"label": tf.cast(label, tf.int32), "id": example[id_key]}
      if not decode_labels_only:
        out["image"] = example[image_key]
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


# --- image files: folders and CSV lists ---------------------------------------------------


def _is_image(path):
  return path.lower().endswith(IMAGE_EXTENSIONS)


def _relative_id(path, root):
  return os.path.relpath(path, root).replace(os.sep, "/").encode()


def _images_under(folder):
  """(sorted image paths at any depth under `folder`, count of the other files, a few of
  their names)."""
  images, others = [], []
  for directory, _, names in tf.io.gfile.walk(folder):
    for name in names:
      (images if _is_image(name) else others).append(os.path.join(directory, name))
  return sorted(images), len(others), sorted(others)[:3]


def _id_hashes(ids):
  """A number in [0, 1) per id (bytes), from the id and HELD_OUT_SEED alone: the same on
  every host, in every run and whatever else the data holds."""
  salt = b"%d/" % HELD_OUT_SEED
  return np.array([int.from_bytes(hashlib.sha256(salt + i).digest()[:8], "big") / 2.0**64
                   for i in ids])


def held_out_mask(ids, labels):
  """Which examples form HELD_OUT_SPLIT, stratified by class and stable to files added or
  removed.

  An example is held out when its id's hash (`_id_hashes`) is below HELD_OUT_FRACTION, which
  depends on that id alone: adding or losing a file moves no other file between the splits,
  and each class (the whole set when unlabelled) holds out about that fraction. Exceptions
  keep both splits usable: a class of at least 1 / HELD_OUT_FRACTION examples none of which
  falls below holds out its lowest-hashing one, a class never holds out all its examples
  (its highest-hashing one trains), and if nothing is held out the lowest-hashing example of
  a class of two or more is.
  """
  hashes = _id_hashes(ids)
  held = hashes < HELD_OUT_FRACTION
  order = np.lexsort((hashes, labels))  # by class, then by hash
  starts = np.flatnonzero(np.r_[True, np.diff(labels[order]) != 0])
  class_size = np.empty(len(ids), int)
  for members in np.split(order, starts[1:]):
    class_size[members] = len(members)
    if len(members) >= round(1 / HELD_OUT_FRACTION) and not held[members].any():
      held[members[0]] = True
    if held[members].all():
      held[members[-1]] = False
  if not held.any():
    candidates = np.flatnonzero(class_size >= 2) if (class_size >= 2).any() else order
    held[candidates[np.argmin(hashes[candidates])]] = True
  return held


EVAL_SPLITS = ("validation", "test")  # a file list evaluates on the first it has


def _choose_eval_split(name, present, what):
  """The split of `present` (EVAL_SPLITS names) to evaluate on, or None; says that the other
  one is not used when both are there."""
  if len(present) > 1:
    logging.warning("%s has both a validation and a test %s: evaluating on validation; test "
                    "is not used.", name, what)
  return next((split for split in EVAL_SPLITS if split in present), None)


class FileListSource(Source):
  """Examples that are image files: {split: (paths, labels, ids)}, each a numpy column in
  read order. Images are the encoded file contents; a file that does not decode is skipped
  and counted by the pipeline."""

  def __init__(self, name, files, image_size=224, num_classes=0, eval_split=None,
               how_to_add_eval_split=""):
    super().__init__()
    self.name, self.image_size, self.num_classes = name, image_size, num_classes
    if not eval_split:
      paths, labels, ids = files[self.train_split]
      if len(paths) < 2:
        raise UserError(f"{name} has {len(paths)} image(s): too few to hold some out for "
                        "evaluation. Add images, or a validation split.")
      held = held_out_mask(ids, labels)
      files = dict(files, **{self.train_split: (paths[~held], labels[~held], ids[~held]),
                             HELD_OUT_SPLIT: (paths[held], labels[held], ids[held])})
      eval_split = HELD_OUT_SPLIT
      logging.warning(
          "%s has no validation or test split: holding out %d of its %d images (about %d%%%s, "
          "chosen by a hash of each file's path) as split '%s' to evaluate on, and training "
          "on the other %d only. To evaluate on images of your own, %s.", name, held.sum(),
          len(paths), round(100 * HELD_OUT_FRACTION), " of every class" if num_classes else "",
          HELD_OUT_SPLIT, (~held).sum(), how_to_add_eval_split)
    self.eval_split = eval_split
    self._files = files

  def _read_labels_and_ids(self, split):
    _, labels, ids = self._files[split]
    return ids, labels

  def read(self, split, *, input_context=None, shuffle_files=False, seed=0,
           decode_labels_only=False, deterministic=True):
    del deterministic
    self._check_split(split)
    paths, labels, ids = self._files[split]
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


def _columns(paths, labels, ids):
  return (np.array(paths, dtype=object), np.array(labels, np.int64),
          np.array(ids, dtype=object))


_EXTENSIONS_TEXT = "/".join(e[1:] for e in IMAGE_EXTENSIONS)


class FolderSource(FileListSource):
  """An image folder, labelled or not.

  Labelled: PATH/train/<class>/... and PATH/validation|test/<class>/...; classes are the
  sorted subdirectory names of train/, ids are paths relative to the split's dir
  ("<class>/<file>"). Unlabelled (no class folders under train/): every image under
  PATH/train, or under PATH if it has no train/ dir, at any depth; ids are paths relative to
  that dir. Images are the files ending in IMAGE_EXTENSIONS, at any depth. Without a
  validation/ or test/ dir the evaluation split is a held-out share (held_out_mask), with a
  warning.
  """

  def __init__(self, path, image_size=224):
    self._path = path
    name = FOLDER_PREFIX + path
    if not tf.io.gfile.isdir(path):
      raise UserError(f"Image folder {path} does not exist (or is not a directory).")
    train_dir = os.path.join(path, "train")
    classes = []
    if tf.io.gfile.isdir(train_dir):
      classes = sorted(c.rstrip("/") for c in tf.io.gfile.listdir(train_dir)
                       if tf.io.gfile.isdir(os.path.join(train_dir, c)))
    eval_split = _choose_eval_split(
        name, [s for s in EVAL_SPLITS if tf.io.gfile.isdir(os.path.join(path, s))], "dir")
    self.classes = classes
    if classes:
      # A folder of photos sorted into one or a few subfolders is read as labelled too.
      (logging.warning if len(classes) == 1 else logging.info)(
          "%s is labelled: its %d class(es) are the folders of %s (%s%s). To read every image "
          "under it as unlabelled instead, pass --dataset=%s%s.", name, len(classes), train_dir,
          ", ".join(classes[:10]), " ..." if len(classes) > 10 else "", FOLDER_PREFIX,
          train_dir)
      files = {split: self._list_classes(split) for split in ("train", eval_split) if split}
      self._check_classes(files, eval_split)
      how_to_add_eval_split = f"put them in {path}/validation/<class>/"
    else:
      self._unlabelled_root = train_dir if tf.io.gfile.isdir(train_dir) else path
      files = {"train": self._list_unlabelled(self._unlabelled_root)}
      if eval_split and self._unlabelled_root == train_dir:
        files[eval_split] = self._list_unlabelled(os.path.join(path, eval_split))
      else:
        eval_split = None
      logging.info("%s has no class folders (%s/train/<class>/): reading its %d images as "
                   "unlabelled.", name, path, len(files["train"][0]))
      how_to_add_eval_split = (f"put them in {path}/validation/ and the training images in "
                               f"{path}/train/")
    super().__init__(name, files, image_size, num_classes=len(classes), eval_split=eval_split,
                     how_to_add_eval_split=how_to_add_eval_split)

  def no_labels_reason(self):
    return (f" (its images are not in class folders {self._path}/train/<class>/, so it is "
            "read as unlabelled)")

  def _list_classes(self, split):
    paths, labels, ids = [], [], []
    root = os.path.join(self._path, split)
    for label, name in enumerate(self.classes):
      folder = os.path.join(root, name)
      if tf.io.gfile.isdir(folder):
        images = _images_under(folder)[0]
        paths += images
        labels += [label] * len(images)
        ids += [_relative_id(p, root) for p in images]
    return _columns(paths, labels, ids)

  def _check_classes(self, files, eval_split):
    train_dir = os.path.join(self._path, "train")
    counts = np.bincount(files["train"][1], minlength=len(self.classes))
    empty = [c for c, n in zip(self.classes, counts) if n == 0]
    if empty:
      raise UserError(f"{len(empty)} class(es) have no images in {train_dir}: "
                      f"{', '.join(empty[:10])}. Every class needs at least one "
                      f"{_EXTENSIONS_TEXT} file, or remove its dir.")
    if eval_split and not len(files[eval_split][0]):
      raise UserError(f"{os.path.join(self._path, eval_split)} has no images in class dirs "
                      f"named like those of train/ ({', '.join(self.classes[:5])} ...).")

  def _list_unlabelled(self, folder):
    images, num_others, others = _images_under(folder)
    if not images:
      contents = (f"none of its {num_others} files is an image ({_EXTENSIONS_TEXT}; e.g. "
                  f"{', '.join(os.path.relpath(o, folder) for o in others)})" if num_others
                  else "it holds no files")
      raise UserError(f"Image folder {folder} has no images: {contents}. Put images in it at "
                      "any depth (read as unlabelled), or in class folders "
                      f"{self._path}/train/<class>/ for labels.")
    return _columns(images, [UNLABELLED] * len(images),
                    [_relative_id(p, folder) for p in images])


def _is_remote(path):
  return "://" in path


def _unreadable(paths):
  """The `paths` that are missing or cannot be read, found by listing their directories
  (one listing per directory, also on remote filesystems) and, for local files, by
  checking they are non-empty files this process may read."""
  listed = {}
  bad = []
  for path in paths:
    directory, name = os.path.split(path)
    if directory not in listed:
      try:
        listed[directory] = set(n.rstrip("/") for n in tf.io.gfile.listdir(directory))
      except tf.errors.NotFoundError:
        listed[directory] = set()
    if name not in listed[directory] or not _is_remote(path) and not (
        os.path.isfile(path) and os.access(path, os.R_OK) and os.path.getsize(path) > 0):
      bad.append(path)
  return bad


def _csv_labels(cells, csv_path):
  """(labels, class names or None): integers used as they are, names as their index in
  sorted order."""
  empty = [i for i, cell in enumerate(cells) if not cell]
  if empty:
    raise UserError(f"{csv_path} row {empty[0] + 2} has an empty label ({len(empty)} rows "
                    "do). Give every row a label, or drop the label column to train "
                    "label-free methods on the images.")
  try:
    labels = [int(cell) for cell in cells]
  except ValueError:
    classes = sorted(set(cells))
    index = {name: i for i, name in enumerate(classes)}
    return [index[cell] for cell in cells], classes
  if min(labels) < 0:
    raise UserError(f"{csv_path} has a negative label ({min(labels)}): integer labels are "
                    "class indices 0, 1, ...; or use class names.")
  return labels, None


class CsvSource(FileListSource):
  """Images listed in a CSV file: a header with `path` and optional `label` and `split`
  columns (other columns are ignored). Relative paths are relative to the CSV's dir; labels
  are class names (classes in sorted order, from every row) or integer class indices;
  splits are `train` and optionally `validation` or `test` (both: evaluates on validation,
  with a warning; neither: on a held-out share, see held_out_mask). ids are the paths as the
  CSV writes them.

  Files that are missing or unreadable are counted before training: up to
  MAX_MISSING_FRACTION of them are left out with a warning, more are refused.
  """

  def __init__(self, path, image_size=224):
    self._path = path
    fields, rows = self._read_rows()
    written = [row["path"] for row in rows]
    base = os.path.dirname(path)
    files = [p if os.path.isabs(p) or _is_remote(p) else os.path.join(base, p) for p in written]
    labels, self.classes, num_classes = [UNLABELLED] * len(rows), None, 0
    if "label" in fields:
      # From every row, before missing files are left out, so that a host missing a whole
      # class's files numbers the classes as the others do.
      labels, self.classes = _csv_labels([row["label"] for row in rows], path)
      num_classes = len(self.classes) if self.classes else max(labels) + 1
    splits = [row.get("split") or "train" for row in rows]
    unknown = sorted(set(splits) - {"train", *EVAL_SPLITS})
    if unknown:
      raise UserError(f"{path} has split(s) {', '.join(unknown)}: the split column holds "
                      "train, validation or test.")
    if "train" not in splits:
      raise UserError(f"{path} has no rows of split 'train' to train on.")
    eval_split = _choose_eval_split(CSV_PREFIX + path, set(splits) & set(EVAL_SPLITS),
                                    "split in its rows")
    bad = self._check_readable(files, written)
    columns = {}
    for split in ("train", eval_split):
      if split:
        chosen = [i for i, s in enumerate(splits) if s == split and files[i] not in bad]
        columns[split] = _columns([files[i] for i in chosen], [labels[i] for i in chosen],
                                  [written[i].encode() for i in chosen])
    super().__init__(CSV_PREFIX + path, columns, image_size, num_classes, eval_split,
                     how_to_add_eval_split="add a split column and mark them 'validation'")

  def no_labels_reason(self):
    return " (its header has no 'label' column)"

  def _read_rows(self):
    """(header fields, rows as dicts of stripped cells), rows without a path dropped."""
    path = self._path
    if not tf.io.gfile.exists(path):
      raise UserError(f"File list {path} does not exist. Write a CSV whose header is "
                      "path[,label][,split] and whose rows name image files.")
    with tf.io.gfile.GFile(path, "rb") as f:
      reader = csv.DictReader(io.StringIO(f.read().decode("utf-8-sig")))
      rows = list(reader)
    fields = [name.strip() for name in reader.fieldnames or []]
    if "path" not in fields:
      raise UserError(f"{path} has no 'path' column (its header: {','.join(fields) or 'none'})."
                      " The first line must be the header path[,label][,split].")
    rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in rows]
    rows = [row for row in rows if row["path"]]
    if not rows:
      raise UserError(f"{path} lists no images: add rows under its header.")
    seen, repeated = set(), []
    for row in rows:
      if row["path"] in seen:
        repeated.append(row["path"])
      seen.add(row["path"])
    if repeated:
      raise UserError(f"{path} lists {len(repeated)} file(s) more than once (e.g. "
                      f"{', '.join(repeated[:3])}): list each image once.")
    return fields, rows

  def _check_readable(self, files, written):
    """The set of `files` that are missing or unreadable; refuses more than
    MAX_MISSING_FRACTION of them."""
    bad = set(_unreadable(files))
    if not bad:
      return bad
    named = [w for f, w in zip(files, written) if f in bad]
    if len(bad) > MAX_MISSING_FRACTION * len(files):
      raise UserError(
          f"{len(bad)} of the {len(files)} files {self._path} lists are missing or unreadable "
          f"(e.g. {', '.join(named[:3])}), more than the {MAX_MISSING_FRACTION:.0%} tfssl "
          f"leaves out. Relative paths are read from {os.path.dirname(self._path) or '.'}; "
          "fix the paths or copy the files, then rerun.")
    logging.warning("%d of the %d files %s lists are missing or unreadable and are left out: "
                    "%s", len(bad), len(files), self._path, ", ".join(named[:5]))
    return bad
