"""Scores an exported hub module: linear evaluation, fine-tuning, k-nearest neighbours or
PAWS's soft nearest neighbours (`snn`: the labelled subset `--labels` is the support set).

    python -m tfssl.eval_hub --hub_module=RUN/export/hub --dataset=digits \
        --protocol=linear --workdir=EVAL

`--hub_module` is a module dir or a run's `export/hub` dir (the newest step is taken);
the module's `module_info.json` supplies the dataset and image size unless flags say
otherwise. Writes WORKDIR/results.json and TensorBoard scalars, and prints a table.

A SavedModel that tfssl did not write (a Keras model, any TF2 module with signatures, a
TF1 Hub module such as S4L's, Revisiting's or SimCLR v1's) is scored too; without
module_info.json it needs `--dataset` and is evaluated at the signature's fixed input size,
else `--config.image_size`, else the dataset's. `--signature` picks what is called
(serving_default, else default, else its only one), `--output_key` the output scored as
`default` (the others keep their names), `--input_range` what the [0, 1] images are mapped
to (`-1,1`, `0,255`). Where a guess fails, one message lists the module's signatures.

`--representation=all` scores every tap (pre-logits `default`, `stem`, `blockN`, ...) but
`logits`, one result row each. Spatial taps are reduced to vectors as `--config.pool_mode`
says: `global_avg`, or Revisiting's `max` / `avg` pooling to at most
`--config.pool_max_dims` (9000) values; each row records how its tap was pooled.
"""

import dataclasses
import json
import math
import os
import time

import keras
import ml_collections
import numpy as np
import tensorflow as tf
from absl import flags
from absl import logging

from tfssl import cli
from tfssl import config as config_lib
from tfssl import datasets
from tfssl import experiment
from tfssl import export as export_lib
from tfssl import losses
from tfssl import preprocess as pp
from tfssl import records
from tfssl import report
from tfssl.errors import UserError
from tfssl.registry import Registry

PROTOCOLS = Registry("protocol")
# Protocols that hold every train and eval feature vector of a tap in host memory.
FEATURE_CACHING_PROTOCOLS = ("linear", "knn", "snn")
# Protocols that read only the `--labels` subset of the training split.
LABEL_SUBSET_PROTOCOLS = ("finetune", "snn")


def default_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.batch_size = 256
  c.image_size = 0  # 0: the module's image size
  # How a spatial tap [H, W, C] becomes the vector the linear, knn and finetune heads see:
  # "global_avg" averages over space (C dims); "max" / "avg" is Revisiting's adaptive
  # pooling: taps of more than pool_max_dims values are max/avg pooled with a square
  # window (= stride) just large enough to leave at most pool_max_dims, smaller ones are
  # flattened whole. Vector taps (pre-logits `default`) are used as they are.
  c.pool_mode = "global_avg"
  c.pool_max_dims = 9000
  # linear/knn cache every tap's train and eval features in memory; refuse (with advice)
  # rather than run a host out of memory. <= 0 disables the check.
  c.feature_cache_max_gb = 16.0
  # linear: L2-regularised logistic regression on frozen features; the regulariser is
  # chosen on a held-out part of train, then the classifier is refit on all of train.
  c.linear_l2_values = (0.0, 1e-5, 1e-4, 1e-3, 1e-2)
  c.linear_epochs = 100
  # ... and at least this many Adam steps: 100 epochs of a small train split are too few
  # (digits: 1437 images at batch 1024 are 100 steps, which left SwAV's features at 0.8472
  # top-1 against 0.9167 at 1000 steps; random-init features 0.9083 at both). ImageNet and
  # CIFAR take more steps than this from their epochs alone.
  c.linear_min_steps = 1000
  c.linear_batch_size = 1024
  c.linear_learning_rate = 0.01
  c.holdout_fraction = 0.1
  # finetune: the whole network plus a new linear head.
  c.finetune_epochs = 30.0
  c.finetune_batch_size = 64
  c.finetune_learning_rate = 0.01
  c.finetune_momentum = 0.9
  c.finetune_weight_decay = 0.0
  c.finetune_head_learning_rate_mult = 1.0
  # knn: cosine similarity, the k nearest vote with weights exp(sim / temperature).
  c.knn_k = 20
  c.knn_temperature = 0.07
  # snn: PAWS's soft nearest neighbours, softmax(cosine / temperature) over the labelled
  # support set times its one-hot labels (suncet snn_eval.py).
  c.snn_temperature = 0.1
  return c


