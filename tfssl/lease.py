"""One trainer per workdir: the chief holds a lease in WORKDIR/lease.json while it trains.

The lease names its holder (host, process id, start time, a random token) and a heartbeat
the holder renews every `heartbeat_seconds` from a background thread. Another trainer of
the same workdir:
- on the same host, while the holder's process lives: is refused at once with one message
  naming the holder; a holder whose process is gone (killed, preempted) is taken over;
- on another host: watches the heartbeat for up to `stale_seconds`; if it is renewed, the
  holder is alive and the newcomer is refused; if it is not, the lease is stale (the host
  went away, as a preempted TPU VM does) and is taken over, so a restarted job resumes;
- with `force`: takes the lease over at once. The old holder sees a lease that is no
  longer its own at its next heartbeat and stops at its next host loop without writing.

Written through tf.io.gfile, so it works on gs:// too. Object stores have no atomic
create-if-absent here: two trainers starting within moments of each other may both write
a lease; each reads it back after writing, and one that finds another's token stops, so
at most one keeps training after the next heartbeat. Google Cloud Storage reads its own
writes (strong consistency), which this relies on.
"""

import dataclasses
import json
import os
import socket
import threading
import time
import uuid

import tensorflow as tf
from absl import logging

from tfssl.errors import UserError

LEASE_FILE = "lease.json"


@dataclasses.dataclass
class Holder:
  host: str
  pid: int
  start_time: float
  heartbeat: float
  token: str

  def describe(self, now):
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.start_time))
    return (f"process {self.pid} on host {self.host}, started {started}, last heartbeat "
            f"{now - self.heartbeat:.0f} s ago")


def _process_alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # someone else's process
    return True
  return True


class WorkdirLease:
  """The lease of one workdir, taken by `acquire` and given back by `release`."""

  def __init__(self, workdir, heartbeat_seconds=30.0, stale_seconds=120.0):
    if not 0 < heartbeat_seconds < stale_seconds:
      raise UserError(f"lease_heartbeat_seconds={heartbeat_seconds} must be positive and "
                      f"below lease_stale_seconds={stale_seconds}.")
    self.path = os.path.join(workdir, LEASE_FILE)
    self.heartbeat_seconds = heartbeat_seconds
    self.stale_seconds = stale_seconds
    now = time.time()
    self.mine = Holder(socket.gethostname(), os.getpid(), now, now, uuid.uuid4().hex)
    self._lost = None  # the holder that took the lease over, once seen
    self._stop = threading.Event()
    self._thread = None

  def read(self):
    """The holder the lease file names, or None (no file, or one that does not parse)."""
    if not tf.io.gfile.exists(self.path):
      return None
    try:
      with tf.io.gfile.GFile(self.path) as f:
        return Holder(**json.load(f))
    except (ValueError, TypeError) as e:
      logging.warning("Lease %s cannot be read (%s): treated as free.", self.path, e)
      return None
    except tf.errors.NotFoundError:  # released meanwhile
      return None

  def _write(self):
    self.mine.heartbeat = time.time()
    tmp = f"{self.path}.{self.mine.token}.tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
      json.dump(dataclasses.asdict(self.mine), f)
    tf.io.gfile.rename(tmp, self.path, overwrite=True)

  def _refuse(self, holder, why):
    raise UserError(
        f"Workdir {os.path.dirname(self.path)} is being trained by another trainer: "
        f"{holder.describe(time.time())} ({why}). Two trainers would overwrite each other's "
        f"checkpoints and exports. Stop that one, or wait for it to finish; if it is gone, "
        f"its lease goes stale {self.stale_seconds:.0f} s after its last heartbeat and a "
        f"rerun takes over, or pass --force_takeover to take over now. Nothing was written.")

  def acquire(self, force=False):
    holder = self.read()
    if holder is not None and not force:
      if holder.host == self.mine.host:
        if _process_alive(holder.pid):
          self._refuse(holder, "its process is running on this host")
        logging.warning("Taking over the lease of %s: %s, whose process is gone.", self.path,
                        holder.describe(time.time()))
      else:
        self._wait_until_stale(holder)
    elif holder is not None:
      logging.warning("--force_takeover: taking the lease of %s from %s.", self.path,
                      holder.describe(time.time()))
    tf.io.gfile.makedirs(os.path.dirname(self.path))
    self._write()
    holder = self.read()
    if holder is None or holder.token != self.mine.token:
      self._refuse(holder or self.mine, "it took the lease at the same moment")
    self._thread = threading.Thread(target=self._renew, name="workdir-lease", daemon=True)
    self._thread.start()
    return self

  def _wait_until_stale(self, holder):
    """Returns once `holder`'s heartbeat is older than stale_seconds; refuses if renewed."""
    while True:
      age = time.time() - holder.heartbeat
      if age > self.stale_seconds:
        logging.warning("Taking over the stale lease of %s: %s.", self.path,
                        holder.describe(time.time()))
        return
      logging.info("Workdir lease held by %s; waiting up to %.0f s for it to go stale.",
                   holder.describe(time.time()), self.stale_seconds - age)
      time.sleep(min(self.heartbeat_seconds, self.stale_seconds - age + 0.1))
      current = self.read()
      if current is None:
        return
      if current.token != holder.token or current.heartbeat != holder.heartbeat:
        self._refuse(current, "its heartbeat is being renewed")

  def _renew(self):
    while not self._stop.wait(self.heartbeat_seconds):
      try:
        holder = self.read()
        if holder is not None and holder.token != self.mine.token:
          self._lost = holder
          return
        self._write()
      except tf.errors.OpError as e:  # a network hiccup: the next beat tries again
        logging.warning("Could not renew the lease %s: %s", self.path, e)

  def check(self):
    """Raises if another trainer took the lease over (the caller stops without writing)."""
    if self._lost is not None:
      raise UserError(
          f"The lease of workdir {os.path.dirname(self.path)} was taken over by "
          f"{self._lost.describe(time.time())} (--force_takeover). This trainer stops "
          "without writing anything more.")

  def release(self):
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    holder = self.read()
    if holder is not None and holder.token == self.mine.token:
      tf.io.gfile.remove(self.path)
