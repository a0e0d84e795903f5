"""The single trainer: any registered method on TPU, GPUs or CPU through `tf.distribute`.

    python -m tfssl.trainer --method=supervised --model=resnet18_v2 --dataset=digits \
        --workdir=/tmp/run --config.train_steps=500
    python -m tfssl.trainer ... --run_eval   # follows the workdir's checkpoints, evaluates each

Workdir layout: config.json, checkpoints/, summaries/ (the config as hparams),
summaries/{train,eval}/, export/hub/<step>/, eval/results.json.
"""

import functools
import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import flags
from absl import logging
from tensorflow.core.protobuf import trackable_object_graph_pb2

from tfssl import cli
from tfssl import config as config_lib
from tfssl import datasets
from tfssl import diagnostics
from tfssl import distribute
from tfssl import ema as ema_lib
from tfssl import experiment as experiment_lib
from tfssl import export as export_lib
from tfssl import hparams as hparams_lib
from tfssl import lease as lease_lib
from tfssl import methods
from tfssl import online_knn
from tfssl import optim
from tfssl import preemption
from tfssl import pseudo_labels as pseudo_labels_lib
from tfssl import records
from tfssl.errors import NonFiniteLossError, Preempted, UserError

SUM = tf.distribute.ReduceOp.SUM


def workdir_paths(workdir):
  return {
      "config": os.path.join(workdir, "config.json"),
      "checkpoints": os.path.join(workdir, "checkpoints"),
      "summaries": os.path.join(workdir, "summaries"),  # the run's hparams (hparams.py)
      "train_summaries": os.path.join(workdir, "summaries", "train"),
      "eval_summaries": os.path.join(workdir, "summaries", "eval"),
      "export": os.path.join(workdir, "export", "hub"),
      "eval_results": os.path.join(workdir, "eval", "results.json"),
  }


def _set_precision(config):
  if config.precision not in ("float32", "mixed_bfloat16"):
    raise UserError(f"Unknown precision '{config.precision}'. Known: float32, mixed_bfloat16.")
  keras.mixed_precision.set_global_policy(config.precision)


def checkpoint_damage(path):
  """Why the checkpoint at `path` cannot be read (its index, a shard, a tensor's bytes), or
  None if every tensor in it reads: then a failed restore means it is another run's."""
  try:
    reader = tf.compat.v1.train.NewCheckpointReader(path)
    for name in reader.get_variable_to_shape_map():
      reader.get_tensor(name)
  # What missing or cut bytes raise; other errors (a network, a permission) are not damage
  # and go up unchanged rather than make the run fall back to an older checkpoint.
  except (IndexError, tf.errors.DataLossError, tf.errors.NotFoundError,
          tf.errors.OutOfRangeError) as e:
    return f"{e.__class__.__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"
  return None


def read_eval_results(path):
  """The --run_eval results recorded in `path` ({} if there are none). An unreadable file
  (cut short, damaged) is copied aside and the steps whose results still parse are kept,
  so the evaluator starts a new file rather than losing them or stopping."""
  if not tf.io.gfile.exists(path):
    return {}
  with tf.io.gfile.GFile(path, "rb") as f:
    raw = f.read()
  try:
    return json.loads(raw)
  except ValueError as e:
    copy = _unreadable_copy_name(path)
    tf.io.gfile.copy(path, copy, overwrite=True)
    kept = _complete_entries(raw.decode("utf-8", errors="replace"))
    logging.warning("%s cannot be read (%s): copied it to %s and kept the results of steps "
                    "%s that still parse; the others' are only in that copy.", path, e, copy,
                    ", ".join(kept) or "none")
    return kept


def _unreadable_copy_name(path):
  """Where an unreadable record is kept, beside it."""
  return f"{path}.unreadable-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def _complete_entries(text):
  """The "key": value pairs of a JSON object cut short that parse whole, in order."""
  decoder, entries, position = json.JSONDecoder(), {}, text.find("{") + 1
  while position > 0:
    try:
      key, position = decoder.raw_decode(text, _skip_blank(text, position, ","))
      position = _skip_blank(text, position, ":")
      value, position = decoder.raw_decode(text, _skip_blank(text, position))
    except (ValueError, IndexError):
      break
    if isinstance(key, str):
      entries[key] = value
  return entries


def _skip_blank(text, position, separator=""):
  """Past whitespace and one `separator` (if given and present) from `position`."""
  while position < len(text) and text[position] in " \t\r\n" + separator:
    position += 1
  return position


