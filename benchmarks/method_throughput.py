"""Train-step images/s of every registered method relative to `supervised` on the same backbone
and input size.

    python benchmarks/method_throughput.py
    python benchmarks/method_throughput.py --methods=supervised,rotation --seconds=3

Each method runs the trainer's own host loop (`Trainer._train_loop_fn`) on the default
strategy, fed ONE batch of its real input pipeline over and over (cached), so what is
timed is the step and not tf.data. After a compiling warm-up, the method and a
`supervised` step of the same model, width and batch size, on images of the size its
backbone is fed (the patch size for patch methods), are timed in alternating rounds of
whole host loops, `--seconds` in total each, and each keeps its best round, so the ratio
is comparable on a shared, noisy machine.

Two rates per method:
  images/s  source images: the global batch_size, plus unsup_batch_size for two-stream
            methods; for PAWS the unlabelled batch plus the support set.
`pseudo_label` is timed on a pseudo-label file holding the dataset's own labels.
  inputs/s  network inputs: the rows (leading dimension) of every tensor the step feeds
            `method.backbone`: rotations, crops, views, patches. They are counted once per
            method, by running its `compute_loss` on the batch while the backbone records
            its calls. Other networks (e.g. an EMA teacher) are not counted.
"""

import argparse
import contextlib
import gc
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import logging  # noqa: E402

from tfssl import config as config_lib  # noqa: E402
from tfssl import experiment  # noqa: E402
from tfssl import datasets  # noqa: E402
from tfssl import methods  # noqa: E402
from tfssl import pseudo_labels  # noqa: E402
from tfssl import trainer  # noqa: E402

BASELINE = "supervised"
# Host loops per timed round; a round ends at most one loop past its budget.
_LOOPS_PER_ROUND = 4


def make_config(method, args, image_size=None):
  """The method's defaults with the benchmark's model, size (or `image_size`), batch and
  dataset, and the `--set` overrides of keys the method has."""
  method_cls = methods.get_method(method)
  known = set(config_lib.base_config()) | set(method_cls.default_config())
  overrides = [o for o in args.set if o.partition("=")[0] in known]
  return config_lib.build_config(
      method_cls, overrides, method=method, model=args.model, dataset=args.dataset,
      model_width=args.width, image_size=image_size or args.image_size,
      batch_size=args.batch_size,
      pseudo_labels=true_labels_file(args) if method == "pseudo_label" else None)


def true_labels_file(args):
  """A pseudo-label file that gives every training image its own label (made once)."""
  path = os.path.join(tempfile.gettempdir(), f"tfssl_bench_true_labels_{args.dataset}.json")
  if not os.path.exists(path):
    source = datasets.get_source(args.dataset)
    ids, labels = source.labels_and_ids(source.train_split)
    pseudo_labels.write(path, ids=ids, labels=labels, dataset=args.dataset,
                        split=source.train_split, num_classes=source.num_classes)
  return path


def runnable_methods(args):
  """(registered methods whose config resolves with these settings, {other: reason})."""
  runnable, skipped = [], {}
  for name in methods.METHODS.names():
    try:
      experiment.resolve(make_config(name, args))
    except Exception as e:  # pylint: disable=broad-except
      skipped[name] = error_text(e)
    else:
      runnable.append(name)
  return runnable, skipped


def error_text(error, limit=160):
  lines = str(error).strip().splitlines() or [""]
  text = f"{type(error).__name__}: {lines[0]}"
  return text if len(text) <= limit else text[:limit - 3] + "..."


@contextlib.contextmanager
def recorded_calls(model):
  """Yields a list that gets the leading dimension of the input of every call of `model`.

  The instance's class is swapped for a subclass whose `__call__` records first, so calls
  made through any reference to the model are seen; the class is restored on exit.
  """
  rows = []
  original = type(model)

  class Recording(original):

    def __call__(self, *args, **kwargs):
      inputs = args[0] if args else kwargs["inputs"]
      rows.append(tf.shape(tf.nest.flatten(inputs)[0])[0])
      return super().__call__(*args, **kwargs)

  object.__setattr__(model, "__class__", Recording)  # Keras' __setattr__ would track it.
  try:
    yield rows
  finally:
    object.__setattr__(model, "__class__", original)


