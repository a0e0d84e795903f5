"""Suave: semi-supervised SwAV (Fini et al. 2023; pietroastolfi/suave-daino, main_suave.py).

The backbone's pre-logits go through SwAV's projection (fc-BN-ReLU-fc to
`proj_out_dim`), are L2-normalised, and scored against one unit-norm prototype per
class (a bias-free linear layer renormalised after every update, as SwAV does before
every step). For each of the two global crops of an unlabelled image, Sinkhorn-Knopp
(`sinkhorn_iterations` of `sinkhorn_epsilon`, sums over every replica's crops) turns the
scores into equipartitioned assignments, which every other crop of the image predicts;
labelled images predict their class (see `multicrop`). With `queue_length`, the
assignments are computed together with the embeddings of the last global crops (SwAV's
queue, used once full) so that small batches still spread over all prototypes.
`freeze_prototypes_steps` keeps the prototypes fixed for the first updates.

Exports `default`, the taps, `proj` (the normalised embedding) and `logits` (prototype
scores / temperature: the classifier the paper evaluates).

`swav` is the same code without the labelled stream: SwAV (main_swav.py), whose queue
fills from `queue_start_epoch` on.
"""

import keras
import tensorflow as tf

from tfssl import losses
from tfssl import preprocess as pp
from tfssl.errors import UserError
from tfssl.methods.base import METHODS, cross_replica_concat, cross_replica_sum, num_replicas
from tfssl.methods.base import replica_index
from tfssl.methods.multicrop import CROP_SAMPLER, NUM_GLOBAL_VIEWS, LabelFree
from tfssl.methods.multicrop import MultiCropSemiSupervised


class SwAVProjection(keras.layers.Layer):
  """fc-BN-ReLU-fc (SwAV's `projection_head` with one hidden layer), in float32."""

  def __init__(self, in_dim, hidden_dim, out_dim, config, **kwargs):
    super().__init__(**kwargs)
    self.in_dim = in_dim
    self.fc1 = keras.layers.Dense(hidden_dim, name="fc1", dtype="float32")
    self.bn1 = keras.layers.BatchNormalization(
        momentum=config.bn_momentum, epsilon=config.bn_epsilon, synchronized=config.sync_bn,
        name="bn1", dtype="float32")
    self.fc2 = keras.layers.Dense(out_dim, name="fc2", dtype="float32")

  def build(self, input_shape):
    del input_shape
    self.fc1.build((None, self.in_dim))
    self.bn1.build((None, self.fc1.units))
    self.fc2.build((None, self.fc1.units))
    self.built = True

  def call(self, features, training=False):
    x = keras.ops.relu(self.bn1(self.fc1(tf.cast(features, tf.float32)), training=training))
    return self.fc2(x)