class Task:
  """A loaded module with the dataset it is evaluated on."""

  def __init__(self, module_dir, dataset, dataset_dir, config, signature=None,
               output_key=None, input_range=None):
    """`signature`, `output_key`, `input_range`: how to call a module tfssl did not write
    (one without module_info.json), see ForeignModule; None for its defaults. Any of them
    given calls a tfssl module that way too."""
    self.module_dir = module_dir
    self.info = export_lib.read_module_info(module_dir)
    self.config = config
    if input_range is not None:
      parse_input_range(input_range)  # a typo fails before the dataset is looked at
    foreign = not self.info or any(v is not None for v in (signature, output_key, input_range))
    self.dataset_name = dataset or self.info.get("dataset")
    if not self.dataset_name:
      raise UserError(f"{module_dir} has no module_info.json naming its dataset: pass --dataset.")
    dataset_dir = dataset_dir if dataset_dir is not None else (
        self.info.get("dataset_dir") if self.dataset_name == self.info.get("dataset") else None)
    experiment.check_paths(experiment.dataset_paths(self.dataset_name, dataset_dir))
    self.source = datasets.get_source(self.dataset_name, dataset_dir=dataset_dir or None)
    self.source.check_labelled("Scoring a module (python -m tfssl.eval_hub)")
    self.dataset_dir = dataset_dir
    self.module = load_module(module_dir)
    self.foreign = None
    self._probe_batch = 1
    if foreign:
      self.foreign = self.module = ForeignModule(self.module, module_dir, signature, output_key,
                                                 input_range, is_tfssl=bool(self.info))
      self._probe_batch = self.foreign.batch_size or 1
    self.image_size = self._image_size()
    self._output_shapes = None

  def _image_size(self):
    config, foreign = self.config, self.foreign
    if foreign and foreign.batch_size and config.batch_size != foreign.batch_size:
      raise UserError(f"Signature '{foreign.signature}' of {self.module_dir} takes batches of "
                      f"exactly {foreign.batch_size}: pass "
                      f"--config.batch_size={foreign.batch_size}.")
    fixed = foreign and foreign.fixed_image_size
    if not fixed:
      return config.image_size or self.info.get("image_size") or self.source.image_size
    if config.image_size and config.image_size != fixed:
      raise UserError(f"Signature '{foreign.signature}' of {self.module_dir} takes "
                      f"{fixed}x{fixed} images, not --config.image_size={config.image_size}: "
                      f"drop that flag or pass {fixed}.")
    logging.info("Signature '%s' takes %dx%d images: evaluating at that size.",
                 foreign.signature, fixed, fixed)
    return fixed

  def eval_preprocess(self, features):
    return {"image": pp.eval_crop(features["image"], self.image_size),
            "label": features["label"], "id": features["id"]}

  def output_shapes(self):
    """{name: per-example shape} of every module output at this task's image size."""
    if self._output_shapes is None:
      # A SavedModel's traced outputs may have unknown spatial dims; one eager call
      # gives the real ones, which pooling windows are computed from.
      probe = self.module(tf.zeros([self._probe_batch, self.image_size, self.image_size, 3]),
                          training=False)
      self._output_shapes = {name: tuple(value.shape[1:]) for name, value in probe.items()}
    return self._output_shapes

  def pooling(self, representation):
    """How `representation` is reduced to a vector under this task's config."""
    shapes = self.output_shapes()
    if representation not in shapes:
      raise UserError(f"Module {self.module_dir} has no representation '{representation}'. "
                      f"It has: {', '.join(sorted(shapes))}.")
    return plan_pooling(shapes[representation], self.config.pool_mode,
                        self.config.pool_max_dims)

  def features(self, split, representations, keep_ids=None):
    """Pooled frozen features of every example of `split` (or of `keep_ids`):
    ({name: [N, D]}, labels, ids).

    Each batch's taps are pooled before they are kept, so the cache holds D values per
    example, never a whole feature map.
    """
    poolings = {name: self.pooling(name) for name in representations}
    dataset = datasets.eval_dataset(self.source, split=split, batch_size=self.config.batch_size,
                                    preprocess_fn=self.eval_preprocess, keep_ids=keep_ids)

    @tf.function
    def represent(images):
      reps = self.module(images, training=False)
      return {name: apply_pooling(reps[name], pooling) for name, pooling in poolings.items()}

    outputs = {name: [] for name in representations}
    labels, ids = [], []
    for batch in dataset:
      keep = batch["mask"].numpy() > 0
      pooled = represent(batch["image"])
      for name in representations:
        outputs[name].append(pooled[name].numpy()[keep])
      labels.append(batch["label"].numpy()[keep])
      ids.append(batch["id"].numpy()[keep])
    return ({k: np.concatenate(v) for k, v in outputs.items()}, np.concatenate(labels),
            np.concatenate(ids))

  def labelled_ids(self, labels):
    """Ids of the `labels` subset of the training split (None for all), and their count.

    The subset the module's run trained with (same spec and dataset) is drawn with that
    run's seed, so it is the same images."""
    ids, all_labels = self.source.labels_and_ids(self.source.train_split)
    if labels == "all":
      return None, len(ids)
    seed = self.config.seed
    if labels == self.info.get("labels") and self.dataset_name == self.info.get("dataset"):
      seed = self.info.get("config", {}).get("seed", seed)
    keep_ids = datasets.select_labelled_ids(labels, ids, all_labels, self.source.num_classes,
                                            seed=seed,
                                            dataset_name=self.dataset_name,
                                            dataset_dir=self.dataset_dir or None)
    return keep_ids, len(keep_ids)

  def check_feature_cache(self, representation, splits):
    """Raises a UserError if caching `representation` on `splits` needs too much memory."""
    limit_gb = self.config.feature_cache_max_gb
    if limit_gb <= 0:
      return
    pooling = self.pooling(representation)
    num_examples = sum(self.source.num_examples(split) for split in splits)
    needed_gb = num_examples * pooling.dim * np.dtype(np.float32).itemsize / 1e9
    logging.info("%s: %s; caching %d examples needs %.2f GB.", representation,
                 pooling.describe(), num_examples, needed_gb)
    if needed_gb > limit_gb:
      raise UserError(
          f"Caching representation '{representation}' ({pooling.describe()}) for "
          f"{num_examples} examples needs {needed_gb:.1f} GB of host memory (the linear fit "
          f"holds a few more copies), over --config.feature_cache_max_gb={limit_gb:g}. "
          "Lower --config.pool_max_dims, use --config.pool_mode=global_avg, evaluate fewer "
          "taps at a time with --representation, or raise feature_cache_max_gb.")


