"""Steps/s of one process with two replicas against two worker processes with one replica
each (MultiWorkerMirroredStrategy over loopback gRPC), the same global batch.

On one machine this measures what the cross-host collectives and the second process cost,
not a speed-up: both runs share the same 2 cores.

    python benchmarks/multiworker_overhead.py
"""

import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO)

from tests.helpers import free_ports  # noqa: E402

LOOPS = 8
STEPS_PER_LOOP = 10
CASES = {
    "tiny (resnet10_v2 x0.0625, 16 px, batch 32)": [
        "model_width=0.0625", "image_size=16", "batch_size=32"],
    "resnet18_v2 x0.25, 32 px, batch 64": [
        "model=resnet18_v2", "model_width=0.25", "image_size=32", "batch_size=64"],
}


def measure(overrides, two_replicas):
  """In a fresh process: steps/s of the train loop on one cached batch (chief's view)."""
  # pylint: disable=g-import-not-at-top
  import tensorflow as tf
  from absl import logging
  if two_replicas:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  else:
    from tfssl import distribute
    strategy = distribute.make_strategy("", "multiworker")
  from tests.helpers import tiny_config
  from tfssl import trainer
  logging.set_verbosity(logging.WARNING)
  model = [o.split("=")[1] for o in overrides if o.startswith("model=")]
  config = tiny_config("supervised", *[o for o in overrides if not o.startswith("model=")],
                       "train_steps=100000", "summary_images=0",
                       **({"model": model[0]} if model else {}))
  exp = trainer.experiment_lib.resolve(config)
  run = trainer.Trainer(exp, "/tmp/unused_multiworker_benchmark", strategy)
  loop = run._train_loop_fn()  # pylint: disable=protected-access
  dataset_fn = trainer.make_train_dataset_fn(exp, run.method)
  iterator = iter(strategy.distribute_datasets_from_function(
      lambda context: dataset_fn(context).take(1).cache().repeat()))
  steps = tf.constant(STEPS_PER_LOOP)
  loop(iterator, steps)  # trace + compile
  start = time.time()
  for _ in range(LOOPS):
    metrics, _ = loop(iterator, steps)
  float(metrics["loss"])
  return LOOPS * STEPS_PER_LOOP / (time.time() - start)


def _run(overrides, two_replicas, tf_config=None):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  if tf_config:
    env["TF_CONFIG"] = json.dumps(tf_config)
  return subprocess.Popen(
      [sys.executable, __file__, "--measure", json.dumps(overrides), str(int(two_replicas))],
      env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _rate(process):
  out, _ = process.communicate(timeout=900)
  if process.returncode:
    raise RuntimeError(f"measurement failed with exit code {process.returncode}")
  return float(out.strip().splitlines()[-1])


def main():
  print(f"{'case':48s} {'1 proc x 2 replicas':>20s} {'2 workers x 1':>14s} {'ratio':>7s}")
  for name, overrides in CASES.items():
    one_host = _rate(_run(overrides, True))
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workers = [_run(overrides, False, {"cluster": cluster, "task": {"type": "worker", "index": i}})
               for i in range(2)]
    rates = [_rate(w) for w in workers]
    print(f"{name:48s} {one_host:14.1f} st/s {rates[0]:8.1f} st/s {rates[0] / one_host:7.2f}")
  print("ratio = steps/s of 2 workers x 1 replica / steps/s of 1 process x 2 replicas")


if __name__ == "__main__":
  if len(sys.argv) > 1 and sys.argv[1] == "--measure":
    print(measure(json.loads(sys.argv[2]), bool(int(sys.argv[3]))))
  else:
    main()
