"""Picks the `tf.distribute` strategy for the hardware the job runs on."""

import functools
import importlib.util
import json
import os
import socket
import threading
import time

import tensorflow as tf
from absl import logging

from tfssl.errors import UserError

STRATEGIES = ("auto", "tpu", "mirrored", "multiworker", "one_device", "default")
TRAINING_JOBS = ("chief", "worker")
TF_CONFIG_EXAMPLE = ('TF_CONFIG=\'{"cluster": {"worker": ["host0:12345", "host1:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}\'')


def _tf_config_error(problem):
  return UserError(f"TF_CONFIG {problem}. Every worker gets the same cluster and its own task, "
                   f"e.g. {TF_CONFIG_EXAMPLE} on the first host and index 1 on the second.")


def _is_host_port(address):
  if not isinstance(address, str) or ":" not in address:
    return False
  host, port = address.rsplit(":", 1)
  return bool(host) and port.isdigit() and 0 < int(port) < 65536


def read_tf_config(environ=None):
  """(cluster, task type, task index) from TF_CONFIG, checked; ({}, None, None) without it."""
  raw = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
  if not raw:
    return {}, None, None
  try:
    tf_config = json.loads(raw)
  except json.JSONDecodeError as e:
    raise _tf_config_error(f"is not JSON ({e.msg} at character {e.pos}: {raw[:120]!r})") from e
  if not isinstance(tf_config, dict):
    raise _tf_config_error(f"must be a JSON object, not {raw[:120]!r}")
  cluster, task = tf_config.get("cluster", {}), tf_config.get("task", {})
  if not isinstance(cluster, dict) or not all(
      isinstance(addresses, list) and all(_is_host_port(a) for a in addresses)
      for addresses in cluster.values()):
    raise _tf_config_error(f"has a cluster that is not {{job: [\"host:port\", ...]}}: {cluster}")
  unknown_jobs = sorted(set(cluster) - set(TRAINING_JOBS))
  if unknown_jobs:
    raise _tf_config_error(f"lists jobs {unknown_jobs}: tfssl trains synchronously with "
                           f"{' and '.join(TRAINING_JOBS)} tasks only (no parameter servers)")
  addresses = [cluster[job][i] for job, i in _training_tasks(cluster)]
  if len(set(addresses)) != len(addresses):
    raise _tf_config_error(f"gives one address to two tasks: {addresses}")
  if not cluster:
    return {}, None, None
  if not isinstance(task, dict) or "type" not in task or "index" not in task:
    raise _tf_config_error(f"has a cluster but no task {{\"type\": ..., \"index\": ...}} "
                           f"saying which of its tasks this process is (got {task})")
  task_type, index = task["type"], task["index"]
  if task_type == "evaluator":
    return cluster, task_type, index
  if task_type not in cluster:
    raise _tf_config_error(f"says this process is a '{task_type}' but the cluster has only "
                           f"{sorted(cluster)} tasks")
  if not isinstance(index, int) or not 0 <= index < len(cluster[task_type]):
    raise _tf_config_error(f"says this process is {task_type} {index} but the cluster lists "
                           f"{len(cluster[task_type])} {task_type} task(s) (indices from 0)")
  return cluster, task_type, index


def _training_tasks(cluster):
  """(job, index) of every task of `cluster` that trains, chief first."""
  return [(job, i) for job in TRAINING_JOBS for i in range(len(cluster.get(job, [])))]


def _cluster_workers():
  cluster, task_type, _ = read_tf_config()
  if task_type == "evaluator":  # an evaluator beside the workers runs on its own devices
    return 0
  return len(_training_tasks(cluster))


def uses_several_workers(tpu="", strategy="auto"):
  """Whether make_strategy will join a cluster of hosts (which must happen before any op)."""
  return not tpu and strategy != "tpu" and (
      strategy == "multiworker" or (strategy == "auto" and _cluster_workers() > 1))


def _task_card(cluster, task_type, index):
  return (json.dumps({"cluster": cluster, "task": [task_type, index]}, sort_keys=True) + "\n")


def _check_peer(card, reply, address):
  peer = json.loads(reply)
  mine = json.loads(card)
  if peer["cluster"] != mine["cluster"]:
    raise _tf_config_error(
        f"of the task at {address} lists the cluster {peer['cluster']}, but this task's lists "
        f"{mine['cluster']}")
  return tuple(peer["task"])


