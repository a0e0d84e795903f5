"""Labelled subsets: `all | 1pct | 10pct | N | N_per_class | file:PATH`, deterministic per seed.

`N` and `1pct`/`10pct` draw a class-balanced subset (per-class counts differ by at most one,
as S4L and SimCLR do); `N_per_class` draws exactly N of every class. ImageNet's 1%/10% are
not drawn: they are the fixed lists everybody reports on (TFDS imagenet2012_subset =
SimCLR's imagenet_subsets/1percent.txt, 10percent.txt), read from the list file or from a
prepared TFDS imagenet2012_subset. Semi-supervised methods use the
whole train split as unlabelled data (as S4L does), so only the labelled ids are chosen here.
"""

import hashlib
import json
import os
import re

import numpy as np
import tensorflow as tf
from absl import logging

from tfssl.errors import UserError

_FRACTIONS = {"1pct": 0.01, "10pct": 0.10}
_SPEC_HELP = ("Use --labels=all, 1pct, 10pct, N (e.g. 4000), N_per_class (e.g. 400_per_class) "
              "or file:PATH (one id per line).")
_IMAGENET_NAMES = ("imagenet", "imagenet2012", "tfds:imagenet2012")


class _ImagenetList:
  """One of TFDS's imagenet2012_subset lists, and where `tfds build` leaves its download."""

  def __init__(self, name, sha256, tfds_download_name):
    self.name = name
    self.sha256 = sha256
    self.tfds_download_name = tfds_download_name
    self.url = ("https://raw.githubusercontent.com/google-research/simclr/master/"
                f"imagenet_subsets/{name}")


# Checksums and download names from TFDS's imagenet2012_subset/checksums.tsv.
_IMAGENET_LISTS = {
    "1pct": _ImagenetList(
        "1percent.txt", "71e82a48ba78252683ae334c4d019ebd5c6e855b9599c1389fbe83eb9549cf17",
        "raw.gith.com_goog-rese_simc_mast_imag_subs"
        "cegqSLp4JSaDrjNMTQGevVxuhVuVmcE4n76D65VJzxc.txt"),
    "10pct": _ImagenetList(
        "10percent.txt", "6d09de11e7bdaf5b1f3b1f249b6183695f97310cdd20f0c03e7235b6b9392091",
        "raw.gith.com_goog-rese_simc_mast_imag_subs"
        "bQneEee9r1sfOx8km2GDaV-XMQzdIPDAPnI1trk5IJE.txt"),
}


def ids_as_text(values):
  """Example ids (bytes from tf.data, or str/int) as str."""
  return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _class_indices(labels, num_classes, rng):
  """Each class's example indices in a seeded random order."""
  return [rng.permutation(np.flatnonzero(labels == c)) for c in range(num_classes)]


def _check_no_empty_class(by_class):
  empty = [c for c, idx in enumerate(by_class) if not len(idx)]
  if empty:
    raise UserError(f"Class {empty[0]} has only 0 training examples ({len(empty)} classes are "
                    "empty), so no labelled subset can hold every class. Check num_classes "
                    "and the dataset's labels, or use --labels=file:PATH.")