def backbone_inputs_per_step(method, strategy, batch):
  """Rows that one training loss on `batch` feeds `method.backbone`, over all replicas."""

  @tf.function
  def count(batch):
    with recorded_calls(method.backbone) as rows:
      strategy.run(lambda b: method.compute_loss(b, training=True), args=(batch,))
    return tf.add_n(rows) if rows else tf.constant(0)

  return int(count(batch))


class StepRunner:
  """One method's Trainer on the default strategy, fed one cached batch of its real input."""

  def __init__(self, config, workdir, loop_seconds):
    """Builds, compiles and sizes host loops to about `loop_seconds` (at least one step)."""
    exp = experiment.resolve(config)
    self.trainer = trainer.Trainer(exp, workdir, tf.distribute.get_strategy())
    method, strategy = self.trainer.method, self.trainer.strategy
    dataset_fn = trainer.make_train_dataset_fn(exp, method)
    # One batch, cached and repeated: the input pipeline must not be what is measured.
    self.iterator = iter(strategy.distribute_datasets_from_function(
        lambda context: dataset_fn(context).take(1).cache().repeat()))
    self.loop = self.trainer._train_loop_fn()  # pylint: disable=protected-access
    self.images_per_step = config.batch_size
    if method.support_stream:  # PAWS: the support set, plus the unlabelled batch
      support = config.support_classes * config.support_images_per_class
      self.images_per_step = support + (config.batch_size if method.input_mode == "two_streams"
                                        else 0)
    elif method.input_mode == "two_streams":
      self.images_per_step += methods.base.unsup_batch_size(config)
    self.inputs_per_step = backbone_inputs_per_step(method, strategy, next(self.iterator))
    self.backbone_image_size = method.backbone_image_size
    self.nonfinite_loss = False
    self.run_loop(2)  # trace and compile (the first step and the loop body)
    start = time.perf_counter()
    self.run_loop(2)
    step_seconds = (time.perf_counter() - start) / 2
    self.steps_per_loop = max(int(loop_seconds / step_seconds), 1)

  def run_loop(self, num_steps):
    _, first_bad = self.loop(self.iterator, tf.constant(num_steps, tf.int32))
    # Reading the result waits for the loop: every step's loss feeds it.
    self.nonfinite_loss |= int(first_bad) >= 0

  def steps_per_second(self, seconds):
    """Runs whole host loops until `seconds` have passed; returns their steps per second."""
    steps, start = 0, time.perf_counter()
    while True:
      self.run_loop(self.steps_per_loop)
      steps += self.steps_per_loop
      elapsed = time.perf_counter() - start
      if elapsed >= seconds:
        return steps / elapsed


def best_steps_per_second(runners, seconds, rounds):
  """Alternates the runners round by round; each one's best round, in steps per second.

  On a shared machine other processes slow some rounds down; alternating exposes every
  runner to the same interference and the best round is the least disturbed one.
  """
  round_seconds = seconds / rounds
  best = [0.0] * len(runners)
  for _ in range(rounds):
    for i, runner in enumerate(runners):
      best[i] = max(best[i], runner.steps_per_second(round_seconds))
  return best


class Baselines:
  """`supervised` runners by input size, made when a method first needs one."""

  def __init__(self, args, root):
    self.args, self.root, self.runners = args, root, {}

  def at(self, image_size):
    """The runner at `image_size`, or None (said once) if supervised cannot run there."""
    if image_size not in self.runners:
      try:
        self.runners[image_size] = StepRunner(
            make_config(BASELINE, self.args, image_size=image_size),
            os.path.join(self.root, f"{BASELINE}_{image_size}px"), loop_seconds(self.args))
      except Exception as e:  # pylint: disable=broad-except
        self.runners[image_size] = None
        print(f"{BASELINE:>24} at {image_size} px: error, so no ratios there: "
              f"{error_text(e)}", flush=True)
    return self.runners[image_size]


