"""Run configuration: global defaults, a method's own defaults, then `KEY=VALUE` overrides.

Only the CLIs turn `--config.KEY=VALUE` flags into the override list; library code
receives a finished `ml_collections.ConfigDict`.
"""

import ast
import difflib
import json

import ml_collections

from tfssl.errors import UserError

# Keys that decide the shapes of the variables in a checkpoint, or what they compute
# (input_normalization, stem_pool_padding): resuming a workdir with other values would
# restore the wrong tensors, fail half-way, or feed the weights inputs they were not
# trained on.
BACKBONE_FUNCTION_KEYS = ("input_normalization", "stem_pool_padding")
STRUCTURAL_KEYS = ("method", "model", "model_width", "dataset",
                   "num_classes_override") + BACKBONE_FUNCTION_KEYS


def base_config():
  """Defaults shared by every method (ImageNet-style supervised training)."""
  c = ml_collections.ConfigDict()
  c.method = "supervised"
  c.model = "resnet50_v2"
  c.dataset = "digits"
  c.dataset_dir = ""
  c.labels = "all"  # all | 1pct | 10pct | N | N_per_class | file:PATH
  c.seed = 0
  c.num_classes_override = 0  # 0: the dataset's number of classes
  # Train on the labels of this file (python -m tfssl.label) instead of the dataset's.
  c.pseudo_labels = ""
  # Start from the weights of another run (its workdir or a checkpoint path): every layer
  # this method shares with it by name, its Polyak averages where it kept them.
  c.init_from = ""

  # Model.
  c.image_size = 0  # 0: the dataset's default training size
  c.model_width = 1.0  # width multiplier (Revisiting's filters_factor / 4)
  # What the backbone does to its [0, 1] input: "" its own (ResNets, ViTs: [-1, 1]);
  # "imagenet": torchvision's mean/std standardisation, which weights converted from
  # PyTorch releases (python -m tfssl.convert) were trained with; "raw": the [0, 1]
  # pixels unchanged (SimCLR's and FNC's TF releases).
  c.input_normalization = ""
  # The ResNets' stem max-pool: "" pads every side by one (torchvision); "same": TF's
  # SAME padding, as the SimCLR / FNC releases were trained with.
  c.stem_pool_padding = ""
  c.sync_bn = False  # cross-replica batch norm
  c.bn_momentum = 0.9
  c.bn_epsilon = 1e-5

  # Batches are global (summed over replicas); per-replica sizes are derived.
  c.batch_size = 256
  c.eval_batch_size = 256
  c.shuffle_buffer = 10_000
  c.crop_area_min = 0.08  # inception crop area range (crop_area_min, 1) of training images
  c.cache_dataset = False

  # Schedule: epochs count images of the (labelled) training stream.
  c.train_epochs = 90.0  # 0 (with train_steps 0): no training, export the random init
  c.train_steps = 0  # > 0 overrides train_epochs
  c.warmup_epochs = 5.0
  c.warmup_start_factor = 0.0  # warmup starts at learning_rate * warmup_start_factor
  c.lr_schedule = "piecewise"  # piecewise | cosine | constant
  c.decay_epochs = (30.0, 60.0, 80.0)
  c.decay_factor = 0.1
  c.end_lr_factor = 0.0  # cosine decays to learning_rate * end_lr_factor

  # Optimizer.
  c.optimizer = "sgd"  # sgd | adam | adamw | lars
  c.learning_rate = 0.1
  c.lr_scaling = "linear"  # linear: lr * batch / lr_base_batch_size | sqrt: lr * sqrt(batch) | none
  c.lr_base_batch_size = 256
  c.momentum = 0.9
  c.nesterov = False
  c.adam_beta1 = 0.9
  c.adam_beta2 = 0.999
  c.adam_epsilon = 1e-8
  c.lars_eta = 0.001
  # Variables whose path contains one of these get neither LARS's trust ratio nor its decay.
  c.lars_exclude = ()
  c.weight_decay = 1e-4
  # l2: wd * sum(w**2) / 2 added to the loss, as the TF1 codebases did;
  # decoupled: applied by the optimizer (AdamW, LARS).
  c.weight_decay_mode = "l2"
  c.weight_decay_skip_bias_and_bn = True
  # >= 0 (adamw only): the decay follows a cosine from weight_decay to this (DINO).
  c.weight_decay_end = -1.0
  c.label_smoothing = 0.0
  # Evaluate and export an exponential moving average of the weights (S4L's Polyak
  # averaging: decay 0.5 ** (1 / steps), a half-life of polyak_half_life_epochs).
  c.polyak_averaging = False
  c.polyak_half_life_epochs = 1.0

  # Execution.
  c.precision = "float32"  # float32 | mixed_bfloat16
  c.jit_compile = True  # XLA-compile the per-replica step off TPU
  c.steps_per_loop = 100  # train steps per host call
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  c.export_every_steps = 0  # 0: export only at the end
  c.log_every_seconds = 10.0
  # One input pipeline per replica instead of per host (MirroredStrategy only): one host
  # then reads the very batches of a job with one replica on each of several hosts.
  c.input_pipeline_per_replica = False
  c.cluster_wait_seconds = 600.0  # how long a task of several hosts waits for the others
  c.summary_images = 16  # augmented training images written to TensorBoard at start
  # Warn when a loss stays within stall_loss_tolerance (relative) of its value for uniform
  # predictions (ln of the classes or prototypes), or embedding_std_normalised below
  # collapsed_embedding_std, for stall_warning_loops consecutive host loops (0: never).
  c.stall_warning_loops = 3
  c.stall_loss_tolerance = 0.02
  c.collapsed_embedding_std = 0.05
  # The chief's lease on the workdir (WORKDIR/lease.json): renewed this often; a lease whose
  # heartbeat is older than lease_stale_seconds (its host gone) is taken over.
  c.lease_heartbeat_seconds = 30.0
  c.lease_stale_seconds = 120.0

  # The --run_eval job.
  c.eval_poll_seconds = 30.0
  c.eval_timeout_seconds = 3600.0  # stop following the workdir after this long without a new checkpoint
  # A method without a classifier is scored by k-NN (online_knn): its memory is at most this
  # many labelled training images, a seeded sample of them (<= 0: all).
  c.knn_max_train_examples = 100_000
  return c