def make_train_dataset_fn(exp, method, start_step=0):
  """`distribute_datasets_from_function` input: one pipeline per host, per-replica batches;
  resumed at `start_step` (each pipeline continues its stream after the batches its
  replicas consumed in the steps before)."""
  config = exp.config

  def dataset_fn(input_context):
    per_replica = input_context.get_per_replica_batch_size(config.batch_size)
    start_batch = start_step * (input_context.num_replicas_in_sync
                                // input_context.num_input_pipelines)
    common = dict(seed=config.seed, input_context=input_context, start_batch=start_batch)
    train_preprocess = method.train_preprocess
    if exp.pseudo_labels is not None:
      relabel = pseudo_labels_lib.relabel_fn(
          exp.source.labels_and_ids(exp.source.train_split)[0], exp.pseudo_labels)
      train_preprocess = lambda features, seed: method.train_preprocess(relabel(features), seed)
    if method.support_stream:
      support = datasets.support_dataset(
          exp.source, keep_ids=exp.labelled_ids_or_all(), classes_per_step=config.support_classes,
          images_per_class=config.support_images_per_class, preprocess_fn=train_preprocess,
          seed=config.seed, input_context=input_context, start_step=start_step)
      if method.input_mode == "support":
        return support
      unsup = datasets.train_dataset(
          exp.source, batch_size=per_replica, preprocess_fn=method.unsup_preprocess,
          shuffle_buffer=config.shuffle_buffer, seed=config.seed + 1,
          input_context=input_context, split=exp.source.unlabelled_split,
          start_batch=start_batch)
      return datasets.zip_streams(support, unsup)
    if method.input_mode == "two_streams":
      return datasets.two_stream_dataset(
          exp.source, sup_batch_size=per_replica,
          unsup_batch_size=input_context.get_per_replica_batch_size(
              methods.base.unsup_batch_size(config)),
          sup_preprocess_fn=train_preprocess,
          unsup_preprocess_fn=method.unsup_preprocess,
          sup_ids=exp.labelled_ids, shuffle_buffer=config.shuffle_buffer, **common)
    return datasets.train_dataset(
        exp.source, batch_size=per_replica, preprocess_fn=train_preprocess,
        keep_ids=exp.labelled_ids, shuffle_buffer=config.shuffle_buffer,
        cache=config.cache_dataset, **common)

  return dataset_fn


def _image_grid(images, max_images):
  images = images[:max_images]
  count = int(images.shape[0])
  cols = int(math.ceil(math.sqrt(count)))
  rows = int(math.ceil(count / cols))
  pad = rows * cols - count
  images = tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 1.0)
  if pad:
    images = tf.concat([images, tf.zeros([pad] + images.shape[1:].as_list())], 0)
  h, w, c = images.shape[1:]
  grid = tf.reshape(images, [rows, cols, h, w, c])
  grid = tf.transpose(grid, [0, 2, 1, 3, 4])
  return tf.reshape(grid, [1, rows * h, cols * w, c])


