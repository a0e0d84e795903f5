"""Labelled subsets: `all | 1pct | 10pct | N | N_per_class | file:PATH`, deterministic per seed."""

import json
import os
import re

import numpy as np
import tensorflow as tf

from tfssl.errors import UserError

_FRACTIONS = {"1pct": 0.01, "10pct": 0.10}
# TFDS's imagenet2012_subset lists (SimCLR's imagenet_subsets/*.txt).
_IMAGENET_LISTS = {"1pct": "1percent.txt", "10pct": "10percent.txt"}
_SPEC_HELP = "Use all, 1pct, 10pct, N (e.g. 4000), N_per_class (e.g. 400_per_class) or file:PATH."


def _as_str(values):
  return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values])


def _per_class_indices(labels, num_classes, rng):
  return [rng.permutation(np.flatnonzero(labels == c)) for c in range(num_classes)]


def balanced_subset(labels, num_classes, count, seed):
  """Indices of `count` examples, per-class counts differing by at most one."""
  if count > len(labels):
    raise UserError(f"Asked for {count} labelled examples but the training split has only "
                    f"{len(labels)}. {_SPEC_HELP}")
  if count < num_classes:
    raise UserError(f"{count} labelled examples cannot cover {num_classes} classes: some class "
                    f"would have no labelled example. Ask for at least {num_classes}.")
  rng = np.random.RandomState(seed)
  by_class = _per_class_indices(labels, num_classes, rng)
  per_class = np.full(num_classes, count // num_classes)
  per_class[rng.permutation(num_classes)[:count % num_classes]] += 1
  short = [(c, len(idx), n) for c, (idx, n) in enumerate(zip(by_class, per_class)) if len(idx) < n]
  if short:
    c, have, want = short[0]
    raise UserError(f"Class {c} has only {have} training examples but a class-balanced subset "
                    f"of {count} needs {want} from it ({len(short)} classes are short). "
                    "Ask for fewer labels.")
  return np.sort(np.concatenate([idx[:n] for idx, n in zip(by_class, per_class)]))


def per_class_subset(labels, num_classes, per_class, seed):
  rng = np.random.RandomState(seed)
  by_class = _per_class_indices(labels, num_classes, rng)
  counts = [len(idx) for idx in by_class]
  if min(counts) < per_class:
    smallest = int(np.argmin(counts))
    raise UserError(f"Asked for {per_class} labelled examples per class, but class {smallest} "
                    f"has only {min(counts)} training examples. Ask for at most {min(counts)} "
                    "per class.")
  return np.sort(np.concatenate([idx[:per_class] for idx in by_class]))


def read_id_file(path):
  """One id per line, or S4L's JSON {"values": [...]}."""
  if not tf.io.gfile.exists(path):
    raise UserError(f"Label file {path} does not exist. It should list one training example "
                    "id (or ImageNet file name) per line.")
  with tf.io.gfile.GFile(path) as f:
    text = f.read()
  if text.lstrip().startswith("{"):
    return [str(v) for v in json.loads(text)["values"]]
  return [line.strip() for line in text.splitlines() if line.strip()]


def ids_from_file(path, ids):
  """The dataset ids named in `path`; ImageNet lists name files, matched by base name."""
  wanted = read_id_file(path)
  ids_str = _as_str(ids)
  lookup = {i: k for k, i in enumerate(ids_str)}
  if not all(w in lookup for w in wanted[:100]):
    lookup.update({os.path.basename(i): k for k, i in enumerate(ids_str)})
  missing = [w for w in wanted if w not in lookup]
  if missing:
    raise UserError(f"{len(missing)} of the {len(wanted)} ids in {path} are not in the training "
                    f"split (e.g. {', '.join(missing[:3])}). Check that the file belongs to "
                    "this dataset.")
  return np.sort(np.array([lookup[w] for w in wanted]))


def _imagenet_list(spec, dataset_dir):
  name = _IMAGENET_LISTS[spec]
  for folder in filter(None, (dataset_dir, os.path.join(dataset_dir or "", "imagenet_subsets"))):
    path = os.path.join(folder, name)
    if tf.io.gfile.exists(path):
      return path
  raise UserError(
      f"--labels={spec} on ImageNet uses TFDS's imagenet2012_subset list {name} "
      f"(google-research/simclr imagenet_subsets/{name}), which is not in --dataset_dir "
      f"{dataset_dir}. Put the file there, or pass --labels=file:PATH.")


def select_labelled_ids(spec, ids, labels, num_classes, seed=0, dataset_name=None,
                        dataset_dir=None):
  """The ids of the labelled examples that `spec` asks for."""
  ids = np.asarray(ids)
  labels = np.asarray(labels)
  spec = str(spec).strip()
  if spec == "all":
    return ids
  if spec.startswith("file:"):
    return ids[ids_from_file(spec[len("file:"):], ids)]
  if spec in _FRACTIONS:
    if dataset_name == "imagenet":
      return ids[ids_from_file(_imagenet_list(spec, dataset_dir), ids)]
    count = int(round(_FRACTIONS[spec] * len(ids)))
    return ids[balanced_subset(labels, num_classes, count, seed)]
  match = re.fullmatch(r"(\d+)(_per_class)?", spec)
  if not match:
    raise UserError(f"Cannot read --labels={spec}. {_SPEC_HELP}")
  count = int(match.group(1))
  if match.group(2):
    return ids[per_class_subset(labels, num_classes, count, seed)]
  return ids[balanced_subset(labels, num_classes, count, seed)]
