"""Soak: a tiny run SIGKILLed at random moments, rerun each time, against one left alone.

The trainer CLI (the tests' tiny supervised ResNet-10 on 16-px digits, 3000 steps, a
checkpoint every 10) is started, killed a random 0.2-2.5 s after it logs its first step
(while it trains, writes a checkpoint or its export), and started again, `--kills` times;
then it runs to the end. Every rerun must start (no message, no traceback) and the run
must end at its last step with a module that loads and with final weights equal, tensor
for tensor and bit for bit, to those of an uninterrupted run of the same command (a
resumed run continues its input stream where its checkpoint left it). Exits 1 if any of
that fails.

    python benchmarks/fault_soak.py --kills=20

Prints the faults tried, survived (reruns that failed, whether the final module loads) and
the data lost (checkpoints a rerun found unreadable and fell back past).
"""

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO)

from tests.helpers import trainer_command  # noqa: E402

STEPS = 3000
FLAGS = [f"--config.train_steps={STEPS}", "--config.checkpoint_every_steps=10",
         "--config.keep_checkpoints=2", "--config.lease_heartbeat_seconds=1",
         "--config.lease_stale_seconds=5"]


TRAINING = re.compile(r" step \d+/\d+ \|")  # the log line of a finished host loop


def final_weights(workdir):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  reader = tf.train.load_checkpoint(os.path.join(workdir, "checkpoints", f"ckpt-{STEPS}"))
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
          if not name.startswith("_CHECKPOINTABLE") and "save_counter" not in name}


def run(workdir, timeout=None):
  return subprocess.run(trainer_command(workdir, *FLAGS), cwd=REPO, capture_output=True,
                        text=True, timeout=timeout)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--kills", type=int, default=20)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--min_delay", type=float, default=0.2,
                      help="seconds after a run's first logged step before its kill, at least")
  parser.add_argument("--max_delay", type=float, default=2.5)
  args = parser.parse_args()
  rng = random.Random(args.seed)
  root = tempfile.mkdtemp(prefix="fault_soak_")
  reference, soaked = os.path.join(root, "reference"), os.path.join(root, "soaked")
  started = time.time()
  assert run(reference).returncode == 0, "the uninterrupted run failed"
  killed_at, failed_reruns, fallbacks, resumed = [], [], 0, 0
  for _ in range(args.kills):
    delay = rng.uniform(args.min_delay, args.max_delay)
    # The log goes to a file: a pipe nobody reads would block the trainer once full.
    with tempfile.NamedTemporaryFile("w+") as log:
      process = subprocess.Popen(trainer_command(soaked, *FLAGS), cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=log, text=True)
      # The delay counts from the first logged step, so kills land while the run trains,
      # saves or exports however long the machine takes to start it.
      while process.poll() is None and not TRAINING.search(open(log.name).read()):
        time.sleep(0.1)
      try:
        process.wait(timeout=delay)
        finished = True
      except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        finished = False
      log.seek(0)
      text = log.read()
    resumed += "Resumed from" in text
    # A rerun that had to fall back past an unreadable checkpoint lost that checkpoint.
    fallbacks += text.count("cannot be read")
    if finished:
      if process.returncode != 0:
        failed_reruns.append(text[-500:])
      break
    checkpoints = sorted(int(name.split("-")[1].split(".")[0])
                         for name in os.listdir(os.path.join(soaked, "checkpoints"))
                         if name.endswith(".index")) if os.path.isdir(
                             os.path.join(soaked, "checkpoints")) else []
    killed_at.append((round(delay, 1), checkpoints[-1] if checkpoints else 0))
  last = run(soaked)
  fallbacks += last.stderr.count("cannot be read")
  if last.returncode != 0:
    failed_reruns.append(last.stderr[-500:])
  want, got = final_weights(reference), final_weights(soaked)
  differing = sorted(name for name in want if not np.array_equal(want[name], got.get(name)))
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  module = os.path.join(soaked, "export", "hub", str(STEPS))
  loads = "logits" in tf.saved_model.load(module)(tf.zeros([1, 16, 16, 3]), training=False)
  print(f"kills: {len(killed_at)} (seconds after the first logged step, newest checkpoint "
        f"then): {killed_at}")
  print(f"reruns that failed: {len(failed_reruns)}; reruns that resumed from a checkpoint: "
        f"{resumed + ('Resumed from' in last.stderr)}")
  for text in failed_reruns:
    print("  ", text.replace("\n", " | "))
  print(f"final weights: {len(want) - len(differing)}/{len(want)} tensors bit-identical to "
        f"the uninterrupted run's" + (f"; differing: {differing[:5]}" if differing else ""))
  ok = not failed_reruns and loads and not differing and set(got) == set(want)
  survived = len(killed_at) if ok else "NOT ALL"
  print(f"faults tried {len(killed_at)}, survived {survived} (reruns that failed: "
        f"{len(failed_reruns)}; the step-{STEPS} module loads: {loads}); checkpoints lost "
        f"(unreadable, fallen back past): {fallbacks}; final weights equal to the "
        f"uninterrupted run's: {not differing} ({time.time() - started:.0f} s)")
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
