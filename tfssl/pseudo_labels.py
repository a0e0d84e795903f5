"""Pseudo-label files: which label each training image gets, and what made them.

`python -m tfssl.label` writes one; `--pseudo_labels=PATH` makes the trainer train on it.
A file is JSON: {"format", "dataset", "split", "num_classes", "ids", "labels", ...} with
one id and label per image of the split; extra keys record the module, the labelled
subset that kept its true labels, and how predictions were averaged.
"""

import json

import numpy as np
import tensorflow as tf

from tfssl import datasets
from tfssl import records
from tfssl.errors import UserError

FORMAT = "tfssl-pseudo-labels-v1"


def write(path, *, ids, labels, dataset, split, num_classes, **details):
  record = dict(details, format=FORMAT, dataset=dataset, split=split,
                num_classes=int(num_classes), num_examples=len(ids),
                ids=datasets.ids_as_text(ids),
                labels=[int(label) for label in labels])
  return records.write_json(path, record, indent=None)  # one id and label per image


def read(path):
  if not tf.io.gfile.exists(path):
    raise UserError(f"Pseudo-label file {path} does not exist. Make it from a trained run with "
                    f"python -m tfssl.label --hub_module=RUN/export/hub --out={path}.")
  with tf.io.gfile.GFile(path) as f:
    try:
      record = json.load(f)
    except ValueError as e:
      raise UserError(f"Pseudo-label file {path} is not JSON ({e}); it may be truncated. "
                      "Make it again with python -m tfssl.label.") from e
  if not isinstance(record, dict) or record.get("format") != FORMAT:
    raise UserError(f"{path} is not a pseudo-label file of python -m tfssl.label "
                    f"(no \"format\": \"{FORMAT}\").")
  return record


def check_matches(record, path, *, dataset, split, ids, num_classes):
  """The file's labels in the order of `ids`, after checking it belongs to this data."""
  where = f"Pseudo-label file {path} was made for dataset '{record.get('dataset')}'"
  if record.get("dataset") != dataset:
    raise UserError(f"{where}, but this run trains on '{dataset}'. Label this dataset with "
                    "python -m tfssl.label --dataset=..., or pass the matching file.")
  if record.get("num_classes") != num_classes:
    raise UserError(f"{where} with {record.get('num_classes')} classes, but this run's "
                    f"classifier has {num_classes}. Pass the matching file.")
  file_ids = record["ids"]
  labels = np.asarray(record["labels"], np.int64)
  if len(labels) != len(file_ids):
    raise UserError(f"Pseudo-label file {path} lists {len(file_ids)} ids but {len(labels)} "
                    "labels; it is damaged. Make it again with python -m tfssl.label.")
  lookup = dict(zip(file_ids, labels))
  ids = datasets.ids_as_text(ids)
  missing = [i for i in ids if i not in lookup]
  extra = len(set(file_ids) - set(ids))
  if missing or extra:
    raise UserError(
        f"{where} split '{record.get('split')}' ({len(file_ids)} images), which does not "
        f"match this run's {split} split ({len(ids)} images): {len(missing)} of its images "
        f"have no pseudo-label (e.g. {', '.join(missing[:3]) or '-'}) and {extra} labelled "
        "ids are not in it. Check --dataset_dir, or label this split again with "
        "python -m tfssl.label.")
  ordered = np.array([lookup[i] for i in ids], np.int64)
  if ordered.min() < 0 or ordered.max() >= num_classes:
    raise UserError(f"Pseudo-label file {path} has labels outside [0, {num_classes}); "
                    "make it again with python -m tfssl.label.")
  return ordered


def relabel_fn(ids, labels):
  """features -> features with `label` replaced by the pseudo-label of `id` (in tf.data)."""
  table = datasets.id_lookup_table(ids, np.asarray(labels, np.int64), -1)

  def relabel(features):
    label = tf.cast(table.lookup(features["id"]), features["label"].dtype)
    return dict(features, label=label)

  return relabel
