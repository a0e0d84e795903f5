"""Steps/s of a tiny model with steps_per_loop=100 against 1: what the host loop saves.

The input is one cached batch so that only the step and the host calls are timed.

    python benchmarks/host_loop.py

Target (DESIGN.md): >= 3x.
"""

import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from absl import logging  # noqa: E402

from tests.helpers import tiny_config  # noqa: E402
from tfssl import trainer  # noqa: E402


def main():
  logging.set_verbosity(logging.WARNING)
  rates = {}
  for steps_per_loop in (1, 100):
    steps = 600
    config = tiny_config("supervised", f"train_steps={steps}", f"steps_per_loop={steps_per_loop}",
                         "checkpoint_every_steps=100000", "summary_images=0", "image_size=8",
                         "batch_size=8", "log_every_seconds=1000")
    with tempfile.TemporaryDirectory() as workdir:
      exp = trainer.experiment_lib.resolve(config)
      trainer.prepare_workdir(exp, workdir).release()
      run = trainer.Trainer(exp, workdir, trainer.tf.distribute.get_strategy())
      loop = run._train_loop_fn()  # pylint: disable=protected-access
      dataset_fn = trainer.make_train_dataset_fn(exp, run.method)
      # One cached batch: the input pipeline must not be what is measured.
      iterator = iter(run.strategy.distribute_datasets_from_function(
          lambda context: dataset_fn(context).take(1).cache().repeat()))
      loop(iterator, trainer.tf.constant(steps_per_loop))  # trace + compile
      start = time.time()
      for _ in range(steps // steps_per_loop):
        loop(iterator, trainer.tf.constant(steps_per_loop))
      rates[steps_per_loop] = steps / (time.time() - start)
  print(f"steps/s with steps_per_loop=1  : {rates[1]:8.1f}")
  print(f"steps/s with steps_per_loop=100: {rates[100]:8.1f}")
  print(f"ratio                          : {rates[100] / rates[1]:8.2f} (target >= 3)")


if __name__ == "__main__":
  main()
