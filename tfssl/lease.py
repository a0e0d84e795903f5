"""One trainer per workdir: the chief holds a lease in WORKDIR/lease.json while it trains.

The lease names its holder (host, boot id, process id and its start time, a random token)
and a heartbeat the holder renews every `heartbeat_seconds` from a background thread.
Another trainer of the same workdir:
- on the holder's host and boot, while the holder's process (same id, same start time)
  lives: is refused at once with one message naming the holder; a holder whose process
  is gone (killed, preempted; or its id reused, as by a restarted container's pid 1) is
  taken over at once;
- otherwise (another host, or a process it cannot see): watches the heartbeat for up to
  `stale_seconds` of its own clock (so clocks that differ between hosts do not matter);
  if it is renewed, the holder is alive and the newcomer is refused; if it is not, the
  lease is stale (the host went away, as a preempted TPU VM does) and is taken over, so a
  restarted job resumes;
- with `force`: takes the lease over at once.
The holder reads the lease at every host loop (`check`) and stops without writing more
once it is not its own, or once it could not renew it for longer than a newcomer waits.

Written through tf.io.gfile, so it works on gs:// too. tf.io.gfile offers no atomic
create-if-absent or generation precondition, so two trainers starting (or a forced
takeover landing) within moments of each other may both write the lease; each reads it
back after writing and at every host loop, and one that finds another's token stops.
Google Cloud Storage reads its own writes (strong consistency), which this relies on.
Only the chief of a job of several hosts takes the lease; the trainer makes its outcome, and
that of every check, the job's (distribute.agree), so a refused or displaced chief stops
every task.
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

from tfssl import records
from tfssl.errors import UserError

LEASE_FILE = "lease.json"


@dataclasses.dataclass
class Holder:
  host: str
  pid: int
  start_time: float
  heartbeat: float
  token: str
  boot_id: str = ""
  pid_namespace: str = ""  # processes of another namespace cannot be seen from this one
  process_start: str = ""  # the process's start in clock ticks since boot (/proc)

  def describe(self, now):
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.start_time))
    return (f"process {self.pid} on host {self.host}, started {started}, last heartbeat "
            f"{now - self.heartbeat:.0f} s ago by its clock")


def _read_text(path):
  try:
    with open(path) as f:
      return f.read().strip()
  except OSError:
    return ""


def _boot_id():
  return _read_text("/proc/sys/kernel/random/boot_id")


def _pid_namespace():
  try:
    return os.readlink("/proc/self/ns/pid")
  except OSError:
    return ""


def _process_start(pid):
  """Field 22 of /proc/PID/stat (after the parenthesised name), "" if unreadable."""
  stat = _read_text(f"/proc/{pid}/stat")
  return stat.rsplit(")", 1)[-1].split()[19] if stat else ""


def _holder_alive_here(holder):
  """True or False when this process can tell whether `holder`'s process lives (same host,
  boot and process namespace); None when it cannot, and the heartbeat must tell."""
  here = (socket.gethostname(), _boot_id(), _pid_namespace())
  if not all(here) or (holder.host, holder.boot_id, holder.pid_namespace) != here:
    return None
  if holder.pid == os.getpid():
    return False  # our own id, so not the holder's process any more
  start = _process_start(holder.pid)
  return bool(start) and start == holder.process_start


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
    self.mine = Holder(socket.gethostname(), os.getpid(), now, now, uuid.uuid4().hex,
                       _boot_id(), _pid_namespace(), _process_start(os.getpid()))
    self._renewed = time.monotonic()  # the last heartbeat written
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
    records.write_json(self.path, dataclasses.asdict(self.mine))
    self._renewed = time.monotonic()

  def _refuse(self, holder, why):
    raise UserError(
        f"Workdir {os.path.dirname(self.path)} is being trained by another trainer: "
        f"{holder.describe(time.time())} ({why}). Two trainers would overwrite each other's "
        f"checkpoints and exports. Stop that one, or wait for it to finish; if it is gone, "
        f"its lease goes stale {self.stale_seconds:.0f} s after its last heartbeat and a "
        f"rerun takes over, or pass --force_takeover to take over now. Nothing was written.")

  def acquire(self, force=False):
    holder = self.read()
    if holder is not None and force:
      logging.warning("--force_takeover: taking the lease of %s from %s.", self.path,
                      holder.describe(time.time()))
    elif holder is not None:
      alive = _holder_alive_here(holder)
      if alive:
        self._refuse(holder, "its process is running on this host")
      if alive is None:
        self._wait_until_stale(holder)
      else:
        logging.warning("Taking over the lease of %s: %s, whose process is gone.", self.path,
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
    """Returns once `holder`'s heartbeat has not changed for stale_seconds of this host's
    clock; refuses as soon as it changes (the holder is alive)."""
    seen = time.monotonic()
    while True:
      waited = time.monotonic() - seen
      if waited >= self.stale_seconds:
        logging.warning("Taking over the stale lease of %s: %s, not renewed for %.0f s.",
                        self.path, holder.describe(time.time()), waited)
        return
      logging.info("Workdir lease held by %s; watching up to %.0f s for a renewal.",
                   holder.describe(time.time()), self.stale_seconds - waited)
      time.sleep(min(self.heartbeat_seconds, self.stale_seconds - waited))
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
          return  # taken over: check() says so at the next host loop
        self._write()
      except tf.errors.OpError as e:  # a network hiccup: the next beat tries again
        logging.warning("Could not renew the lease %s: %s", self.path, e)

  def check(self):
    """Raises if the lease is no longer this trainer's (taken over), or if it could not be
    renewed for so long that a newcomer may have taken it (the caller stops without
    writing)."""
    try:
      holder = self.read()
    except tf.errors.OpError as e:  # unreachable for now: the renewal deadline decides
      logging.warning("Could not read the lease %s: %s", self.path, e)
      holder = None
    if holder is not None and holder.token != self.mine.token:
      raise UserError(
          f"The lease of workdir {os.path.dirname(self.path)} was taken over by "
          f"{holder.describe(time.time())}. This trainer stops without writing anything "
          "more.")
    unrenewed = time.monotonic() - self._renewed
    if unrenewed > self.stale_seconds - self.heartbeat_seconds:
      raise UserError(
          f"The lease of workdir {os.path.dirname(self.path)} could not be renewed for "
          f"{unrenewed:.0f} s (see the warnings above): another trainer may take the "
          "workdir over, so this one stops without writing anything more. Rerun it once "
          "the storage is reachable.")

  def release(self):
    """Gives the lease back if it is still this trainer's; never raises (it runs while
    another exception, such as a preemption, is on its way out)."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=2 * self.heartbeat_seconds)
    try:
      holder = self.read()
      if holder is not None and holder.token == self.mine.token:
        tf.io.gfile.remove(self.path)
    except tf.errors.OpError as e:
      logging.warning("Could not release the lease %s (%s); it goes stale by itself.",
                      self.path, e)