class AssignmentQueue(tf.Module):
  """The last `length` global-crop embeddings of each of the two global views, of all
  replicas; every replica holds the same copy and uses its own 1/R of the rows."""

  def __init__(self, length, dim):
    super().__init__(name="queue")
    # Every replica writes the same value (computed from gathered embeddings).
    self.embeddings = tf.Variable(
        tf.zeros([NUM_GLOBAL_VIEWS, length, dim]), trainable=False, name="embeddings",
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self.filled = tf.Variable(0, dtype=tf.int64, trainable=False, name="filled",
                              aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self.length = length

  def replica_rows(self, view):
    rows = self.length // num_replicas()
    return tf.slice(self.embeddings[view], tf.stack([replica_index() * rows, 0]), [rows, -1])

  def is_full(self):
    return self.filled >= self.length

  def push(self, gathered_embeddings, started=True):
    """`gathered_embeddings` [2, B, D] (every replica's, newest) in front; the oldest out.
    Before the queue has `started` (a bool tensor) nothing changes: a select, not a
    branch, because the embeddings were gathered across replicas."""
    batch = gathered_embeddings.shape[1]
    kept = self.embeddings[:, :self.length - batch]
    pushed = tf.concat([tf.cast(gathered_embeddings, tf.float32), kept], 1)
    filled = tf.minimum(self.filled + batch, self.length)
    return tf.group(self.embeddings.assign(tf.where(started, pushed, self.embeddings)),
                    self.filled.assign(tf.where(started, filled, self.filled)))


@METHODS.register("suave")
class Suave(MultiCropSemiSupervised):
  """SwAV's swapped prediction on unlabelled crops + class one-hots on labelled ones."""

  gathers_across_replicas = True  # Sinkhorn-Knopp sums over replicas
  stall_causes = ("for SwAV/Suave, a sinkhorn_epsilon too large (targets near uniform), "
                  "prototypes that learn from the first step (freeze_prototypes_steps), or a "
                  "queue started too early")

  @classmethod
  def default_config(cls):
    # suave/scripts/train_10perc.sh (= train_1perc.sh but the subset), global batches of
    # its 8 GPUs: 16 x 8 labelled, 32 x 8 unlabelled images.
    return dict(super().default_config(), **{
        "batch_size": 128,
        "unsup_batch_size": 256,
        "train_epochs": 100.0,
        "sinkhorn_epsilon": 0.05,
        "sinkhorn_iterations": 3,
        "proj_hidden_dim": 0,  # 0: the backbone's feature width (2048 for ResNet-50)
        "proj_out_dim": 128,
        "queue_length": 3840,  # 0: no queue; rounded down to a multiple of unsup_batch_size
        "queue_start_epoch": 0,  # SwAV's epoch_queue_starts: the queue fills from then on
        "freeze_prototypes_steps": 0,
        "optimizer": "lars",
        "learning_rate": 0.4,
        "lr_scaling": "none",
        "lr_schedule": "cosine",
        "warmup_epochs": 5.0,
        "end_lr_factor": 0.0025,  # final_lr 0.001
        "weight_decay": 1e-6,
        "weight_decay_mode": "decoupled",
        # suave's LARS gets model.parameters() in one group: biases and batch norm too.
        "weight_decay_skip_bias_and_bn": False,
        "sync_bn": True,
    })

  @classmethod
  def check_config(cls, config, image_size):
    super().check_config(config, image_size)
    if config.sinkhorn_epsilon <= 0 or config.sinkhorn_iterations < 1:
      raise UserError(f"sinkhorn_epsilon={config.sinkhorn_epsilon} must be positive and "
                      f"sinkhorn_iterations={config.sinkhorn_iterations} >= 1.")
    for key in ("queue_length", "queue_start_epoch", "freeze_prototypes_steps"):
      if config[key] < 0:
        raise UserError(f"{key}={config[key]} must be >= 0.")

  def view(self, image, seed, size, area_range, index):
    """SwAV's crop: random-resized crop, flip, colour distortion (strength 1) and blur."""
    del index
    if not self.config.color_jitter_unlabelled:
      return pp.supervised_train(image, seed, size, area_range=area_range, sampler=CROP_SAMPLER)
    return pp.simclr_train(image, seed, size, strength=self.config.color_jitter_strength,
                           blur=self.config.use_blur, area_range=area_range,
                           sampler=CROP_SAMPLER)

  # --- models ---------------------------------------------------------------

  def build(self):
    super().build()
    config = self.config
    self.projection = SwAVProjection(self.feature_dim, config.proj_hidden_dim or self.feature_dim,
                                     config.proj_out_dim, config, name="projection",
                                     dtype="float32")
    self.projection.build((None, self.feature_dim))
    self.prototypes = keras.layers.Dense(self.num_prototypes, use_bias=False,
                                         name="prototypes", dtype="float32")
    self.prototypes.build((None, config.proj_out_dim))
    self.normalize_prototypes()
    queue_length = config.queue_length - config.queue_length % self.unsup_batch_size
    self.queue = AssignmentQueue(queue_length, config.proj_out_dim) if queue_length else None

  def trackables(self):
    trackables = dict(super().trackables(), projection=self.projection,
                      prototypes=self.prototypes)
    if self.queue is not None:
      trackables["queue"] = self.queue
    return trackables

  def trackables_to_initialize(self, saved=()):
    del saved
    trackables = {"backbone": self.backbone}
    if self.config.init_projection:
      trackables["projection"] = self.projection
    return trackables

  def head(self, features, training):
    embeddings = tf.math.l2_normalize(self.projection(features, training=training), axis=-1)
    return embeddings, self.prototypes(embeddings)

  def representations(self, images, training=False):
    return self.exported_outputs(*self.head_outputs(images, training))

  # --- training -------------------------------------------------------------

  def normalize_prototypes(self):
    kernel = self.prototypes.kernel  # [dim, classes]: a prototype per column
    return kernel.assign(tf.math.l2_normalize(kernel, axis=0))

  def after_step(self):
    """SwAV renormalises the prototypes before every step: here after every update."""
    return self.normalize_prototypes()

  def frozen_prototype_steps(self):
    return self.config.freeze_prototypes_steps

  def prototype_variables(self):
    return [self.prototypes.kernel]

  def assignments(self, global_scores, global_embeddings, training):
    """Sinkhorn-Knopp targets [2, B_u, K] of the global crops (with the queue's rows when
    it is full); a training step then pushes the crops' embeddings into the queue."""
    config = self.config
    batch = global_scores.shape[1]

    def sinkhorn(scores, mask=None):
      return losses.sinkhorn_knopp(scores, config.sinkhorn_epsilon, config.sinkhorn_iterations,
                                   global_sum=cross_replica_sum, mask=mask)[-batch:]

    targets = []
    for view in range(NUM_GLOBAL_VIEWS):
      scores = tf.stop_gradient(global_scores[view])
      if self.queue is None:
        targets.append(sinkhorn(scores))
        continue
      # SwAV uses the queue once it is full; until then its rows take no part.
      queued = self.queue.replica_rows(view)
      mask = tf.concat([tf.fill([queued.shape[0]], tf.cast(self.queue.is_full(), tf.float32)),
                        tf.ones([batch])], 0)
      targets.append(sinkhorn(tf.concat([self.prototypes(queued), scores], 0), mask))
    targets = tf.stack(targets)
    if self.queue is not None and training:
      embeddings = tf.reshape(tf.stop_gradient(global_embeddings), [NUM_GLOBAL_VIEWS, batch, -1])
      gathered = tf.stack([cross_replica_concat(e)[0] for e in tf.unstack(embeddings)])
      epoch = self.current_step() // self.steps_per_epoch_count
      with tf.control_dependencies([targets]):
        push = self.queue.push(gathered, started=epoch >= config.queue_start_epoch)
      with tf.control_dependencies([push]):
        targets = tf.identity(targets)
    return targets

  def compute_loss(self, batch, training=True):
    labelled_scores, view_scores, global_embeddings = self.student_outputs(batch, training)
    targets = self.assignments(view_scores[:NUM_GLOBAL_VIEWS], global_embeddings, training)
    per_image = losses.cross_view_cross_entropy(view_scores, targets, self.config.temperature)
    loss, metrics = self.combined_loss(batch, labelled_scores, per_image, targets, training)
    return loss, dict(metrics, **self.diagnostics_of_views(view_scores, global_embeddings))


@METHODS.register("swav")
class SwAV(LabelFree, Suave):
  """SwAV (Caron et al. 2020; facebookresearch/swav, main_swav.py): Suave's swapped
  prediction without the labelled stream, over `num_prototypes` prototypes.

  Exports `default`, the taps and `proj` (the normalised embedding)."""

  @classmethod
  def default_config(cls):
    # scripts/swav_800ep_pretrain.sh on 64 GPUs x 64 images.
    return dict(super().default_config(), **{
        "batch_size": 4096,
        "train_epochs": 800.0,
        "num_local_views": 6,
        "num_prototypes": 3000,
        # No queue at 4096 images a step (the script's queue_length 0; main_swav.py would
        # round any length below the global batch down to 0 too).
        "queue_length": 0,
        "queue_start_epoch": 15,
        "freeze_prototypes_steps": 313,
        "learning_rate": 4.8,
        "warmup_epochs": 10.0,
        "warmup_start_factor": 0.3 / 4.8,  # start_warmup 0.3
        "end_lr_factor": 0.001,  # final_lr 0.0048
    })