class Trainer:
  """Builds the method, optimizer, checkpoint and input for one run in `workdir`
  (`lease`: the chief's lease on it, checked at every host loop)."""

  def __init__(self, exp, workdir, strategy, lease=None):
    self.lease = lease
    self.exp = exp
    self.config = exp.config
    self.workdir = workdir
    self.strategy = strategy
    self.paths = workdir_paths(workdir)
    self.chief = distribute.is_chief(strategy)
    experiment_lib.check_batch_divides(self.config.batch_size, strategy.num_replicas_in_sync)

    _set_precision(self.config)
    # The same seed gives the same initial weights: a `train_epochs=0` run is exactly the
    # starting point of a trained run with that seed, and reruns reproduce.
    keras.utils.set_random_seed(self.config.seed)
    with strategy.scope():
      self.method = exp.new_method()
      self._check_stream_batches()
      if distribute.is_tpu(strategy):
        self.method.jit_compile = False  # TPUStrategy compiles the whole step anyway.
      elif (strategy.num_replicas_in_sync > 1 and self.method.jit_compile
            and (self.config.sync_bn or self.method.gathers_across_replicas)):
        logging.warning("The step exchanges tensors between replicas (%s), which XLA off TPU "
                        "cannot compile: running the step without jit_compile.",
                        "synchronized batch norm" if self.config.sync_bn
                        else "cross-replica gather")
        self.method.jit_compile = False
      self.method.build()
      schedule = optim.build_schedule(self.config, self.config.batch_size,
                                      exp.steps_per_epoch, exp.total_steps)
      self.schedule = schedule
      self.optimizer = optim.build_optimizer(self.config, schedule, exp.total_steps)
      self.optimizer.build(self.method.trainable_variables)
      self.ema = make_weight_average(self.method, exp)
      state = dict(self.method.trackables(), **({"ema": self.ema} if self.ema else {}))
      self.checkpoint = tf.train.Checkpoint(optimizer=self.optimizer, **state)
    self.history = []  # (step, metrics) after every host loop of this process
    # Only the chief keeps checkpoints (and chooses the one to resume from).
    self.manager = None

    def open_manager():
      self.manager = self._checkpoint_manager()

    distribute.agree(strategy, open_manager if self.chief else lambda: 0,
                     "opening the workdir's checkpoints")
    # Every task of a job of several hosts takes part in each save (reading a variable may
    # be a collective), but only the chief's copy is kept.
    self.scratch_dir = None if self.chief else os.path.join(
        workdir, f".scratch_{distribute.task_name(strategy)}")

  def _check_stream_batches(self):
    replicas = self.strategy.num_replicas_in_sync
    if self.method.input_mode == "two_streams" and not self.method.support_stream:
      experiment_lib.check_batch_divides(methods.base.unsup_batch_size(self.config), replicas,
                                         "unsup_batch_size")
    if self.method.support_stream:
      experiment_lib.check_batch_divides(
          self.config.support_classes * self.config.support_images_per_class, replicas,
          "support_classes x support_images_per_class")

  def _checkpoint_manager(self):
    """The manager of the workdir's checkpoints. A state file it cannot read (bytes that
    are not text) is moved aside: the checkpoints it listed are found by their files."""
    make = lambda: tf.train.CheckpointManager(
        self.checkpoint, self.paths["checkpoints"], max_to_keep=self.config.keep_checkpoints,
        step_counter=self.optimizer.iterations)
    try:
      return make()
    except ValueError as e:  # a UnicodeDecodeError; text that does not parse reads as none
      state = os.path.join(self.paths["checkpoints"], "checkpoint")
      copy = _unreadable_copy_name(state)
      tf.io.gfile.rename(state, copy, overwrite=True)
      logging.warning("The checkpoint state file %s cannot be read (%s): moved it to %s.",
                      state, e, copy)
      return make()

  @property
  def step(self):
    return int(self.optimizer.iterations.numpy())

  def restore(self):
    """Resumes from the newest checkpoint that can be read (an unreadable one, cut short or
    damaged, is logged and the next older one tried); returns the step it resumed at.

    On a job of several hosts the chief chooses the checkpoint and the other tasks restore
    that one, so that every task resumes at the same step with the same weights."""
    chosen = distribute.agree(
        self.strategy, self._restore_newest_readable if self.chief else lambda: 0,
        "choosing the checkpoint to resume from")
    if chosen < 0:
      # Every task together, outside agree: --init_from may create variables (the Polyak
      # averages it reads), which on several hosts is a collective.
      self._initialize()
    else:
      distribute.agree(self.strategy, (lambda: 0) if self.chief else
                       lambda: self._restore_checkpoint(chosen),
                       "restoring the chief's checkpoint")
    return self.step

  def _checkpoints_newest_first(self):
    """The manager's checkpoints and the other ckpt-N of the directory that have an index,
    by step, newest first: its state file (checkpoints/checkpoint), which lists them, may
    be missing, damaged or older than the newest save (cut off between the two writes)."""
    step_of = lambda path: int(path.rsplit("-", 1)[-1])
    listed = list(self.manager.checkpoints)
    names = {os.path.basename(path) for path in listed}
    prefixes = [path[:-len(".index")] for path in
                tf.io.gfile.glob(os.path.join(self.paths["checkpoints"], "ckpt-*.index"))]
    unlisted = [path for path in prefixes if os.path.basename(path) not in names
                and path.rsplit("-", 1)[-1].isdigit()]
    if unlisted:
      logging.warning(
          "The checkpoint state file %s %s, but %s are there: resuming from the newest "
          "checkpoint that reads (those it does not list are not removed by "
          "keep_checkpoints).", os.path.join(self.paths["checkpoints"], "checkpoint"),
          "does not list them" if listed else "is missing or cannot be read",
          ", ".join(os.path.basename(path) for path in sorted(unlisted, key=step_of)))
    return sorted(listed + unlisted, key=step_of, reverse=True)

  def _move_aside(self, damaged_path):
    """Moves a damaged checkpoint's files into checkpoints/damaged/, where the save of the
    same step, once training gets there again, does not overwrite them."""
    aside = os.path.join(self.paths["checkpoints"], "damaged")
    tf.io.gfile.makedirs(aside)
    for name in tf.io.gfile.glob(damaged_path + ".*"):
      tf.io.gfile.rename(name, os.path.join(aside, os.path.basename(name)), overwrite=True)
    return aside

  def _initialize(self):
    """The start of a run without checkpoints: --init_from's weights, or the seed's."""
    if self.exp.init_checkpoint:
      initialize_from(self.method, self.exp.init_checkpoint, self.strategy)
      self.method.after_initialize()
      if self.ema:  # the average starts at the starting weights, not the random ones
        self.ema.reset()

  def _restore_checkpoint(self, step):
    self.checkpoint.restore(os.path.join(self.paths["checkpoints"], f"ckpt-{step}")) \
        .assert_existing_objects_matched()

  def _restore_newest_readable(self):
    """Restores the newest checkpoint that reads; returns its step (-1: there is none)."""
    newest_first = self._checkpoints_newest_first()
    if not newest_first:
      return -1
    damaged = []
    for path in newest_first:
      try:
        self.checkpoint.restore(path).assert_existing_objects_matched()
      except (AssertionError, ValueError, IndexError, tf.errors.OpError) as e:
        reason = checkpoint_damage(path)
        if reason is None:
          raise UserError(
              f"Checkpoint {path} does not match this run's method/model "
              f"({e.__class__.__name__}: {(str(e).splitlines() or [''])[0][:300]}). Use a new "
              "--workdir or the original config. Its checkpoints were not changed.") from e
        logging.warning("Checkpoint %s cannot be read (%s); trying the one before it.",
                        path, reason)
        damaged.append((path, reason))
        continue
      if damaged:
        aside = [self._move_aside(damaged_path) for damaged_path, _ in damaged][0]
        logging.warning("Resumed from %s at step %d: the newer %s could not be read; their "
                        "files were moved to %s.", path, self.step,
                        ", ".join(f"{os.path.basename(p)} ({r})" for p, r in damaged), aside)
      else:
        logging.info("Resumed from %s at step %d.", path, self.step)
      return int(path.rsplit("-", 1)[-1])
    raise UserError(
        f"No checkpoint in {self.paths['checkpoints']} can be read: "
        f"{'; '.join(f'{os.path.basename(p)} ({r})' for p, r in damaged)}. "
        "They were cut short or damaged (a copy or upload interrupted, a bucket object "
        "lost). Restore them from a copy, or move the checkpoints directory aside to train "
        "from step 0. Nothing was deleted.")

  def _train_loop_fn(self):
    strategy, method, optimizer, ema = self.strategy, self.method, self.optimizer, self.ema

    def one_step(iterator):
      per_replica = strategy.run(method.train_step, args=(next(iterator), optimizer))
      if ema:
        ema.update()
      return {k: strategy.reduce(SUM, v, axis=None) for k, v in per_replica.items()}

    @tf.function
    def train_loop(iterator, num_steps):
      totals = one_step(iterator)
      first_bad = tf.where(tf.math.is_finite(totals["loss"]),
                           tf.constant(-1, tf.int64), tf.cast(optimizer.iterations, tf.int64))
      for _ in tf.range(num_steps - 1):
        metrics = one_step(iterator)
        bad_now = tf.logical_and(first_bad < 0, tf.logical_not(tf.math.is_finite(metrics["loss"])))
        first_bad = tf.where(bad_now, tf.cast(optimizer.iterations, tf.int64), first_bad)
        totals = {k: totals[k] + metrics[k] for k in totals}
      mean = {k: v / tf.cast(num_steps, v.dtype) for k, v in totals.items()}
      return mean, first_bad

    return train_loop

  def _on_every_task(self, write, what):
    """`write()` on every task (it may read variables, a collective), then the job agrees
    that it worked: a chief whose write failed (a full disk, a bucket refusing) must not
    leave the other tasks waiting for it in the next step."""
    error, result = None, None
    try:
      result = write()
    except Exception as e:  # pylint: disable=broad-except  # re-raised by agree, job-wide
      error = e

    def raise_error():
      if error is not None:
        raise error

    distribute.agree(self.strategy, raise_error, what)
    return result

  def save_checkpoint(self):
    return self._on_every_task(self._save_checkpoint, "saving a checkpoint")

  def export(self):
    return self._on_every_task(self._export, "exporting the hub module")

  def _save_checkpoint(self):
    if self.chief:
      return self.manager.save(checkpoint_number=self.step)
    scratch = tf.train.CheckpointManager(
        self.checkpoint, os.path.join(self.scratch_dir, "checkpoints"), max_to_keep=1)
    scratch.save(checkpoint_number=self.step)
    tf.io.gfile.rmtree(self.scratch_dir)
    return os.path.join(self.paths["checkpoints"], f"ckpt-{self.step}")  # the chief's

  def _write_image_summary(self, dataset_fn):
    dataset = dataset_fn(tf.distribute.InputContext())
    batch = next(iter(dataset))
    images = self.method.summary_images(batch)
    tf.summary.image("train/augmented_images", _image_grid(images, self.config.summary_images),
                     step=self.step)

  def _export(self):
    export_dir = os.path.join(self.scratch_dir or self.paths["export"], str(self.step))
    info = dict(method=self.config.method, model=self.config.model,
                dataset=self.config.dataset, dataset_dir=self.config.dataset_dir,
                labels=self.config.labels, image_size=self.exp.image_size,
                num_classes=self.exp.num_classes, step=self.step,
                config=self.config.to_dict())
    if self.ema:
      info["polyak_averaging"] = True
      with self.ema.applied():
        export_lib.export_hub_module(self.method, export_dir, info)
    else:
      export_lib.export_hub_module(self.method, export_dir, info)
    if not self.chief:
      tf.io.gfile.rmtree(self.scratch_dir)
      return os.path.join(self.paths["export"], str(self.step))
    logging.info("Exported hub module to %s", export_dir)
    return export_dir

  def train(self):
    """Runs until total_steps, checkpointing and exporting; returns the last metrics."""
    config, exp = self.config, self.exp
    start_step = self.restore()
    if start_step >= exp.total_steps:
      logging.info("Workdir already trained to step %d (of %d).", start_step, exp.total_steps)
      # The module's info is written last: an export cut short by preemption (or whose
      # info was damaged) is redone.
      if not export_lib.has_module_info(os.path.join(self.paths["export"], str(start_step))):
        self.export()
      return {}
    dataset_fn = make_train_dataset_fn(exp, self.method, start_step)
    dist_dataset = self.strategy.distribute_datasets_from_function(
        dataset_fn, self._input_options())
    iterator = iter(dist_dataset)
    train_loop = self._train_loop_fn()
    writer = (tf.summary.create_file_writer(self.paths["train_summaries"]) if self.chief
              else tf.summary.create_noop_writer())
    with writer.as_default():
      if start_step == 0 and config.summary_images:
        self._write_image_summary(dataset_fn)
      try:
        with preemption.PreemptionWatcher(self.strategy) as watcher:
          metrics = self._run(train_loop, iterator, start_step, watcher)
      finally:
        writer.flush()
    return metrics

  def _input_options(self):
    if not self.config.input_pipeline_per_replica:
      return None
    if type(self.strategy) is not tf.distribute.MirroredStrategy:  # pylint: disable=unidiomatic-typecheck
      raise UserError(
          "input_pipeline_per_replica needs MirroredStrategy (several devices of one host); "
          f"this job runs {type(self.strategy).__name__}. Drop the setting.")
    return tf.distribute.InputOptions(
        experimental_replication_mode=tf.distribute.InputReplicationMode.PER_REPLICA)

  def _run(self, train_loop, iterator, start_step, watcher):
    config, exp = self.config, self.exp
    global_batch = config.batch_size
    step = start_step
    last_log = time.time()
    run_start, run_start_step = time.time(), step
    metrics = {}
    stall_watcher = diagnostics.StallWatcher(
        self.method.uniform_losses(), config.stall_warning_loops, config.stall_loss_tolerance,
        config.collapsed_embedding_std, self.method.stall_causes)
    while step < exp.total_steps:
      until_boundary = [exp.total_steps - step, config.steps_per_loop]
      for every in (config.checkpoint_every_steps, config.export_every_steps):
        if every > 0:
          until_boundary.append(every - step % every)
      num_steps = max(min(until_boundary), 1)
      loop_start = time.time()
      metrics, first_bad = train_loop(iterator, tf.constant(num_steps, tf.int32))
      metrics = {k: float(v) for k, v in metrics.items()}
      first_bad = int(first_bad)
      # Taken over: stop before writing anything more (every task of the job).
      distribute.agree(self.strategy, self.lease.check if self.lease else lambda: 0,
                       "checking the workdir's lease")
      if first_bad >= 0:
        raise NonFiniteLossError(first_bad)
      elapsed = time.time() - loop_start
      step = self.step
      self.history.append((step, metrics))
      stall_watcher.update(metrics, step)
      steps_per_sec = num_steps / max(elapsed, 1e-9)
      tf.summary.scalar("train/learning_rate", float(self.schedule(step - 1)), step=step)
      tf.summary.scalar("train/steps_per_sec", steps_per_sec, step=step)
      tf.summary.scalar("train/images_per_sec", steps_per_sec * global_batch, step=step)
      for name, value in metrics.items():
        tf.summary.scalar(f"train/{name}", value, step=step)
      stop = step < exp.total_steps and watcher.stop_requested()
      if step % config.checkpoint_every_steps == 0 or step >= exp.total_steps or stop:
        saved = self.save_checkpoint()
      if stop:
        raise Preempted(step, saved)
      if config.export_every_steps and step % config.export_every_steps == 0 \
          and step < exp.total_steps:
        self.export()
      now = time.time()
      if now - last_log >= config.log_every_seconds or step >= exp.total_steps:
        rate = (step - run_start_step) / max(now - run_start, 1e-9)
        eta = (exp.total_steps - step) / max(rate, 1e-9)
        logging.info("step %d/%d | loss %.4f | %s | %.1f images/s | ETA %s", step,
                     exp.total_steps, metrics.get("loss", float("nan")),
                     " ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())
                              if k != "loss"),
                     steps_per_sec * global_batch, _format_seconds(eta))
        last_log = now
    self.export()
    return metrics


