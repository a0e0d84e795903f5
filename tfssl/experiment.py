"""Resolves a config into what a run needs, checking every name and path up front.

Everything here is cheap compared to training, so bad input fails before any model
is built and before anything is written to the workdir.
"""

import dataclasses
import os
from typing import Any, Optional

import numpy as np
import tensorflow as tf

from tfssl import config as config_lib
from tfssl import datasets
from tfssl import export
from tfssl import methods
from tfssl import models
from tfssl import pseudo_labels as pseudo_labels_lib
from tfssl import records
from tfssl.errors import UserError


@dataclasses.dataclass
class Experiment:
  config: Any
  method_cls: type
  source: Any
  num_classes: int
  image_size: int
  labelled_ids: Optional[np.ndarray]  # None: every training example is labelled
  num_labelled: int
  steps_per_epoch: int
  total_steps: int
  # Labels of the train split's examples, in `source.labels_and_ids` order, that replace
  # the dataset's (--pseudo_labels); None: the dataset's own.
  pseudo_labels: Optional[np.ndarray] = None
  init_checkpoint: Optional[str] = None  # --init_from resolved to a checkpoint path

  def new_method(self):
    method = self.method_cls(self.config, self.num_classes, self.image_size)
    method.set_schedule(self.steps_per_epoch, self.total_steps)
    return method

  def labelled_ids_or_all(self):
    if self.labelled_ids is not None:
      return self.labelled_ids
    return self.source.labels_and_ids(self.source.train_split)[0]


def resolve(config):
  """Validates names, paths, dataset and label subset; computes the schedule length."""
  check_paths(_config_paths(config))
  method_cls = methods.get_method(config.method)
  models.MODELS.get(config.model)
  source = datasets.get_source(config.dataset, dataset_dir=config.dataset_dir or None)
  if method_cls.uses_labels(config):
    source.check_labelled(f"--method={config.method}")
  if config.labels != "all":
    source.check_labelled(f"--labels={config.labels}")
  elif not method_cls.uses_labels(config):
    source.train_without_labels()
  num_classes = config.num_classes_override or source.num_classes
  image_size = config.image_size or source.image_size
  method_cls.check_config(config, image_size)

  if config.labels == "all":
    labelled_ids, num_labelled = None, source.num_examples(source.train_split)
  else:
    ids, labels = source.labels_and_ids(source.train_split)
    labelled_ids = datasets.select_labelled_ids(
        config.labels, ids, labels, source.num_classes, seed=config.seed,
        dataset_name=config.dataset, dataset_dir=config.dataset_dir or None)
    num_labelled = len(labelled_ids)

  if method_cls.uses_support_stream(config):
    ids, labels = source.labels_and_ids(source.train_split)
    if labelled_ids is not None:
      labels = labels[np.isin(datasets.ids_as_text(ids), datasets.ids_as_text(labelled_ids))]
    datasets.check_support(labels, config.support_classes, config.support_images_per_class)

  pseudo_labels = None
  if config.pseudo_labels:
    ids, _ = source.labels_and_ids(source.train_split)
    pseudo_labels = pseudo_labels_lib.check_matches(
        pseudo_labels_lib.read(config.pseudo_labels), config.pseudo_labels,
        dataset=config.dataset, split=source.train_split, ids=ids, num_classes=num_classes)
  init_checkpoint = None
  if config.init_from:
    init_checkpoint = find_checkpoint(config.init_from, "--init_from")
    check_backbone_function(config, init_checkpoint)

  if config.batch_size <= 0:
    raise UserError(f"batch_size must be positive, got {config.batch_size}.")
  steps_per_epoch = method_cls.steps_per_epoch(config, num_labelled,
                                               source.num_examples(source.unlabelled_split))
  if config.train_steps > 0:
    total_steps = int(config.train_steps)
  elif config.train_epochs == 0:
    total_steps = 0  # Exports the initial weights: the random-init baseline of a network.
  else:
    total_steps = max(int(round(config.train_epochs * steps_per_epoch)), 1)
  return Experiment(config=config, method_cls=method_cls, source=source,
                    num_classes=num_classes, image_size=image_size,
                    labelled_ids=labelled_ids, num_labelled=num_labelled,
                    steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                    pseudo_labels=pseudo_labels, init_checkpoint=init_checkpoint)


def dataset_paths(dataset, dataset_dir):
  """(path, flag) of where `dataset` is read from."""
  paths = [(dataset_dir, "--dataset_dir")]
  for prefix in (datasets.FOLDER_PREFIX, datasets.CSV_PREFIX):
    if dataset and dataset.startswith(prefix):
      paths.append((dataset[len(prefix):], f"--dataset={prefix}"))
  return paths


def _config_paths(config):
  """(path, flag) of every file or dir the config names."""
  paths = dataset_paths(config.dataset, config.dataset_dir) + [
      (config.pseudo_labels, "--pseudo_labels"), (config.init_from, "--init_from")]
  if config.labels and config.labels.startswith("file:"):
    paths.append((config.labels[len("file:"):], "--labels=file:"))
  return paths


def check_paths(paths):
  """Probes every (path, flag) that is set (see path_exists), so an unreachable one fails
  before any long work."""
  for path, what in paths:
    if path:
      path_exists(path, what)