def check_cluster(timeout_seconds, environ=None):
  """Checks, before TensorFlow joins the cluster of TF_CONFIG, that every task listed there
  is up with the same cluster and the task its address says, within `timeout_seconds`.

  TensorFlow's own join blocks without a deadline (and without answering SIGTERM) while a
  task is missing, and hangs or fails obscurely when two tasks disagree on the cluster.
  Each task listens on its own port and greets every other; the listener closes before
  TensorFlow's server takes the port over.
  """
  cluster, task_type, index = read_tf_config(environ)
  tasks = _training_tasks(cluster)
  address_of = {(job, i): cluster[job][i] for job, i in tasks}
  card = _task_card(cluster, task_type, index)
  peers = {task for task in tasks if task != (task_type, index)}
  greeted_by, greeted, problems = set(), set(), []
  port = int(address_of[(task_type, index)].rsplit(":", 1)[1])
  listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  try:
    listener.bind(("", port))
  except OSError as e:
    listener.close()
    raise _tf_config_error(
        f"gives this {task_type} {index} port {port}, which is taken on this host ({e.strerror}): "
        "another task here has the same index, or another job uses the port") from e
  listener.listen(len(tasks))
  listener.settimeout(0.2)
  deadline = time.monotonic() + timeout_seconds

  def serve():
    while time.monotonic() < deadline and greeted_by != peers and not problems:
      try:
        connection, _ = listener.accept()
      except socket.timeout:
        continue
      with connection:
        try:
          connection.settimeout(5)
          connection.sendall(card.encode())
          reply = connection.makefile().readline()
          greeted_by.add(_check_peer(card, reply, "a peer"))
        except UserError as e:  # a task of this job with another cluster
          problems.append(e)
        except (OSError, ValueError, KeyError, TypeError) as e:  # a port scan, a dropped peer
          logging.info("Ignored a connection that is not a tfssl task's greeting: %r", e)

  server = threading.Thread(target=serve, daemon=True)
  server.start()
  try:
    for peer in sorted(peers):
      host, peer_port = address_of[peer].rsplit(":", 1)
      while peer not in greeted and not problems:
        if time.monotonic() > deadline:
          break
        try:
          with socket.create_connection((host, int(peer_port)), timeout=2) as connection:
            connection.settimeout(5)
            reply = connection.makefile().readline()
            connection.sendall(card.encode())
          if not reply:  # TensorFlow's server already holds the port: that task got past this
            greeted.add(peer)
            greeted_by.add(peer)
            continue
          answered = _check_peer(card, reply, address_of[peer])
          if answered != peer:
            raise _tf_config_error(
                f"of the task at {address_of[peer]} says it is {answered[0]} {answered[1]}, but "
                f"the cluster lists that address as {peer[0]} {peer[1]}")
          greeted.add(peer)
        except UserError:
          raise
        except (OSError, ValueError, KeyError, TypeError):  # not up yet, or not a tfssl task
          time.sleep(0.2)
    server.join(max(deadline - time.monotonic(), 0) + 1)
  finally:
    listener.close()
  if problems:
    raise problems[0]
  missing = sorted(peers - (greeted & greeted_by))
  if missing:
    not_up = ", ".join(f"{job} {i} at {address_of[(job, i)]}" for job, i in missing)
    raise UserError(
        f"This {task_type} {index} waited {timeout_seconds:.0f} s for the other tasks of "
        f"TF_CONFIG; not up: {not_up}."
        " Start every task listed there, each with the same cluster and its own task index, "
        "and check their host:port addresses are reachable from this host.")


def _refuse_evaluator(task_type):
  if task_type == "evaluator":
    raise _tf_config_error("makes this process the evaluator, which trains nothing: run it "
                           "with --run_eval")


def _refuse_training_alone(strategy):
  """A task of a TF_CONFIG cluster that would train as if it were the only one."""
  cluster, task_type, _ = read_tf_config()
  _refuse_evaluator(task_type)
  training_tasks = len(_training_tasks(cluster))
  if training_tasks > 1:
    raise UserError(
        f"TF_CONFIG lists {training_tasks} training tasks, but --strategy={strategy} trains on "
        "this host alone, so each task would train its own model into the same workdir. Use "
        "--strategy=auto or multiworker to train together, or unset TF_CONFIG to train apart.")


def _join_cluster(register_timeout_seconds):
  """MultiWorkerMirroredStrategy over the cluster of TF_CONFIG, once every task is up."""
  _, task_type, _ = read_tf_config()
  if task_type is None:
    raise _tf_config_error("is not set, but --strategy=multiworker needs it")
  _refuse_evaluator(task_type)
  check_cluster(register_timeout_seconds)
  return tf.distribute.MultiWorkerMirroredStrategy()


def _has_local_libtpu():
  """Whether this host is a TPU VM (whose TensorFlow would open its chips at import)."""
  return (os.path.exists("/lib/libtpu.so")
          or importlib.util.find_spec("libtpu") is not None)