def balanced_subset(labels, num_classes, count, seed):
  """Indices (sorted) of `count` examples; per-class counts differ by at most one."""
  if count > len(labels):
    raise UserError(f"Asked for {count} labelled examples but the training split has only "
                    f"{len(labels)}. {_SPEC_HELP}")
  if count < num_classes:
    raise UserError(f"{count} labelled examples cannot cover {num_classes} classes: some class "
                    f"would have no labelled example. Ask for at least {num_classes}.")
  rng = np.random.RandomState(seed)
  by_class = _class_indices(labels, num_classes, rng)
  _check_no_empty_class(by_class)
  per_class = np.full(num_classes, count // num_classes)
  # Which classes get the one extra example is part of the seeded draw.
  per_class[rng.permutation(num_classes)[:count % num_classes]] += 1
  short = [(c, len(idx), n) for c, (idx, n) in enumerate(zip(by_class, per_class))
           if len(idx) < n]
  if short:
    c, have, want = short[0]
    raise UserError(f"Class {c} has only {have} training examples but a class-balanced subset "
                    f"of {count} needs {want} from it ({len(short)} classes are short). Ask "
                    f"for at most {num_classes * min(len(i) for i in by_class)} labels, or "
                    "use --labels=file:PATH.")
  return np.sort(np.concatenate([idx[:n] for idx, n in zip(by_class, per_class)]))


def per_class_subset(labels, num_classes, per_class, seed):
  """Indices (sorted) of exactly `per_class` examples of every class."""
  if per_class < 1:
    raise UserError(f"Asked for {per_class} labelled examples per class; ask for at least 1.")
  rng = np.random.RandomState(seed)
  by_class = _class_indices(labels, num_classes, rng)
  _check_no_empty_class(by_class)
  counts = [len(idx) for idx in by_class]
  if min(counts) < per_class:
    smallest = int(np.argmin(counts))
    raise UserError(f"Asked for {per_class} labelled examples per class, but class {smallest} "
                    f"has only {min(counts)} training examples. Ask for at most {min(counts)} "
                    "per class.")
  return np.sort(np.concatenate([idx[:per_class] for idx in by_class]))


def read_id_file(path):
  """Ids listed in `path`: one per line, or S4L's JSON {"values": [...]}."""
  if not tf.io.gfile.exists(path):
    raise UserError(f"Label file {path} does not exist. It should list one training example "
                    "id (or ImageNet file name, e.g. n01440764_10026.JPEG) per line.")
  with tf.io.gfile.GFile(path) as f:
    text = f.read()
  if text.lstrip().startswith("{"):
    try:
      values = json.loads(text)["values"]
    except (ValueError, KeyError) as e:
      raise UserError(f"Label file {path} looks like JSON but is not S4L's "
                      f'{{"values": [ids]}} format ({e}).') from e
    wanted = [str(v) for v in values]
  else:
    wanted = [line.strip() for line in text.splitlines() if line.strip()]
  if not wanted:
    raise UserError(f"Label file {path} lists no ids.")
  return wanted


def _alternative_keys(ids):
  """Other spellings a list may use for our ids, kept only where they are unambiguous.

  ImageNet lists name files ("n01440764_10026.JPEG") where ids may be paths; CIFAR index
  lists (e.g. SUNCET's) hold integers where TFDS ids are "train_00123".
  """
  spellings = []
  spellings.append([i.replace("\\", "/").rsplit("/", 1)[-1] for i in ids])
  numbered = [re.fullmatch(r"[A-Za-z]+_0*(\d+)", i) for i in ids]
  if all(numbered):
    spellings.append([m.group(1) for m in numbered])
  for keys in spellings:
    if len(set(keys)) == len(keys):
      yield keys


def ids_from_file(path, ids):
  """Sorted indices into `ids` of the examples listed in `path`."""
  return ids_from_list(read_id_file(path), ids, path)


def ids_from_list(wanted, ids, path):
  """Sorted indices into `ids` of the examples `wanted` names (the list `path` holds)."""
  unique = list(dict.fromkeys(wanted))
  if len(unique) < len(wanted):
    logging.warning("Label file %s lists %d ids more than once; using the %d distinct ones.",
                    path, len(wanted) - len(unique), len(unique))
  ids_str = ids_as_text(ids)
  lookup = {i: k for k, i in enumerate(ids_str)}
  missing = [w for w in unique if w not in lookup]
  if missing:
    for keys in _alternative_keys(ids_str):
      extra = {key: k for k, key in enumerate(keys)}
      if sum(w in extra for w in missing) > len(missing) // 2:
        lookup.update(extra)
        break
    missing = [w for w in unique if w not in lookup]
  if missing:
    raise UserError(f"{len(missing)} of the {len(unique)} ids in {path} are not in the training "
                    f"split (e.g. {', '.join(missing[:3])}; the split's ids look like "
                    f"{', '.join(ids_str[:2])}). Check that the file belongs to this dataset.")
  return np.sort(np.array([lookup[w] for w in unique]))


def _sha256(path):
  with tf.io.gfile.GFile(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def _tfds_dirs(dataset_dir):
  dirs = [dataset_dir] if dataset_dir else []
  return dirs + [os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")]


# The file names of a prepared imagenet2012_subset, kept beside its records once read (where
# that dir is writable) and per process, so that a resolve does not read every record again.
SUBSET_FILE_NAMES = "tfssl_file_names.txt"
_subset_file_names = {}  # builder data dir -> file names


def _prepared_imagenet_subset(spec, dataset_dir):
  """(file names of a prepared TFDS imagenet2012_subset/<spec>'s train split, where), or
  None where no TFDS data dir holds it prepared."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  for data_dir in _tfds_dirs(dataset_dir):
    builder = tfds.builder(f"imagenet2012_subset/{spec}", data_dir=data_dir)
    if builder.is_prepared():
      if builder.data_dir not in _subset_file_names:
        _subset_file_names[builder.data_dir] = _read_subset_file_names(builder)
      return _subset_file_names[builder.data_dir], f"{data_dir}/imagenet2012_subset/{spec}"
  return None


def _read_subset_file_names(builder):
  """The train split's file names: from SUBSET_FILE_NAMES beside the records if it lists as
  many as the split holds, else from the records' file_name feature alone (then cached)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  cache = os.path.join(builder.data_dir, SUBSET_FILE_NAMES)
  count = builder.info.splits["train"].num_examples
  if tf.io.gfile.exists(cache):
    with tf.io.gfile.GFile(cache) as f:
      names = f.read().splitlines()
    if len(names) == count:
      return names
  logging.info("Reading the file names of %s's records (once: they are then kept in %s).",
               builder.data_dir, cache)
  dataset = builder.as_dataset(split="train",
                               decoders=tfds.decode.PartialDecoding({"file_name": True}))
  names = [name.decode() for batch in dataset.map(lambda e: e["file_name"]).batch(4096)
           for name in batch.numpy()]
  # Hosts may write at once: each writes its own file and renames it into place.
  partial = f"{cache}.{os.getpid()}.{os.urandom(4).hex()}"
  try:
    with tf.io.gfile.GFile(partial, "w") as f:
      f.write("".join(name + "\n" for name in names))
    tf.io.gfile.rename(partial, cache, overwrite=True)
  except (tf.errors.OpError, OSError) as e:
    if tf.io.gfile.exists(partial):
      tf.io.gfile.remove(partial)
    logging.info("Cannot keep the file names in %s (%s): they are read again in the next "
                 "run.", cache, e)
  return names


def imagenet_subset_ids(spec, ids, dataset_dir=None):
  """Sorted indices into `ids` of TFDS's imagenet2012_subset `spec` (1pct, 10pct): from its
  list file (see imagenet_list_path), else from a prepared imagenet2012_subset/<spec>."""
  path, looked_at = imagenet_list_path(spec, dataset_dir)
  if path:
    return ids_from_file(path, ids)
  prepared = _prepared_imagenet_subset(spec, dataset_dir)
  if prepared:
    names, where = prepared
    return ids_from_list(names, ids, where)
  subset = _IMAGENET_LISTS[spec]
  raise UserError(
      f"--labels={spec} on ImageNet uses the standard list {subset.name} (the one TFDS "
      f"imagenet2012_subset/{spec} and SimCLR use), which is not in --dataset_dir "
      f"{dataset_dir} (looked for {', '.join(looked_at[:2])}), nor prepared as TFDS "
      f"imagenet2012_subset/{spec} in {' or '.join(_tfds_dirs(dataset_dir))}. Copy the "
      f"public file {subset.url} (google-research/simclr imagenet_subsets/{subset.name}) "
      "there, or pass --labels=file:PATH.")


def imagenet_list_path(spec, dataset_dir=None):
  """(where TFDS's imagenet2012_subset list file for `spec` is, in dataset_dir or a TFDS
  download, or None; the paths looked at)."""
  subset = _IMAGENET_LISTS[spec]
  candidates = []
  if dataset_dir:
    candidates += [os.path.join(dataset_dir, subset.name),
                   os.path.join(dataset_dir, "imagenet_subsets", subset.name)]
  candidates += [os.path.join(d, "downloads", subset.tfds_download_name)
                 for d in _tfds_dirs(dataset_dir)]
  for path in candidates:
    if tf.io.gfile.exists(path):
      if _sha256(path) != subset.sha256:
        logging.warning("%s differs from TFDS's imagenet2012_subset %s (sha256 %s): results "
                        "will not be comparable with published %s numbers.", path, spec,
                        subset.sha256, spec)
      return path, candidates
  return None, candidates


def select_labelled_ids(spec, ids, labels, num_classes, seed=0, dataset_name=None,
                        dataset_dir=None):
  """The ids (a subset of `ids`, in their order) of the labelled examples `spec` asks for."""
  ids = np.asarray(ids)
  labels = np.asarray(labels)
  spec = str(spec).strip()
  if spec == "all":
    return ids
  if spec.startswith("file:"):
    return ids[ids_from_file(spec[len("file:"):], ids)]
  if spec in _FRACTIONS:
    if dataset_name in _IMAGENET_NAMES:
      return ids[imagenet_subset_ids(spec, ids, dataset_dir)]
    count = int(round(_FRACTIONS[spec] * len(ids)))
    return ids[balanced_subset(labels, num_classes, count, seed)]
  match = re.fullmatch(r"(\d+)(_per_class)?", spec)
  if not match:
    raise UserError(f"Cannot read --labels={spec}. {_SPEC_HELP}")
  count = int(match.group(1))
  if match.group(2):
    return ids[per_class_subset(labels, num_classes, count, seed)]
  return ids[balanced_subset(labels, num_classes, count, seed)]
