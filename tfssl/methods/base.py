"""The method contract: per-replica code that the single trainer runs on any strategy.

A method builds its Keras models (inside the strategy scope), turns one example into
what its batch holds (inside tf.data), computes loss and metrics for one per-replica
batch and says which representations it exports. It never calls the strategy itself
and reads no flags.

Metric convention: every value a method returns from `compute_loss` is that replica's
contribution to the *global*-batch average (sum over the replica's examples divided by
the global batch size), so the trainer sums them across replicas. Gradients of the
loss are summed across replicas by the optimizer, which then equals the gradient of
the global-batch mean.
"""

import keras
import tensorflow as tf

from tfssl import diagnostics
from tfssl import models
from tfssl import optim
from tfssl import preprocess as pp
from tfssl.errors import UserError
from tfssl.registry import Registry

METHODS = Registry("method")


def get_method(name):
  return METHODS.get(name)


def global_mean(per_example, global_batch_size):
  """This replica's share of the mean over the global batch."""
  return tf.reduce_sum(tf.cast(per_example, tf.float32)) / tf.cast(global_batch_size, tf.float32)


def unsup_batch_size(config):
  """Global batch of a two-stream method's unlabelled stream (0 in the config: batch_size)."""
  return config.get("unsup_batch_size") or config.batch_size


def check_unsup_batch_size(config):
  if config.unsup_batch_size < 0:
    raise UserError(f"unsup_batch_size={config.unsup_batch_size} must be >= 0 "
                    "(0: the same as batch_size).")


def cross_replica_concat(tensor):
  """(`tensor` of every replica concatenated along axis 0, index of this replica's first
  row in it). Gradients flow back to each replica's own rows."""
  context = tf.distribute.get_replica_context()
  if context is None or context.num_replicas_in_sync == 1:
    return tensor, 0
  gathered = context.all_gather(tensor, axis=0)
  # Some cross-device implementations lose the static shape, which the losses need.
  gathered.set_shape([tensor.shape[0] * context.num_replicas_in_sync] + tensor.shape[1:])
  return gathered, replica_index() * tensor.shape[0]


def cross_replica_sum(tensor):
  """The sum of `tensor` over all replicas (differentiable: each replica's gradient is the
  whole sum's)."""
  context = tf.distribute.get_replica_context()
  if context is None or context.num_replicas_in_sync == 1:
    return tensor
  return context.all_reduce(tf.distribute.ReduceOp.SUM, tensor)


def num_replicas():
  context = tf.distribute.get_replica_context()
  return context.num_replicas_in_sync if context is not None else 1


def replica_index():
  """This replica's position among `num_replicas()` (0 outside a replica context)."""
  context = tf.distribute.get_replica_context()
  return context.replica_id_in_sync_group if context is not None else 0


def moving_average_update(pairs, decay):
  """average <- decay * average + (1 - decay) * value for each (average, value) pair of
  variables (EMA teachers and momentum encoders)."""
  return tf.group([average.assign(decay * average + (1.0 - decay) * value)
                   for average, value in pairs])


def views_major(views):
  """[n, V, ...] views of n images -> [V * n, ...]: all first views, then all second views..."""
  perm = [1, 0] + list(range(2, views.shape.rank))
  return tf.reshape(tf.transpose(views, perm), [-1] + views.shape[2:].as_list())


def top_k_correct(logits, labels, k):
  """1.0 where the label is among the k largest logits."""
  k = min(k, logits.shape[-1])
  return tf.cast(tf.math.in_top_k(tf.cast(labels, tf.int32), tf.cast(logits, tf.float32), k),
                 tf.float32)