def build_config(method_cls, overrides=(), **fields):
  """Global defaults + the method's defaults + `fields` + `KEY=VALUE` overrides."""
  config = base_config()
  with config.unlocked():
    config.update(method_cls.default_config())
  for key, value in fields.items():
    if value is not None:
      set_value(config, key, value)
  apply_overrides(config, overrides)
  config.lock()
  return config


def apply_overrides(config, overrides):
  """Applies `KEY=VALUE` strings, each parsed to the type of the value it replaces."""
  for override in overrides:
    key, sep, text = override.partition("=")
    if not sep:
      raise UserError(f"Config override '{override}' is not of the form KEY=VALUE "
                      "(e.g. --config.batch_size=512).")
    key = key.strip()
    set_value(config, key, parse_value(text, _current(config, key)))
  return config


def parse_value(text, current=None):
  """Parses an override's text into the type of the value it replaces."""
  if isinstance(current, str):
    return text
  if isinstance(current, (tuple, list)):
    if not text.strip():
      return ()
    items = text.strip("()[] ").split(",")
    return tuple(parse_value(item.strip()) for item in items if item.strip())
  if isinstance(current, bool) or text.lower() in ("true", "false"):
    if text.lower() not in ("true", "false", "1", "0"):
      raise UserError(f"Expected true or false, got '{text}'.")
    return text.lower() in ("true", "1")
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def _current(config, key):
  try:
    return config[key]
  except KeyError:
    return None


def set_value(config, key, value):
  """Sets an existing key, converting ints to floats and scalars to tuples where needed."""
  if key not in config:
    close = difflib.get_close_matches(key, list(config.keys()), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UserError(f"Unknown config key '{key}'.{hint} Known keys: {', '.join(sorted(config.keys()))}.")
  current = config[key]
  if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if isinstance(current, tuple) and not isinstance(value, tuple):
    value = tuple(value) if isinstance(value, list) else (value,)
  try:
    config[key] = value
  except TypeError as e:
    raise UserError(f"Config key '{key}' expects {type(current).__name__}, got {value!r}.") from e


def to_json(config):
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def structural_mismatch(saved, config):
  """Structural keys whose value in a saved config.json differs from `config`."""
  return {key: (saved.get(key), config.get(key)) for key in STRUCTURAL_KEYS
          if key in saved and saved.get(key) != config.get(key)}