def make_weight_average(method, exp):
  """The Polyak average of `method`'s trainable weights if the config asks for one."""
  if not exp.config.polyak_averaging:
    return None
  decay = ema_lib.half_life_decay(exp.steps_per_epoch, exp.config.polyak_half_life_epochs)
  return ema_lib.WeightAverage(method.trainable_variables, decay)


def _saved_objects(checkpoint_path):
  """(top-level object names, whether it is an exported module's variables): `backbone`,
  `head`, `ema`, `optimizer`... of a training checkpoint, or the method's trackables that
  a module holds.

  Read from the object graph, not the keys: a variable is keyed by the first path that
  reaches it, which may run through the optimizer rather than the layer owning it.
  """
  graph = trackable_object_graph_pb2.TrackableObjectGraph()
  graph.ParseFromString(
      # Not tf.train.load_checkpoint: its isdir(prefix) probe is true on ram:// for a prefix.
      tf.compat.v1.train.NewCheckpointReader(checkpoint_path)
      .get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
  children = {child.local_name: child.node_id for child in graph.nodes[0].children}
  if export_lib.TRACKABLES_ATTRIBUTE in children:
    node = graph.nodes[children[export_lib.TRACKABLES_ATTRIBUTE]]
    return {child.local_name for child in node.children}, True
  return set(children), False


def _restore_from_module(module_variables_path, trackables):
  """Restores `trackables` from an exported module's variables, checking every one of
  their variables gets a value.

  tf.train.Checkpoint would add a `save_counter` that a SavedModel lacks, failing that
  check, so the restore goes through Checkpoint's own saver on a plain root.
  """
  from tensorflow.python.checkpoint import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from tensorflow.python.checkpoint import graph_view  # pylint: disable=g-import-not-at-top
  root = tf.Module()
  setattr(root, export_lib.TRACKABLES_ATTRIBUTE, dict(trackables))
  saver = checkpoint_lib.TrackableSaver(graph_view.ObjectGraphView(root))
  saver.restore(module_variables_path).expect_partial().assert_existing_objects_matched()


def initialize_from(method, checkpoint_path, strategy):
  """Loads every trackable of `method` that `checkpoint_path` (a training checkpoint or an
  exported module's variables) also holds, by name; from a training checkpoint of a run
  that kept Polyak averages, its averaged weights (what it evaluated and exported)."""
  saved, in_module = _saved_objects(checkpoint_path)
  trackables = {name: obj for name, obj in method.trackables_to_initialize(saved).items()
                if name in saved}
  if not any(name.endswith("backbone") for name in trackables):
    raise UserError(f"--init_from {checkpoint_path} holds no backbone (it has "
                    f"{', '.join(sorted(saved))}). Pass the workdir of a tfssl training run.")
  try:
    if in_module:
      _restore_from_module(checkpoint_path, trackables)
    else:
      tf.train.Checkpoint(**trackables).restore(checkpoint_path).expect_partial() \
          .assert_existing_objects_matched()
      if "ema" in saved:
        # Over every restored variable: the averages cover what that run trained, which
        # may include layers this run freezes; the others keep their restored values.
        with strategy.scope():
          averages = ema_lib.WeightAverage(
              [v for obj in trackables.values() for v in obj.variables], decay=0.0)
        tf.train.Checkpoint(ema=averages).restore(checkpoint_path).expect_partial()
        averages.copy_to_variables()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    raise UserError(
        f"--init_from {checkpoint_path} is of another method or architecture than this "
        f"run's {method.config.method} with {method.config.model} x{method.config.model_width} "
        f"({e.__class__.__name__}: {str(e).splitlines()[0][:300]}). Use the same --method, "
        "--model, model_width and head settings as the run you start from.") from e
  logging.info("Initialised %s from %s%s.", ", ".join(sorted(trackables)), checkpoint_path,
               " (Polyak-averaged weights)" if "ema" in saved else "")


def _format_seconds(seconds):
  seconds = int(seconds)
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def prepare_workdir(exp, workdir, strategy=None, force_takeover=False):
  """Checks the workdir belongs to this config, takes its lease and records the config
  (the chief: `strategy` None, or its chief task); returns the lease (None elsewhere).

  The lease is taken right after the check, before anything is written, so a second
  trainer of the workdir is refused (or with `force_takeover` takes it over) having
  written nothing. On a job of several hosts the outcome is the job's: if the chief is
  refused (or any task's check fails), every task stops with a message."""
  chief = strategy is None or distribute.is_chief(strategy)
  leases = []

  def check_and_lease():
    saved = experiment_lib.check_workdir(workdir, exp.config)
    if chief:
      leases.append(_lease_and_record_config(exp, workdir, saved, force_takeover))

  try:
    distribute.agree(strategy, check_and_lease, "checking and leasing the workdir")
  except BaseException:
    for lease in leases:  # taken here, but another task could not go on
      lease.release()
    raise
  return leases[0] if leases else None


def _lease_and_record_config(exp, workdir, saved, force_takeover):
  config = exp.config
  lease = lease_lib.WorkdirLease(workdir, config.lease_heartbeat_seconds,
                                 config.lease_stale_seconds).acquire(force=force_takeover)
  try:
    path = workdir_paths(workdir)["config"]
    current = json.loads(config_lib.to_json(config))
    if saved is None:
      records.write_json(path, current)
    elif saved != current:
      # Keep the original record; note what this invocation changed beside it.
      changed = {k: [saved.get(k), v] for k, v in current.items() if saved.get(k) != v}
      logging.warning("Config differs from %s in %s; resuming anyway.", path, sorted(changed))
      records.write_json(path.replace("config.json", "config.resumed.json"), current)
  except BaseException:
    lease.release()
    raise
  return lease


def _made(strategy):
  """`strategy` itself, or what the function `strategy` makes."""
  return strategy if isinstance(strategy, tf.distribute.Strategy) else strategy()


def train(config, workdir, strategy=None, exp=None, force_takeover=False):
  """Trains `config` in `workdir` (resuming if it holds checkpoints); returns the Trainer.

  `strategy`: a tf.distribute strategy (default: the current one), or a function making
  one, called once the workdir is checked and leased so that a wrong workdir fails before
  any accelerator is touched (a job of several hosts passes its strategy: it joins its
  cluster before anything else).
  The chief holds the workdir's lease while it trains (see `lease`): a second trainer of
  the same workdir is refused, or with `force_takeover` takes it over."""
  exp = exp or experiment_lib.resolve(config)
  strategy = strategy or tf.distribute.get_strategy
  made = isinstance(strategy, tf.distribute.Strategy)
  lease = prepare_workdir(exp, workdir, strategy if made else None, force_takeover)
  try:
    trainer = Trainer(exp, workdir, _made(strategy), lease=lease)
    if trainer.chief:
      hparams_lib.write_session(config, trainer.paths["summaries"], trial_id=workdir)
    trainer.train()
  finally:
    if lease is not None:
      lease.release()
  return trainer


# --- the --run_eval job --------------------------------------------------------


class Evaluator:
  """Evaluates checkpoints of a run: with the method's own classifier (top-1/top-5), or for
  a method without one by k-NN on its `default` representation (online_knn)."""

  def __init__(self, exp, workdir, strategy):
    self.exp = exp
    self.config = exp.config
    self.strategy = strategy
    self.paths = workdir_paths(workdir)
    experiment_lib.check_batch_divides(self.config.eval_batch_size,
                                       strategy.num_replicas_in_sync, "eval_batch_size")
    _set_precision(self.config)
    with strategy.scope():
      self.method = exp.new_method()
      self.method.build()
      self.ema = make_weight_average(self.method, exp)
      state = dict(self.method.trackables(), **({"ema": self.ema} if self.ema else {}))
      self.checkpoint = tf.train.Checkpoint(**state)
    self.knn = None
    if not self._has_classifier():
      self.knn = online_knn.KnnEvaluator(exp, self.method, strategy)
      logging.info("%s has no classifier: --run_eval scores each checkpoint by k-NN (k %d, "
                   "temperature %g) of `default` with %d training images against %s.",
                   self.config.method, self.knn.k, self.knn.temperature, self.knn.num_memory,
                   self.knn.source.eval_split)
      return

    def dataset_fn(input_context):
      return datasets.eval_dataset(
          exp.source, split=exp.source.eval_split,
          batch_size=input_context.get_per_replica_batch_size(self.config.eval_batch_size),
          preprocess_fn=self.method.eval_preprocess, input_context=input_context)

    self.dataset = strategy.distribute_datasets_from_function(dataset_fn)

    @tf.function
    def eval_step(batch):
      per_replica = strategy.run(self.method.eval_metrics, args=(batch,))
      return {k: strategy.reduce(SUM, v, axis=None) for k, v in per_replica.items()}

    self.eval_step = eval_step

  def _has_classifier(self):
    size = self.exp.image_size
    return "logits" in self.method.representations(tf.zeros([1, size, size, 3]), training=False)

  def evaluate(self, checkpoint_path):
    # Every object of the method (and every Polyak average) must get its saved value.
    self.checkpoint.restore(checkpoint_path).expect_partial().assert_existing_objects_matched()
    if self.ema:  # S4L evaluates the Polyak average
      self.ema.copy_to_variables()
    if self.knn:
      return self.knn.evaluate()
    totals = {}
    for batch in self.dataset:
      for k, v in self.eval_step(batch).items():
        totals[k] = totals.get(k, 0.0) + float(v)
    if not totals:
      return {}
    count = totals.pop("count")
    results = {k: v / max(count, 1.0) for k, v in totals.items()}
    results["num_examples"] = int(count)
    return results

  def follow(self):
    """Evaluates each new checkpoint once until the final step (or the timeout)."""
    results = read_eval_results(self.paths["eval_results"])
    writer = tf.summary.create_file_writer(self.paths["eval_summaries"])
    tf.io.gfile.makedirs(os.path.dirname(self.paths["eval_results"]))
    protocol = self.knn.record() if self.knn else {}
    for path in tf.train.checkpoints_iterator(
        self.paths["checkpoints"], min_interval_secs=self.config.eval_poll_seconds,
        timeout=self.config.eval_timeout_seconds):
      step = int(path.rsplit("-", 1)[-1])
      if str(step) not in results:
        try:
          metrics = self.evaluate(path)
        except (AssertionError, ValueError, IndexError, tf.errors.OpError):
          damage = checkpoint_damage(path)
          if damage is None:
            raise
          logging.warning("Checkpoint %s cannot be read (%s): not evaluated.", path, damage)
          if step >= self.exp.total_steps:
            break
          continue
        results[str(step)] = dict(metrics, step=step, split=self.exp.source.eval_split,
                                  **protocol)
        records.write_json(self.paths["eval_results"], results)
        with writer.as_default():
          for name, value in metrics.items():
            tf.summary.scalar(f"eval/{name}", value, step=step)
        writer.flush()
        logging.info("eval step %d: %s", step,
                     " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "num_examples"))
      if step >= self.exp.total_steps:
        break
    return results


def run_eval(config, workdir, strategy=None, exp=None):
  """Follows `workdir`'s checkpoints (see Evaluator.follow); `strategy` as for `train`."""
  exp = exp or experiment_lib.resolve(config)
  experiment_lib.check_workdir(workdir, config)
  return Evaluator(exp, workdir, _made(strategy or tf.distribute.get_strategy)).follow()


# --- CLI ------------------------------------------------------------------------

FLAGS = flags.FLAGS


def define_flags():
  """Only the command line defines flags, so the library can be imported anywhere."""
  flags.DEFINE_string("method", "supervised", "Registered method name.")
  flags.DEFINE_string("model", None, "Registered model name (default: the method's).")
  flags.DEFINE_string("dataset", None, "digits | cifar10 | cifar100 | imagenet | folder:PATH | "
                      "csv:FILE | tfds:NAME[/CONFIG].")
  flags.DEFINE_string("dataset_dir", None, "Dataset files (TFDS data dir, TFRecords, binaries).")
  flags.DEFINE_string("labels", None, "all | 1pct | 10pct | N | N_per_class | file:PATH.")
  flags.DEFINE_string("workdir", None, "Run directory (local or gs://).")
  flags.DEFINE_string("pseudo_labels", None, "Train on this file's labels (python -m tfssl.label).")
  flags.DEFINE_string("init_from", None, "Start from this run's weights (workdir or checkpoint).")
  flags.DEFINE_string("tpu", "", "TPU: 'local' on a TPU VM, or a TPU name.")
  flags.DEFINE_enum("strategy", "auto", distribute.STRATEGIES, "tf.distribute strategy.")
  flags.DEFINE_bool("run_eval", False, "Follow the workdir's checkpoints and evaluate each.")
  flags.DEFINE_bool("force_takeover", False, "Take the workdir's lease from the trainer "
                    "holding it (which then stops) instead of refusing to start.")


def config_from_flags(overrides):
  method_cls = methods.get_method(FLAGS.method)
  return config_lib.build_config(
      method_cls, overrides, method=FLAGS.method, model=FLAGS.model, dataset=FLAGS.dataset,
      dataset_dir=FLAGS.dataset_dir, labels=FLAGS.labels, pseudo_labels=FLAGS.pseudo_labels,
      init_from=FLAGS.init_from)


def main(argv, overrides):
  del argv
  if not FLAGS.workdir:
    raise UserError("--workdir is required (a local path or gs://bucket/dir).")
  config = config_from_flags(overrides)
  # Collective ops must be configured before TensorFlow runs its first op, so a worker of
  # several hosts joins its cluster first; elsewhere bad names, data or workdir fail
  # before any accelerator is touched.
  # The --run_eval job never joins the cluster: it evaluates beside it on its own devices.
  make_strategy = functools.partial(distribute.make_strategy, FLAGS.tpu, FLAGS.strategy,
                                    config.cluster_wait_seconds, local_only=FLAGS.run_eval)
  strategy = None
  if not FLAGS.run_eval and distribute.uses_several_workers(FLAGS.tpu, FLAGS.strategy):
    strategy = make_strategy()
  exp = experiment_lib.resolve(config)
  if FLAGS.run_eval:
    results = run_eval(config, FLAGS.workdir, make_strategy, exp)
    print(json.dumps(results, indent=2))
  else:
    finished = train(config, FLAGS.workdir, strategy or make_strategy, exp,
                     force_takeover=FLAGS.force_takeover)
    last = finished.history[-1][1] if finished.history else {}
    print(json.dumps({"workdir": FLAGS.workdir, "step": finished.step, "metrics": last}, indent=2))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