# --- modules not written by tfssl ---------------------------------------------------

CALL = "__call__"  # --signature of a module's own __call__ (tfssl's: a dict, `training`)
TF1_HUB_MODULE_PROTO = "tfhub_module.pb"  # what marks the TF1 Hub format


def load_module(module_dir):
  """The loaded SavedModel; a TF1 Hub module as `hub.load` loads it (its default graph)."""
  if tf.io.gfile.exists(os.path.join(module_dir, TF1_HUB_MODULE_PROTO)):
    import tensorflow_hub as hub  # pylint: disable=g-import-not-at-top (slow, rarely needed)
    return hub.load(module_dir)
  return tf.saved_model.load(module_dir)


def parse_input_range(text):
  """`--input_range` "LO,HI" -> (LO, HI) floats."""
  try:
    low, high = (float(v) for v in text.split(","))
  except ValueError:
    low = high = None
  if low is None or not (math.isfinite(low) and math.isfinite(high) and low < high):
    raise UserError(f"Bad --input_range '{text}': pass LO,HI with LO < HI, the range the "
                    "module's input images are mapped to from [0, 1], e.g. 0,1, -1,1 or 0,255.")
  return low, high


def _shape_text(shape):
  shape = tf.TensorShape(shape)
  if shape.rank is None:
    return "[any shape]"
  return "[" + ", ".join("?" if d is None else str(d) for d in shape.as_list()) + "]"


def _output_dict(outputs):
  """A callable's outputs as {name: value}: a single tensor is `output_0`, a list or tuple
  `output_0`, `output_1`... (as Keras and tf.saved_model.save name signature outputs)."""
  if isinstance(outputs, dict):
    return dict(outputs)
  if isinstance(outputs, (list, tuple)):
    return {f"output_{i}": value for i, value in enumerate(outputs)}
  return {"output_0": outputs}


@dataclasses.dataclass(frozen=True)
class Endpoint:
  """One way into a loaded module, a signature or its `__call__`: its tensor inputs
  ((name, dtype, shape), ...) and outputs ((name, dtype, shape), ...)."""
  name: str
  inputs: tuple
  outputs: tuple
  takes_training: bool = False  # __call__(images, training) as tfssl's

  def takes_one_image(self):
    """Whether its one input is a float or uint8 NHWC RGB batch."""
    if len(self.inputs) != 1:
      return False
    _, dtype, shape = self.inputs[0]
    return ((dtype.is_floating or dtype == tf.uint8)
            and tf.TensorShape(shape).is_compatible_with([None, None, None, 3]))

  def describe(self):
    inputs = ", ".join(f"{name}: {dtype.name} {_shape_text(shape)}"
                       for name, dtype, shape in self.inputs)
    if self.takes_training:
      inputs += ", training"
    outputs = ", ".join(f"{name} {_shape_text(shape)}" for name, _, shape in self.outputs)
    return f"{self.name}({inputs}) -> {outputs or 'nothing'}"


def module_endpoints(module):
  """{name: Endpoint} of every signature of `module` and of its `__call__` if it has one."""
  endpoints = {}
  for name, fn in sorted(getattr(module, "signatures", {}).items()):
    inputs = tuple((key, spec.dtype, spec.shape)
                   for key, spec in sorted(fn.structured_input_signature[1].items()))
    outputs = tuple((key, value.dtype, value.shape)
                    for key, value in sorted(_output_dict(fn.structured_outputs).items()))
    endpoints[name] = Endpoint(name, inputs, outputs)
  # A loaded `__call__` is a restored tf.function; its traces say what it takes.
  for concrete in getattr(getattr(module, CALL, None), "concrete_functions", ())[:1]:
    args = concrete.structured_input_signature[0]
    inputs = tuple((spec.name or f"input_{i}", spec.dtype, spec.shape)
                   for i, spec in enumerate(args) if isinstance(spec, tf.TensorSpec))
    outputs = tuple((key, value.dtype, value.shape)
                    for key, value in _output_dict(concrete.structured_outputs).items())
    endpoints[CALL] = Endpoint(CALL, inputs, outputs,
                               takes_training=any(isinstance(a, bool) for a in args))
  return endpoints