class Method:
  """Base class; subclasses register with `@METHODS.register(name)`."""

  # "single": batches are {"image", "label"}; "two_streams": {"sup": {...}, "unsup": {...}};
  # "support": class-stratified support batches only (`support_stream`), no unlabelled ones.
  input_mode = "single"
  # Whether the "sup" batches are PAWS's class-stratified support sets
  # (datasets.support_dataset with config.support_classes x support_images_per_class).
  support_stream = False
  # Whether the step exchanges tensors between replicas (e.g. negatives of a contrastive
  # loss); off TPU, XLA cannot compile such a step over several replicas.
  gathers_across_replicas = False
  # The usual causes of a stalled or collapsed run particular to the method, which the
  # trainer's warning adds to the general ones (diagnostics.StallWatcher).
  stall_causes = ""

  @classmethod
  def default_config(cls):
    """Keys the method adds to, or defaults it changes in, the global config."""
    return {}

  @classmethod
  def check_config(cls, config, image_size):
    """Raises UserError for a config this method cannot run; called before any work."""
    del config, image_size

  @classmethod
  def uses_labels(cls, config):
    """Whether runs of `config` learn from the dataset's labels; label-free ones also train
    on images that have none (datasets.UNLABELLED, num_classes 0)."""
    del config
    return True

  @classmethod
  def uses_support_stream(cls, config):
    """Whether runs of `config` read class-stratified support batches."""
    del config
    return cls.support_stream

  @classmethod
  def steps_per_epoch(cls, config, num_labelled, num_train):
    """Steps of one epoch: by default a pass over the labelled (training) stream."""
    del num_train
    return max(num_labelled // config.batch_size, 1)

  def __init__(self, config, num_classes, image_size):
    self.check_config(config, image_size)
    self.config = config
    self.num_classes = num_classes
    self.image_size = image_size
    # Patch-based methods feed the backbone patches smaller than the images they export for.
    self.backbone_image_size = image_size
    self.jit_compile = config.jit_compile
    self._compiled = {}
    # The run's schedule (Experiment.new_method sets it) and the optimizer's step counter
    # (train_step attaches it), for methods whose step follows a schedule of its own.
    self.steps_per_epoch_count = 1
    self.total_steps = 1
    self.step_counter = None

  def set_schedule(self, steps_per_epoch, total_steps):
    self.steps_per_epoch_count = max(int(steps_per_epoch), 1)
    self.total_steps = max(int(total_steps), 1)

  def current_step(self):
    """Updates done before this step (0 outside a training step)."""
    if self.step_counter is None:
      return tf.constant(0, tf.int64)
    return tf.cast(self.step_counter, tf.int64)

  # --- models ---------------------------------------------------------------

  def build(self):
    """Creates the Keras models; called inside `strategy.scope()`."""
    self.backbone = self.new_backbone()
    self.feature_dim = self.backbone(
        tf.zeros((1, self.backbone_image_size, self.backbone_image_size, 3)),
        training=False)["default"].shape[-1]

  def new_backbone(self, name_prefix=None, **options):
    """A backbone of the configured architecture (`name_prefix`: a second copy's layer
    names, e.g. a teacher's; `options` replace some of `backbone_options`)."""
    return models.build_model(
        self.config.model, image_size=self.backbone_image_size, width=self.config.model_width,
        sync_bn=self.config.sync_bn, bn_momentum=self.config.bn_momentum,
        bn_epsilon=self.config.bn_epsilon, name_prefix=name_prefix,
        input_normalization=self.config.input_normalization,
        stem_pool_padding=self.config.stem_pool_padding,
        **dict(self.backbone_options(), **options))

  def backbone_options(self):
    """Extra `models.build_model` arguments this method's backbone needs."""
    return {}

  def trackables(self):
    """Named objects whose variables make up the method's state (checkpointed and exported)."""
    return {"backbone": self.backbone}

  def trackables_to_initialize(self, saved=()):
    """The trackables `--init_from` loads from another run whose checkpoint holds the
    trackables named `saved` (default: all this method has)."""
    del saved
    return self.trackables()

  def exported_trackables(self):
    """The trackables an exported module holds: all but training-only state (FNC's
    momentum encoder and memory bank)."""
    return self.trackables()

  @property
  def trainable_variables(self):
    variables = []
    for obj in self.trackables().values():
      variables.extend(obj.trainable_variables)
    return variables

  @property
  def variables(self):
    variables = []
    for obj in self.trackables().values():
      variables.extend(obj.variables)
    return variables

  def exported_trainable_variables(self):
    """The variables a module's user fine-tunes: those `representations` computes with."""
    return self.trainable_variables

  def after_initialize(self):
    """Runs after `--init_from` loaded weights (a teacher copies them, say)."""
    return None

  def representations(self, images, training=False):
    """The exported dict: `default` (pre-logits) plus named taps (and `logits` if any)."""
    return dict(self.backbone(images, training=training))

  # --- input ----------------------------------------------------------------

  def train_preprocess(self, features, seed):
    """One training example -> what the batch holds (runs inside tf.data)."""
    image = pp.supervised_train(features["image"], seed, self.image_size,
                                area_range=(self.config.crop_area_min, 1.0))
    return {"image": image, "label": features["label"]}

  def unsup_preprocess(self, features, seed):
    """One example of the unlabelled stream (two-stream methods)."""
    return self.train_preprocess(features, seed)

  def eval_preprocess(self, features):
    return {"image": pp.eval_crop(features["image"], self.image_size), "label": features["label"]}

  def summary_images(self, batch):
    """Images for the TensorBoard grid of augmented training inputs."""
    if self.input_mode == "two_streams":
      batch = batch["sup"]
    images = batch["image"]
    return tf.reshape(images, [-1] + images.shape[-3:].as_list())

  # --- training -------------------------------------------------------------

  def compute_loss(self, batch, training=True):
    """(loss, metrics) for one per-replica batch; see the module docstring."""
    raise NotImplementedError

  def uniform_losses(self):
    """{metric: its value while every prediction is uniform} for the losses that have
    one (ln of the number of classes or prototypes), which the trainer warns about when
    a run stays there; {} for none."""
    return {}

  def diagnostic_metrics(self, embeddings=None, probs=None):
    """Collapse and stall metrics (diagnostics) of the L2-normalised `embeddings` the
    loss uses and of the predicted distributions `probs` [..., K], as this replica's share
    (the trainer sums them). Over the global batch where the step exchanges tensors
    between replicas anyway; otherwise each replica's, averaged (the same on one replica)."""
    global_sum = cross_replica_sum if self.gathers_across_replicas else tf.identity
    metrics = {}
    if embeddings is not None:
      metrics[diagnostics.EMBEDDING_STD] = diagnostics.normalised_embedding_std(
          embeddings, global_sum)
    if probs is not None:
      metrics[diagnostics.ENTROPY_MEAN_PREDICTION] = diagnostics.mean_prediction_entropy(
          probs, global_sum)
      metrics[diagnostics.ENTROPY_PER_SAMPLE] = diagnostics.per_sample_entropy(
          probs, global_sum)
    return {name: value / num_replicas() for name, value in metrics.items()}

  def weight_decay_loss(self):
    """The L2 term, split over replicas because their gradients are summed."""
    return optim.loss_weight_decay(self.config, self.trainable_variables) / num_replicas()

  def gradients(self, batch):
    variables = self.trainable_variables
    with tf.GradientTape() as tape:
      loss, metrics = self.compute_loss(batch, training=True)
      wd_loss = self.weight_decay_loss()
      total = loss + wd_loss
    grads = tape.gradient(total, variables)
    metrics = dict(metrics, loss=loss, weight_decay_loss=wd_loss)
    return grads, metrics

  def train_step(self, batch, optimizer):
    """One per-replica step: XLA-compiled gradients, then the strategy-aware update.

    With one replica there is nothing to all-reduce, so the update is compiled into
    the same XLA program, which saves launching every optimizer op separately.
    """
    self.step_counter = optimizer.iterations
    if tf.distribute.get_replica_context().num_replicas_in_sync == 1:
      return self.compiled(self._step_with_update)(batch, optimizer)
    grads, metrics = self.compiled(self.gradients)(batch)
    optimizer.apply_gradients(zip(self.adjust_gradients(grads), self.trainable_variables))
    self.after_step()
    return metrics

  def _step_with_update(self, batch, optimizer):
    grads, metrics = self.gradients(batch)
    optimizer.apply_gradients(zip(self.adjust_gradients(grads), self.trainable_variables))
    self.after_step()
    return metrics

  def compiled(self, fn):
    """`fn` XLA-compiled when jit_compile is on; a nested tf.function is only made then,
    because cross-replica ops (synchronized BN) cannot sit inside one."""
    if not self.jit_compile:
      return fn
    if fn.__name__ not in self._compiled:
      self._compiled[fn.__name__] = tf.function(fn, jit_compile=True)
    return self._compiled[fn.__name__]

  def adjust_gradients(self, grads):
    """The gradients the optimizer applies (SwAV zeroes its prototypes' at first)."""
    return grads

  def after_step(self):
    """Runs after each update (EMA teachers, queues)."""
    return None

  # --- evaluation -----------------------------------------------------------

  def eval_metrics(self, batch):
    """Summed top-1/top-5 hits and example count of the method's own classifier."""
    reps = self.representations(batch["image"], training=False)
    if "logits" not in reps:
      return {}
    mask = batch["mask"]
    return {
        "top1": tf.reduce_sum(top_k_correct(reps["logits"], batch["label"], 1) * mask),
        "top5": tf.reduce_sum(top_k_correct(reps["logits"], batch["label"], 5) * mask),
        "count": tf.reduce_sum(mask),
    }


class WithClassifier:
  """Mixin for methods with a linear classifier `head` on the pre-logits, exported as
  `logits` (list it before `Method` among the bases)."""

  def build(self):
    super().build()
    self.head = ClassifierHead(self.num_classes, name="head")
    self.head.build((None, self.feature_dim))

  def trackables(self):
    return dict(super().trackables(), head=self.head)

  def representations(self, images, training=False):
    reps = super().representations(images, training=training)
    reps["logits"] = self.head(reps["default"])
    return reps


class ClassifierHead(keras.layers.Layer):
  """Linear classifier on pre-logits features, computed in float32."""

  def __init__(self, num_classes, zero_init=False, **kwargs):
    # float32 as a layer too, so mixed_bfloat16 does not round its input before the cast.
    super().__init__(dtype="float32", **kwargs)
    # An explicit name keeps variable paths (head/dense/kernel) the same in every process
    # and method, which Polyak averages and --init_from match by.
    self.dense = keras.layers.Dense(
        num_classes, dtype="float32", name="dense",
        kernel_initializer="zeros" if zero_init else "glorot_uniform")

  def build(self, input_shape):
    self.dense.build(input_shape)
    self.built = True

  def call(self, features):
    return self.dense(tf.cast(features, tf.float32))
