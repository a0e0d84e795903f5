"""Picks the `tf.distribute` strategy for the hardware the job runs on."""

import json
import os

import tensorflow as tf
from absl import logging

from tfssl.errors import UserError

STRATEGIES = ("auto", "tpu", "mirrored", "multiworker", "one_device", "default")


def _cluster_workers():
  tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
  cluster = tf_config.get("cluster", {})
  return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def make_strategy(tpu="", strategy="auto"):
  """TPU when `tpu` is given, several hosts from TF_CONFIG, all local GPUs, else the CPU.

  Args:
    tpu: "" for none, "local" on a TPU VM, or a TPU name / grpc address.
    strategy: one of STRATEGIES; "auto" decides from `tpu`, TF_CONFIG and visible GPUs.
  """
  if strategy not in STRATEGIES:
    raise UserError(f"Unknown strategy '{strategy}'. Known strategies: {', '.join(STRATEGIES)}.")
  if tpu or strategy == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "local")
    if (tpu or "local") != "local":
      tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    chosen = tf.distribute.TPUStrategy(resolver)
  elif strategy == "multiworker" or (strategy == "auto" and _cluster_workers() > 1):
    chosen = tf.distribute.MultiWorkerMirroredStrategy()
  else:
    gpus = tf.config.list_logical_devices("GPU")
    if strategy == "mirrored" or (strategy == "auto" and len(gpus) > 1):
      chosen = tf.distribute.MirroredStrategy()
    elif strategy == "one_device" or (strategy == "auto" and len(gpus) == 1):
      chosen = tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    else:
      chosen = tf.distribute.get_strategy()
  logging.info("Strategy %s with %d replica(s).", type(chosen).__name__,
               chosen.num_replicas_in_sync)
  return chosen


def is_tpu(strategy):
  return isinstance(strategy, (tf.distribute.TPUStrategy,))


def is_chief(strategy):
  """Only the chief writes checkpoints, summaries and exports."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  return task_type in (None, "chief") or (task_type == "worker" and task_id == 0 and
                                          "chief" not in resolver.cluster_spec().as_dict())