class ForeignModule:
  """A SavedModel that tfssl did not write (or one called other than through tfssl's
  `__call__`), called as tfssl modules are: `module(images in [0, 1], training)` returns
  {`default`: the output scored, every other numeric output by its own name}.

  The images are mapped to `input_range` and cast to the input's dtype first. A module
  output named `default` that is not `output_key` is replaced by it.
  """

  def __init__(self, module, module_dir, signature=None, output_key=None, input_range=None,
               is_tfssl=False):
    self._module = module
    self.module_dir = module_dir
    self._endpoints = module_endpoints(module)
    self.signature = signature or self._default_signature(is_tfssl)
    endpoint = self._endpoints.get(self.signature)
    if endpoint is None:
      self._fail(f"no signature '{self.signature}'", "--signature=NAME")
    self.endpoint = endpoint
    if not endpoint.takes_one_image():
      self._fail(f"signature '{self.signature}' does not take one float or uint8 image "
                 "tensor [batch, height, width, 3]", "--signature=NAME of one that does")
    self.input_name, self.input_dtype, input_shape = endpoint.inputs[0]
    input_shape = tf.TensorShape(input_shape).with_rank(4).as_list()
    self.batch_size, height, width = input_shape[:3]
    if height != width:
      raise UserError(f"Signature '{self.signature}' of {module_dir} takes images of "
                      f"{height}x{width}; eval_hub's crops are square.")
    self.fixed_image_size = height
    names = [name for name, dtype, _ in endpoint.outputs if dtype != tf.string]
    if output_key is not None and output_key not in names:
      self._fail(f"signature '{self.signature}' has no output '{output_key}'",
                 "--output_key=NAME")
    if output_key is None:
      if "default" not in names and len(names) != 1:
        self._fail(f"signature '{self.signature}' has {len(names)} outputs and none named "
                   "'default'", "--output_key=NAME (the output to score)")
      output_key = "default" if "default" in names else names[0]
    self.output_key = output_key
    self._others = [name for name in names if name not in (output_key, "default")]
    is_uint8 = self.input_dtype == tf.uint8
    if input_range is None:
      self.input_range = (0.0, 255.0) if is_uint8 else (0.0, 1.0)
    else:
      self.input_range = parse_input_range(input_range)
      if is_uint8 and not 0 <= self.input_range[0] < self.input_range[1] <= 255:
        raise UserError(f"--input_range={input_range} does not fit the uint8 input of "
                        f"signature '{self.signature}': pass a range within 0,255.")
    if self.signature == CALL:
      self._fn = getattr(module, CALL)
    else:
      signature_fn = module.signatures[self.signature]
      self._fn = lambda images: signature_fn(**{self.input_name: images})
    logging.info("Module %s: calling %s, scoring output '%s' as default, images in [0, 1] "
                 "mapped to [%g, %g].", module_dir, endpoint.describe(), output_key,
                 *self.input_range)

  def _default_signature(self, is_tfssl):
    call = self._endpoints.get(CALL)
    # A __call__(images, training) is the Reusable SavedModel's way in (tfssl's modules
    # without module_info.json too): unlike a signature, it fine-tunes in training mode.
    if call is not None and (is_tfssl or (call.takes_training and call.takes_one_image())):
      return CALL
    signatures = [name for name in self._endpoints if name != CALL]
    for name in ("serving_default", "default"):
      if name in signatures:
        return name
    candidates = signatures or list(self._endpoints)
    if len(candidates) != 1:
      self._fail(f"{len(candidates)} signatures and none is serving_default or default",
                 "--signature=NAME")
    return candidates[0]

  def _fail(self, problem, advice):
    """Raises the UserError that says `problem`, lists every endpoint and names `advice`."""
    listing = "\n".join(f"  {e.describe()}" for e in self._endpoints.values()) or "  (none)"
    raise UserError(f"Module {self.module_dir}: {problem}. Its signatures (inputs -> "
                    f"outputs):\n{listing}\nPass {advice}.")

  def record(self):
    """What results.json rows say about how the module was called."""
    return {"signature": self.signature, "output_key": self.output_key,
            "input_range": ",".join(f"{v:g}" for v in self.input_range)}

  @property
  def trainable_variables(self):
    if self.signature != CALL:
      return list(self._module.signatures[self.signature].trainable_variables)
    if hasattr(self._module, "trainable_variables"):
      return list(self._module.trainable_variables)
    return list(self._fn.concrete_functions[0].trainable_variables)

  def __call__(self, images, training=False):
    low, high = self.input_range
    if (low, high) != (0.0, 1.0):
      images = images * (high - low) + low
    if self.input_dtype == tf.uint8:
      images = tf.clip_by_value(tf.round(images), 0.0, 255.0)
    images = tf.cast(images, self.input_dtype)
    if self.endpoint.takes_training:
      outputs = self._fn(images, training)
    else:
      if training:
        logging.warning("Signature '%s' of %s has no training mode: it runs as at inference "
                        "(batch norm statistics frozen, no dropout).", self.signature,
                        self.module_dir)
      outputs = self._fn(images)
    outputs = _output_dict(outputs)
    reps = {"default": outputs[self.output_key]}
    reps.update((name, outputs[name]) for name in self._others)
    return {name: tf.cast(value, tf.float32) for name, value in reps.items()}