def measure(name, baselines, args, workdir):
  """(runner, its steps/s, the baseline at its input size, that one's steps/s in the same
  rounds; the last two None if there is no baseline)."""
  if name == BASELINE:
    baseline = baselines.at(args.image_size)
    if baseline is None:
      raise RuntimeError("supervised did not build")
    rate, = best_steps_per_second([baseline], args.seconds, args.rounds)
    return baseline, rate, baseline, rate
  runner = StepRunner(make_config(name, args), workdir, loop_seconds(args))
  baseline = baselines.at(runner.backbone_image_size)
  rates = best_steps_per_second([runner] + ([baseline] if baseline else []), args.seconds,
                                args.rounds)
  return runner, rates[0], baseline, (rates[1] if baseline else None)


def loop_seconds(args):
  return args.seconds / args.rounds / _LOOPS_PER_ROUND


def ratio(value, reference):
  return f"{value / reference:.2f}" if value and reference else "-"


def result_line(name, runner, rate, baseline, baseline_rate):
  images = rate * runner.images_per_step
  inputs = rate * runner.inputs_per_step
  sup_images = baseline_rate * baseline.images_per_step if baseline_rate else 0.0
  sup_inputs = baseline_rate * baseline.inputs_per_step if baseline_rate else 0.0
  inputs_text = f"{inputs:.1f}" if inputs else "-"  # the backbone was never called
  note = "  non-finite loss" if runner.nonfinite_loss else ""
  return (f"{name:>24} {images:>9.1f} {inputs_text:>9} "
          f"{runner.inputs_per_step / runner.images_per_step:>6.2f} "
          f"{runner.backbone_image_size:>5} {ratio(images, sup_images):>9} "
          f"{ratio(inputs, sup_inputs):>8} {sup_images:>9.1f} {runner.steps_per_loop:>10}{note}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--methods", default="",
                      help="comma-separated method names (default: every registered method "
                           "that can run with these settings)")
  parser.add_argument("--model", default="resnet18_v2")
  parser.add_argument("--width", type=float, default=0.25, help="model_width")
  parser.add_argument("--image_size", type=int, default=32)
  parser.add_argument("--batch_size", type=int, default=32, help="global (labelled) batch")
  parser.add_argument("--seconds", type=float, default=10.0,
                      help="timed seconds per method and per supervised reference")
  parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per method")
  parser.add_argument("--dataset", default="digits")
  parser.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                      help="config override, applied to the methods that have KEY "
                           "(default: patch_size=10, patch_jitter=3, patch_net=false, so "
                           "patch methods fit 32-px images with the backbone supervised "
                           "uses at 10 px)")
  args = parser.parse_args()
  args.set = (args.set if args.set is not None
              else ["patch_size=10", "patch_jitter=3", "patch_net=false"])
  logging.set_verbosity(logging.WARNING)

  if args.methods:
    names, skipped = [n.strip() for n in args.methods.split(",") if n.strip()], {}
  else:
    names, skipped = runnable_methods(args)
  # The reference first; it is timed on its own rather than against itself.
  names = sorted(names, key=lambda name: name != BASELINE)

  print(f"{args.model} width {args.width:g}, {args.image_size} px, batch {args.batch_size} "
        f"(+ unsup_batch_size for two-stream methods), {args.dataset}, one cached batch; "
        f"best of {args.rounds} rounds over {args.seconds:g} s per method, alternating with "
        f"{BASELINE}; {os.cpu_count()} CPUs, TF {tf.__version__}, Keras {keras.__version__}")
  print("images/s: source images; inputs/s: rows fed to method.backbone (views, patches) "
        f"of in px; x sup: ratio to {BASELINE} at in px, timed in the same rounds")
  for name, reason in skipped.items():
    print(f"skipped {name}: {reason}")
  header = (f"{'method':>24} {'images/s':>9} {'inputs/s':>9} {'in/img':>6} {'in px':>5} "
            f"{'img x sup':>9} {'in x sup':>8} {'sup img/s':>9} {'steps/loop':>10}")
  print(header)
  print("-" * len(header), flush=True)

  with tempfile.TemporaryDirectory() as root:
    baselines = Baselines(args, root)
    for name in names:
      try:
        runner, rate, baseline, baseline_rate = measure(name, baselines, args,
                                                        os.path.join(root, name))
      except Exception as e:  # pylint: disable=broad-except
        print(f"{name:>24} error: {error_text(e)}", flush=True)
        continue
      print(result_line(name, runner, rate, baseline, baseline_rate), flush=True)
      del runner
      gc.collect()


if __name__ == "__main__":
  main()