def path_exists(path, what):
  """tf.io.gfile.exists(path), but a path that cannot be reached at all (a gs:// bucket
  without credentials or network, a dir without permission) is one UserError naming the
  flag, the path and what to do, raised before anything is written."""
  try:
    return tf.io.gfile.exists(path)
  except tf.errors.OpError as e:
    detail = f"{e.__class__.__name__}: {(e.message or str(e)).strip().splitlines()[0][:300]}"
    if path.startswith("gs://"):
      advice = ("Google Cloud Storage needs credentials that may read the bucket (and write a "
                "workdir): run `gcloud auth application-default login`, or set "
                "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file; on a TPU VM or "
                "GCE VM, give its service account access to the bucket and the VM the "
                "storage (cloud-platform) scope. The machine must also reach "
                "www.googleapis.com.")
    else:
      advice = ("Check the path, your permissions on it and, for a remote filesystem, the "
                "network and credentials.")
    raise UserError(f"{what} {path} cannot be accessed ({detail}). {advice} "
                    "Nothing was written.") from e


def find_checkpoint(path, what):
  """The newest checkpoint of a run: `path` is its workdir, its checkpoints dir, a
  checkpoint prefix (WORKDIR/checkpoints/ckpt-1000), or an exported module (a module dir
  or WORKDIR/export/hub, whose newest step is taken), whose variables are returned."""
  if tf.io.gfile.exists(path + ".index"):
    return path
  for directory in (os.path.join(path, "checkpoints"), path):
    if tf.io.gfile.isdir(directory):
      latest = tf.train.latest_checkpoint(directory)
      if latest:
        return latest
  if tf.io.gfile.isdir(path):
    try:
      return os.path.join(export.resolve_module_dir(path), export.MODULE_VARIABLES)
    except UserError:
      pass
  state = "does not exist" if not tf.io.gfile.exists(path) else "holds no checkpoint or module"
  raise UserError(f"{what} {path} {state}. Pass the workdir of a finished run (its "
                  "checkpoints are in WORKDIR/checkpoints/), a checkpoint path "
                  "(WORKDIR/checkpoints/ckpt-STEP) or an exported module "
                  "(WORKDIR/export/hub/STEP); train that run first if it is missing.")


def _saved_config(checkpoint_path):
  """The config of the run (or module) a checkpoint found by `find_checkpoint` belongs to,
  or None where it is not recorded."""
  if checkpoint_path.endswith(export.MODULE_VARIABLES):
    module_dir = checkpoint_path[:-len(export.MODULE_VARIABLES)]
    return export.read_module_info(module_dir).get("config")
  path = os.path.join(os.path.dirname(os.path.dirname(checkpoint_path)), "config.json")
  return read_config_json(path) if tf.io.gfile.exists(path) else None


def check_backbone_function(config, checkpoint_path):
  """Weights from --init_from see their inputs as they were trained: a run starting from
  them must build its backbone with the same `config.BACKBONE_FUNCTION_KEYS` (modules
  converted from PyTorch releases standardise with torchvision's ImageNet mean/std, those
  of SimCLR's and FNC's TF releases take raw pixels and pool their stem with SAME padding)."""
  saved = _saved_config(checkpoint_path) or {}
  differences, fixes = [], []
  for key in config_lib.BACKBONE_FUNCTION_KEYS:
    theirs, ours = saved.get(key, ""), config.get(key)
    if theirs != ours:
      differences.append(f"{key}={theirs!r} there, {ours!r} here")
      fixes.append(f"add --config.{key}={theirs}" if theirs else f"drop --config.{key}={ours}")
  if differences:
    raise UserError(
        f"--init_from {config.init_from} was trained with another backbone function than "
        f"this run builds ({'; '.join(differences)}): {', '.join(fixes)} so the weights "
        "compute what they learnt.")


def check_batch_divides(batch_size, num_replicas, what="batch_size"):
  if batch_size % num_replicas:
    raise UserError(f"{what}={batch_size} does not split evenly over {num_replicas} replicas; "
                    f"use a multiple of {num_replicas}.")


def read_config_json(path):
  """A workdir's recorded config; one UserError if the file does not parse."""
  return records.read_json_record(
      path, "it was cut short or damaged. Restore it from a copy, or move it aside and "
      "rerun: the run records its config again and resumes from its checkpoints (one of "
      "another method or model is still refused). Nothing was changed.")


def check_workdir(workdir, config):
  """Refuses a workdir whose run has another method/model/dataset; returns its saved config."""
  path_exists(workdir, "--workdir")  # one clear message if it cannot be reached at all
  path = os.path.join(workdir, "config.json")
  if not tf.io.gfile.exists(path):
    return None
  saved = read_config_json(path)
  mismatch = config_lib.structural_mismatch(saved, config)
  if mismatch:
    details = ", ".join(f"{k}: workdir has {a!r}, this run asks for {b!r}"
                        for k, (a, b) in mismatch.items())
    raise UserError(f"Workdir {workdir} holds a run of another configuration ({details}). "
                    "Its checkpoints cannot be resumed with this config: use a new --workdir, "
                    "or repeat the original flags to resume it. Nothing was changed.")
  return saved