# --- pooling of spatial taps --------------------------------------------------------

POOL_MODES = ("global_avg", "max", "avg")


@dataclasses.dataclass(frozen=True)
class Pooling:
  """How one tap of per-example shape `in_shape` becomes a vector of `dim` features.

  `mode` is "global_avg", "max" or "avg" when the tap is pooled, "flatten" when a map
  small enough is kept whole, "none" for a tap that already is a vector. `window` is the
  side of the square max/avg window, which is also its stride (VALID padding).
  """
  mode: str
  in_shape: tuple
  out_shape: tuple
  window: int = 0

  @property
  def dim(self):
    return math.prod(self.out_shape)

  def describe(self):
    in_shape, out_shape = ("x".join(map(str, s)) for s in (self.in_shape, self.out_shape))
    if self.mode == "none":
      return f"none ({self.dim})"
    if self.mode == "flatten":
      return f"flatten {in_shape} ({self.dim})"
    window = f" {self.window}x{self.window}/{self.window}" if self.window else ""
    return f"{self.mode}{window} {in_shape} -> {out_shape} ({self.dim})"


def adaptive_pool_window(height, width, channels, max_dims):
  """Revisiting's window for `pool_mode` max/avg: ceil(sqrt(H * W * C / max_dims)).

  With stride = window and VALID padding the output has floor(H/s) * floor(W/s) * C <=
  H * W * C / s^2 <= max_dims values. The window is at most the map's side, so a tap with
  more than max_dims channels keeps them all at 1x1 (as the original does).
  """
  ratio = -(-height * width * channels // max_dims)  # ceil; s^2 >= x  <=>  s^2 >= ceil(x)
  window = math.isqrt(ratio - 1) + 1  # the smallest s with s^2 >= ratio, in exact integers
  return min(max(window, 1), height, width)


def plan_pooling(tap_shape, mode, max_dims=9000):
  """The Pooling of a tap of per-example shape `tap_shape` under `mode` / `max_dims`."""
  if mode not in POOL_MODES:
    raise UserError(f"Unknown pool_mode '{mode}'. Choose one of: {', '.join(POOL_MODES)}.")
  if max_dims < 1:
    raise UserError(f"pool_max_dims must be at least 1, got {max_dims}.")
  tap_shape = tuple(int(d) for d in tap_shape)
  if len(tap_shape) == 1:
    return Pooling("none", tap_shape, tap_shape)
  if len(tap_shape) != 3:
    return Pooling("flatten", tap_shape, (math.prod(tap_shape),))
  height, width, channels = tap_shape
  if mode == "global_avg":
    return Pooling(mode, tap_shape, (channels,))
  if height * width * channels <= max_dims:
    return Pooling("flatten", tap_shape, tap_shape)
  window = adaptive_pool_window(height, width, channels, max_dims)
  return Pooling(mode, tap_shape, (height // window, width // window, channels), window)


def apply_pooling(features, pooling):
  """[N, *pooling.in_shape] -> [N, pooling.dim]."""
  if pooling.mode == "global_avg":
    return tf.reduce_mean(features, axis=[1, 2])
  if pooling.mode in ("max", "avg"):
    pool = tf.nn.max_pool2d if pooling.mode == "max" else tf.nn.avg_pool2d
    features = pool(features, pooling.window, pooling.window, "VALID")
  return tf.reshape(features, [-1, pooling.dim])


def top_k_accuracy(scores, labels, k):
  k = min(k, scores.shape[1])
  top = np.argsort(-scores, axis=1)[:, :k]
  return float(np.mean(np.any(top == labels[:, None], axis=1)))


# --- linear -----------------------------------------------------------------------


def linear_fit_steps(num_examples, batch_size, epochs, min_steps=0):
  """(batch size, steps per epoch, epochs) of a linear fit: `epochs` passes over the
  examples, more passes if that is fewer than `min_steps` steps."""
  batch_size = min(batch_size, num_examples)
  steps_per_epoch = max(num_examples // batch_size, 1)
  return batch_size, steps_per_epoch, max(epochs, -(-min_steps // steps_per_epoch))


def fit_linear_classifiers(features, labels, num_classes, l2_values, epochs, batch_size,
                           learning_rate, seed=0, min_steps=0):
  """Trains one softmax classifier per L2 value at once; returns (weights [K,D,C], biases [K,C])."""
  features = tf.constant(features, tf.float32)
  labels = tf.constant(labels, tf.int32)
  num_examples, dim = features.shape
  l2 = tf.constant(l2_values, tf.float32)
  num_models = len(l2_values)
  weights = tf.Variable(tf.zeros([num_models, dim, num_classes]))
  biases = tf.Variable(tf.zeros([num_models, num_classes]))
  batch_size, steps_per_epoch, epochs = linear_fit_steps(num_examples, batch_size, epochs,
                                                         min_steps)
  total_steps = epochs * steps_per_epoch
  schedule = keras.optimizers.schedules.CosineDecay(learning_rate, total_steps)
  optimizer = keras.optimizers.Adam(schedule)

  @tf.function(jit_compile=True)
  def gradients(x, y):
    with tf.GradientTape() as tape:
      logits = tf.einsum("nd,kdc->knc", x, weights) + biases[:, None, :]
      ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
          tf.broadcast_to(y, [num_models, tf.shape(y)[0]]), logits), axis=1)
      penalty = 0.5 * l2 * tf.reduce_sum(tf.square(weights), axis=[1, 2])
      loss = tf.reduce_sum(ce + penalty)
    return tape.gradient(loss, [weights, biases])

  @tf.function
  def train(order):
    for step in tf.range(total_steps):
      start = (step % steps_per_epoch) * batch_size
      index = order[step // steps_per_epoch][start:start + batch_size]
      grads = gradients(tf.gather(features, index), tf.gather(labels, index))
      optimizer.apply_gradients(zip(grads, [weights, biases]))

  rng = np.random.RandomState(seed)
  order = np.stack([rng.permutation(num_examples) for _ in range(epochs)])
  train(tf.constant(order, tf.int32))
  return weights.numpy(), biases.numpy()


def linear_scores(features, weights, biases):
  return np.einsum("nd,kdc->knc", features, weights) + biases[:, None, :]


def standardize(train, *others):
  mean, std = train.mean(0), train.std(0) + 1e-6
  return [(x - mean) / std for x in (train,) + others]


@PROTOCOLS.register("linear")
def linear_protocol(task, representation):
  config = task.config
  train_feats, train_labels, test_feats, test_labels = _cached_features(task, representation)
  num_classes = task.info.get("num_classes_eval") or task.source.num_classes
  rng = np.random.RandomState(config.seed)
  order = rng.permutation(len(train_labels))
  num_holdout = max(int(len(order) * config.holdout_fraction), 1)
  fit_idx, holdout_idx = order[num_holdout:], order[:num_holdout]
  fit_args = dict(epochs=config.linear_epochs, batch_size=config.linear_batch_size,
                  learning_rate=config.linear_learning_rate, seed=config.seed,
                  min_steps=config.linear_min_steps)

  fit_x, holdout_x = standardize(train_feats[fit_idx], train_feats[holdout_idx])
  weights, biases = fit_linear_classifiers(fit_x, train_labels[fit_idx], num_classes,
                                           config.linear_l2_values, **fit_args)
  holdout_scores = linear_scores(holdout_x, weights, biases)
  holdout_acc = [top_k_accuracy(s, train_labels[holdout_idx], 1) for s in holdout_scores]
  best = int(np.argmax(holdout_acc))
  best_l2 = config.linear_l2_values[best]
  logging.info("linear: held-out top-1 per L2 %s -> %s", dict(zip(config.linear_l2_values,
                                                                  holdout_acc)), best_l2)

  train_x, test_x = standardize(train_feats, test_feats)
  weights, biases = fit_linear_classifiers(train_x, train_labels, num_classes, [best_l2],
                                           **fit_args)
  scores = linear_scores(test_x, weights, biases)[0]
  _, steps_per_epoch, epochs = linear_fit_steps(
      len(train_labels), config.linear_batch_size, config.linear_epochs, config.linear_min_steps)
  return {"top1": top_k_accuracy(scores, test_labels, 1),
          "top5": top_k_accuracy(scores, test_labels, 5),
          "num_examples": int(len(test_labels)), "l2": best_l2,
          "holdout_top1": holdout_acc[best], "linear_steps": steps_per_epoch * epochs}


def _cached_features(task, representation):
  """(train features, train labels, eval features, eval labels) of one pooled tap."""
  (train_feats, train_labels, _), (test_feats, test_labels, _) = (
      task.features(split, [representation])
      for split in (task.source.train_split, task.source.eval_split))
  return (train_feats[representation], train_labels, test_feats[representation], test_labels)


# --- knn ----------------------------------------------------------------------------


def knn_scores(train_feats, train_labels, test_feats, num_classes, k, temperature, chunk=1024):
  """Class scores of weighted cosine k-NN (weights exp(sim / temperature))."""
  train = train_feats / (np.linalg.norm(train_feats, axis=1, keepdims=True) + 1e-12)
  test = test_feats / (np.linalg.norm(test_feats, axis=1, keepdims=True) + 1e-12)
  k = min(k, len(train))
  scores = np.zeros([len(test), num_classes], np.float32)
  for start in range(0, len(test), chunk):
    sims = test[start:start + chunk] @ train.T
    nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    near_sims = np.take_along_axis(sims, nearest, axis=1)
    weights = np.exp(near_sims / temperature)
    votes = np.zeros([len(sims), num_classes], np.float32)
    np.add.at(votes, (np.arange(len(sims))[:, None], train_labels[nearest]), weights)
    scores[start:start + chunk] = votes
  return scores


@PROTOCOLS.register("knn")
def knn_protocol(task, representation):
  train_feats, train_labels, test_feats, test_labels = _cached_features(task, representation)
  scores = knn_scores(train_feats, train_labels, test_feats, task.source.num_classes,
                      task.config.knn_k, task.config.knn_temperature)
  return {"top1": top_k_accuracy(scores, test_labels, 1),
          "top5": top_k_accuracy(scores, test_labels, 5),
          "num_examples": int(len(test_labels)), "k": task.config.knn_k}


# --- snn -----------------------------------------------------------------------------


def snn_scores(support_feats, support_labels, test_feats, num_classes, temperature, chunk=1024):
  """[N_test, num_classes] soft nearest-neighbour class probabilities (PAWS)."""
  support_targets = tf.one_hot(support_labels, num_classes)
  scores = [losses.soft_nearest_neighbours(test_feats[start:start + chunk], support_feats,
                                           support_targets, temperature).numpy()
            for start in range(0, len(test_feats), chunk)]
  return np.concatenate(scores) if scores else np.zeros([0, num_classes], np.float32)


@PROTOCOLS.register("snn")
def snn_protocol(task, representation, labels="all"):
  source = task.source
  keep_ids, num_support = task.labelled_ids(labels)
  support, support_labels, _ = task.features(source.train_split, [representation], keep_ids)
  test, test_labels, _ = task.features(source.eval_split, [representation])
  scores = snn_scores(support[representation], support_labels, test[representation],
                      source.num_classes, task.config.snn_temperature)
  return {"top1": top_k_accuracy(scores, test_labels, 1),
          "top5": top_k_accuracy(scores, test_labels, 5),
          "num_examples": int(len(test_labels)), "labels": labels,
          "num_support": int(num_support), "temperature": task.config.snn_temperature}


# --- finetune ------------------------------------------------------------------------


@PROTOCOLS.register("finetune")
def finetune_protocol(task, representation, labels="all"):
  config = task.config
  source = task.source
  keep_ids, num_train = task.labelled_ids(labels)
  batch_size = min(config.finetune_batch_size, num_train)
  steps = max(int(config.finetune_epochs * num_train / batch_size), 1)
  image_size = task.image_size

  def train_preprocess(features, seed):
    return {"image": pp.supervised_train(features["image"], seed, image_size),
            "label": features["label"]}

  dataset = datasets.train_dataset(source, batch_size=batch_size, preprocess_fn=train_preprocess,
                                   keep_ids=keep_ids, seed=config.seed)
  module = task.module
  head = keras.layers.Dense(source.num_classes, kernel_initializer="zeros")
  pooling = task.pooling(representation)
  head.build([None, pooling.dim])
  backbone_vars = list(module.trainable_variables)
  schedule = keras.optimizers.schedules.CosineDecay(config.finetune_learning_rate, steps)
  optimizer = keras.optimizers.SGD(schedule, momentum=config.finetune_momentum)
  head_optimizer = keras.optimizers.SGD(
      lambda: schedule(optimizer.iterations) * config.finetune_head_learning_rate_mult,
      momentum=config.finetune_momentum)

  @tf.function
  def train_step(batch):
    with tf.GradientTape() as tape:
      reps = module(batch["image"], training=True)
      logits = head(apply_pooling(reps[representation], pooling))
      loss = tf.reduce_mean(losses.softmax_cross_entropy(logits, batch["label"],
                                                         source.num_classes))
      if config.finetune_weight_decay:
        loss += config.finetune_weight_decay * tf.add_n(
            [tf.nn.l2_loss(v) for v in backbone_vars if len(v.shape) > 1])
    grads = tape.gradient(loss, backbone_vars + head.trainable_variables)
    optimizer.apply_gradients(zip(grads[:len(backbone_vars)], backbone_vars))
    head_optimizer.apply_gradients(zip(grads[len(backbone_vars):], head.trainable_variables))
    return loss

  start = time.time()
  for step, batch in enumerate(dataset.take(steps)):
    loss = train_step(batch)
    if step % 100 == 0 or step == steps - 1:
      logging.info("finetune step %d/%d loss %.4f (%.1fs)", step + 1, steps, float(loss),
                   time.time() - start)

  eval_data = datasets.eval_dataset(source, split=source.eval_split,
                                    batch_size=config.batch_size,
                                    preprocess_fn=task.eval_preprocess)
  scores, test_labels = [], []
  predict = tf.function(lambda images: head(apply_pooling(
      module(images, training=False)[representation], pooling)))
  for batch in eval_data:
    keep = batch["mask"].numpy() > 0
    scores.append(predict(batch["image"]).numpy()[keep])
    test_labels.append(batch["label"].numpy()[keep])
  scores, test_labels = np.concatenate(scores), np.concatenate(test_labels)
  return {"top1": top_k_accuracy(scores, test_labels, 1),
          "top5": top_k_accuracy(scores, test_labels, 5),
          "num_examples": int(len(test_labels)), "labels": labels, "steps": steps}


# --- driver ---------------------------------------------------------------------------


def evaluate(hub_module, protocol, workdir, dataset=None, dataset_dir=None,
             representation="default", labels="all", config=None, signature=None,
             output_key=None, input_range=None):
  """Runs one protocol on one module; writes WORKDIR/results.json; returns the results.

  `signature`, `output_key` and `input_range` say how to call a module tfssl did not write
  (see ForeignModule); the rows of such a module record them."""
  protocol_fn = PROTOCOLS.get(protocol)
  config = config or default_config()
  experiment.check_paths([(hub_module, "--hub_module"), (workdir, "--workdir")])
  module_dir = export_lib.resolve_module_dir(hub_module)
  task = Task(module_dir, dataset, dataset_dir, config, signature=signature,
              output_key=output_key, input_range=input_range)
  representations = _representation_names(task, representation)
  # Unknown names, pool settings and oversized caches fail now, not after hours spent on
  # the taps before them.
  poolings = {name: task.pooling(name) for name in representations}
  if protocol in FEATURE_CACHING_PROTOCOLS:
    for name in representations:
      task.check_feature_cache(name, (task.source.train_split, task.source.eval_split))
  rows = []
  for name in representations:
    kwargs = {"labels": labels} if protocol in LABEL_SUBSET_PROTOCOLS else {}
    result = protocol_fn(task, name, **kwargs)
    pooling = poolings[name]
    row = dict(result, protocol=protocol, dataset=task.dataset_name, representation=name,
               hub_module=module_dir, pool_mode=config.pool_mode, pooling=pooling.describe(),
               feature_dim=pooling.dim)
    if config.pool_mode != "global_avg":
      row["pool_max_dims"] = config.pool_max_dims
    if task.foreign:
      row.update(task.foreign.record(), image_size=task.image_size)
    rows.append(row)
  tf.io.gfile.makedirs(workdir)
  results_path = os.path.join(workdir, "results.json")
  records.write_json(results_path, rows if len(rows) > 1 else rows[0])
  writer = tf.summary.create_file_writer(os.path.join(workdir, "summaries"))
  step = int(task.info.get("step", 0))
  with writer.as_default():
    for row in rows:
      for metric in ("top1", "top5"):
        tf.summary.scalar(f"{protocol}/{row['representation']}/{metric}", row[metric], step=step)
  writer.flush()
  print(report.format_rows(rows))
  for row in rows:
    print(f"{row['representation']}: {row['pooling']}")
  return rows if len(rows) > 1 else rows[0]


def _representation_names(task, representation):
  """`all` is every output but `logits` (a classifier's output, not a representation)."""
  if representation != "all":
    return [name.strip() for name in representation.split(",")]
  names = [name for name in task.output_shapes() if name != "logits"]
  return sorted(names, key=lambda name: (name != "default", name))


FLAGS = flags.FLAGS


def define_flags():
  """Only the command line defines flags, so the library can be imported anywhere."""
  flags.DEFINE_string("hub_module", None, "Module dir, or a run's export/hub dir (newest taken).")
  flags.DEFINE_string("protocol", "linear", "linear | finetune | knn | snn.")
  flags.DEFINE_string("dataset", None, "Dataset (default: the module's).")
  flags.DEFINE_string("dataset_dir", None, "Dataset files.")
  flags.DEFINE_string("representation", "default",
                      "Output name, comma list, or 'all' (every output but logits).")
  flags.DEFINE_string("labels", "all", "Label subset for finetune and the snn support set: "
                      "all | 1pct | 10pct | N | N_per_class | file:PATH.")
  flags.DEFINE_string("workdir", None, "Where results.json and summaries go.")
  flags.DEFINE_string("signature", None, "Signature to call (default: a tfssl module's "
                      "__call__, else serving_default, else default, else the only one).")
  flags.DEFINE_string("output_key", None, "The signature's output scored as `default` "
                      "(default: the one named default, or the only one); the others keep "
                      "their names for --representation.")
  flags.DEFINE_string("input_range", None, "LO,HI the [0, 1] images are mapped to before the "
                      "call: 0,1 (default; 0,255 for a uint8 input), -1,1, 0,255.")


def main(argv, overrides):
  del argv
  if not FLAGS.workdir:
    raise UserError("--workdir is required: where results.json is written.")
  PROTOCOLS.get(FLAGS.protocol)
  config = config_lib.apply_overrides(default_config(), overrides)
  evaluate(FLAGS.hub_module, FLAGS.protocol, FLAGS.workdir, dataset=FLAGS.dataset,
           dataset_dir=FLAGS.dataset_dir, representation=FLAGS.representation,
           labels=FLAGS.labels, config=config, signature=FLAGS.signature,
           output_key=FLAGS.output_key, input_range=FLAGS.input_range)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