def _tpu_strategy(tpu):
  """TPUStrategy on this TPU VM ("local") or on the TPU VM slice named `tpu`, whose hosts
  each run an input pipeline fed by this process (started on worker 0 only)."""
  if tpu != "local" and os.environ.get("TPU_LOAD_LIBRARY") != "0" and _has_local_libtpu():
    raise UserError(
        f"--tpu={tpu} drives a TPU slice from this host, which must then leave its own TPU "
        "chips to the slice's runtime: start the trainer with TPU_LOAD_LIBRARY=0 in the "
        "environment (config/tpu/launch.sh does), or use --tpu=local on a single TPU VM.")
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
  except ValueError as e:
    raise UserError(f"No TPU named '{tpu}' could be found ({e}). Check the name, zone and "
                    "project with: gcloud compute tpus tpu-vm list --zone=ZONE") from e
  except OSError as e:  # urllib's URLError: no Cloud TPU API or metadata server reachable
    raise UserError(
        f"Could not look up the TPU '{tpu}' ({e}): a TPU is found by name from a Google "
        "Cloud VM (the slice's worker 0); on a TPU VM of one host use --tpu=local.") from e
  except (RuntimeError, ImportError) as e:
    if "Google API client" not in str(e) and "googleapiclient" not in str(e):
      raise
    raise UserError(
        f"Finding the TPU '{tpu}' by name needs the Google API client: pip install "
        "google-api-python-client oauth2client (not cloud-tpu-client, which breaks protobuf "
        "for TensorFlow).") from e
  if tpu != "local":
    tf.config.experimental_connect_to_cluster(resolver)
  tf.tpu.experimental.initialize_tpu_system(resolver)
  return tf.distribute.TPUStrategy(resolver)


def make_strategy(tpu="", strategy="auto", cluster_register_timeout_seconds=600,
                  local_only=False):
  """TPU when `tpu` is given, several hosts from TF_CONFIG, all local GPUs, else the CPU.

  Args:
    tpu: "" for none, "local" on a TPU VM, or a TPU name / grpc address.
    strategy: one of STRATEGIES; "auto" decides from `tpu`, TF_CONFIG and visible GPUs.
    cluster_register_timeout_seconds: how long a worker of several waits for the others.
    local_only: this host's devices only, whatever TF_CONFIG says (an evaluator beside a
      job of several hosts).
  """
  if strategy not in STRATEGIES:
    raise UserError(f"Unknown strategy '{strategy}'. Known strategies: {', '.join(STRATEGIES)}.")
  if local_only and strategy == "multiworker":
    strategy = "auto"
  if tpu or strategy == "tpu":
    chosen = _tpu_strategy(tpu or "local")
  elif not local_only and uses_several_workers(tpu, strategy):
    chosen = _join_cluster(cluster_register_timeout_seconds)
  else:
    if not local_only:
      _refuse_training_alone(strategy)
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


def task_name(strategy):
  """"worker_1"-style name of this task of a job of several hosts ("chief" alone)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or resolver.task_type is None:
    return "chief"
  return f"{resolver.task_type}_{resolver.task_id}"


def is_chief(strategy):
  """Only the chief writes checkpoints, summaries and exports."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  return task_type in (None, "chief") or (task_type == "worker" and task_id == 0 and
                                          "chief" not in resolver.cluster_spec().as_dict())


def spans_several_hosts(strategy):
  """Whether `strategy` is a job of several tasks (hosts) that each run this program."""
  return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
          and strategy.extended._num_workers > 1)  # pylint: disable=protected-access


@functools.lru_cache(maxsize=None)
def _sum_over_tasks_fn(strategy):
  replicas_per_task = (strategy.num_replicas_in_sync
                       // strategy.extended._num_workers)  # pylint: disable=protected-access

  @tf.function
  def sum_over_tasks(values):
    per_replica = strategy.run(lambda task_values: task_values, args=(values,))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica,
                           axis=None) // replicas_per_task

  return sum_over_tasks


def agree(strategy, fn, what):
  """Runs `fn()` (returning an int, or None for 0) on this task and returns the chief's
  result on every task of a job of several hosts, so that all of them act on the one
  decision the chief took; alone (or `strategy` None), just fn().

  If fn raises on any task, every task raises: that task its own error, the others a
  UserError saying so. Without this, the tasks that went on would wait forever for the
  stopped one in their next collective. `what` names the step, for that message.

  fn runs on some tasks only (or does different work on each), so it must not run a
  collective itself, nor create a variable of `strategy` (which is one): a task would wait
  in it for peers that never come.
  """
  if strategy is None or not spans_several_hosts(strategy):
    return fn()
  error, value = None, 0
  try:
    value = int(fn() or 0)
  except Exception as e:  # pylint: disable=broad-except  # re-raised below, once the job knows
    error = e
  chief_value = value if is_chief(strategy) and error is None else 0
  failed, decided = (int(x) for x in _sum_over_tasks_fn(strategy)(
      tf.constant([int(error is not None), chief_value], tf.int64)))
  if error is not None:
    raise error
  if failed:
    raise UserError(f"{failed} other task(s) of this job stopped while {what} (their logs "
                    f"say why): this {task_name(strategy)} stops too rather than wait for "
                    "them. Fix what they report and start every task again.")
  return decided
