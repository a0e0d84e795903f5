"""Notices that the job is about to be stopped, so the trainer can checkpoint and exit.

Preemptible TPUs and spot VMs get SIGTERM shortly before they go away; Google Cloud VMs
also announce host maintenance on their metadata server. tf.distribute's
PreemptionCheckpointHandler skips both on Cloud TPU VMs and CPU VMs and saves through its
own step counter, so the trainer asks this watcher at each host-loop boundary instead.
"""

import signal
import threading

import tensorflow as tf
from absl import logging

from tfssl import distribute

_MAINTENANCE_POLL_SECONDS = 5


def _gce_maintenance_watcher():
  """A function telling whether this Google Cloud VM announced a stop, or None elsewhere."""
  try:
    from tensorflow.python.distribute.failure_handling import failure_handling_util  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  if not failure_handling_util.on_gcp():
    return None
  return failure_handling_util.termination_watcher_function_gce


class PreemptionWatcher:
  """While active (a context manager), remembers a SIGTERM or a maintenance notice.

  `stop_requested()` is a collective on a job of several hosts: one task's notice stops
  every task at the same step, so they all take part in the final checkpoint.
  """

  def __init__(self, strategy, watch_maintenance=True):
    self._notice = threading.Event()
    self._closed = threading.Event()
    self._watching_sigterm = False
    self._previous_handler = None
    self._watch_maintenance = watch_maintenance
    self._any_task = None
    if distribute.spans_several_hosts(strategy):
      @tf.function
      def any_task(local_notice):
        per_replica = strategy.run(lambda notice: notice, args=(local_notice,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
      self._any_task = any_task

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
      self._watching_sigterm = True
    else:
      logging.warning("Training outside the main thread: SIGTERM is not watched.")
    if self._watch_maintenance:
      threading.Thread(target=self._poll_maintenance, daemon=True,
                       name="maintenance-watcher").start()
    return self

  def __exit__(self, *exc_info):
    self._closed.set()
    if self._watching_sigterm:
      # None: the handler before was installed outside Python, whose default is to exit.
      signal.signal(signal.SIGTERM, self._previous_handler or signal.SIG_DFL)
      self._watching_sigterm = False

  def _on_sigterm(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM: saving a checkpoint at the end of this host loop, then exiting.")
    self._notice.set()

  def _poll_maintenance(self):
    announced = _gce_maintenance_watcher()
    if announced is None:
      return
    while not self._closed.wait(_MAINTENANCE_POLL_SECONDS):
      try:
        if announced():
          logging.warning("Host maintenance announced: saving a checkpoint, then exiting.")
          self._notice.set()
          return
      except Exception as e:  # pylint: disable=broad-except
        logging.info("Maintenance poll failed (%s); trying again.", e)

  def stop_requested(self):
    local_notice = self._notice.is_set()
    if self._any_task is None:
      return local_notice
    return bool(self._any_task(tf.constant(int(local_notice), tf.int32)) > 0)
