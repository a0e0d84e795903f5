"""SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
Representations", and SimCLRv2, "Big Self-Supervised Models are Strong Semi-Supervised
Learners"), pretraining and fine-tuning, as google-research/simclr runs them.

Pretraining (`train_mode=pretrain`): each image becomes two views (inception crop, flip,
colour distortion of `color_jitter_strength`, blur); one backbone pass over all views,
a projection head (`num_proj_layers`: 2 is v1's, 3 is v2's), NT-Xent with `temperature`
whose negatives are the views of every image of the global batch (gathered from all
replicas). A linear head on the stop-gradient `ft_proj_selector` layer learns the labels
at the same time (SimCLRv2's `lineareval_while_pretraining`: the online linear accuracy
`--run_eval` reports).

Fine-tuning (`train_mode=finetune`, with `--init_from` a pretraining run or its module
and `--labels` a subset): the network up to projection layer `ft_proj_selector` plus a
new (zero-initialised) linear head learn the labelled images (crop + flip), with
everything up to block `fine_tune_after_block` frozen (-1: nothing; 4: all of the
backbone, i.e. linear evaluation). Unlike SimCLR, whose frozen blocks still update
their batch-norm averages unless the whole backbone is frozen, frozen blocks here stay
exactly as pretrained.
"""

import keras
import tensorflow as tf

from tfssl import losses
from tfssl import models
from tfssl import preprocess as pp
from tfssl.errors import UserError
from tfssl.methods.base import METHODS, ClassifierHead, Method, cross_replica_concat
from tfssl.methods.base import global_mean, top_k_correct, views_major

TRAIN_MODES = ("pretrain", "finetune")


class ProjectionHead(keras.layers.Layer):
  """SimCLR's nonlinear projection: dense layers with batch norm and ReLU in between,
  the middle ones as wide as the input; the last one `out_dim` wide, without bias, BN
  offset or ReLU. Returns [input, output of layer 1, ..., output of the last layer]."""

  def __init__(self, in_dim, num_layers, out_dim, sync_bn=False, bn_momentum=0.9,
               bn_epsilon=1e-5, **kwargs):
    super().__init__(**kwargs)
    self.in_dim = in_dim
    self.num_layers = num_layers
    self.out_dim = out_dim
    # One attribute per layer: TF checkpoints follow attributes, not lists of Keras 3 layers.
    for index in range(num_layers):
      last = index == num_layers - 1
      # The embedding the loss divides by a small temperature is computed in float32.
      dtype = "float32" if last else None
      setattr(self, f"dense_{index}", keras.layers.Dense(
          out_dim if last else in_dim, use_bias=False, name=f"dense_{index}", dtype=dtype,
          kernel_initializer=keras.initializers.RandomNormal(stddev=0.01)))
      setattr(self, f"bn_{index}", keras.layers.BatchNormalization(
          center=not last, momentum=bn_momentum, epsilon=bn_epsilon, synchronized=sync_bn,
          name=f"bn_{index}", dtype=dtype))

  @property
  def denses(self):
    return [getattr(self, f"dense_{index}") for index in range(self.num_layers)]

  @property
  def norms(self):
    return [getattr(self, f"bn_{index}") for index in range(self.num_layers)]

  def build(self, input_shape):
    del input_shape
    for dense, norm in zip(self.denses, self.norms):
      dense.build((None, self.in_dim))
      norm.build((None, dense.units))
    self.built = True

  def dims(self):
    """Widths of the list `call` returns."""
    return [self.in_dim] * self.num_layers + [self.out_dim]

  def call(self, features, training=False):
    hiddens = [features]
    for index, (dense, norm) in enumerate(zip(self.denses, self.norms)):
      x = norm(dense(hiddens[-1]), training=training)
      hiddens.append(x if index == self.num_layers - 1 else keras.ops.relu(x))
    return hiddens

  def freeze_from(self, index):
    """Layers `index`.. are unused when fine-tuning from the output of layer `index`."""
    for dense, norm in zip(self.denses[index:], self.norms[index:]):
      dense.trainable = False
      norm.trainable = False


@METHODS.register("simclr")
class SimCLR(Method):
  """Two views, a projection head, NT-Xent across replicas; or fine-tuning of the same
  network. Exports `default` and the taps, `proj_1`.. `proj_L` (projection layers) and
  `logits` of the linear head on layer `ft_proj_selector`."""

  num_views = 2

  @classmethod
  def default_config(cls):
    # google-research/simclr tf2/run.py defaults (the ImageNet recipes set the rest).
    return {
        "train_mode": "pretrain",  # pretrain | finetune
        "temperature": 0.1,
        "num_proj_layers": 3,  # 2: SimCLR v1's head, 3: v2's
        "proj_out_dim": 128,
        "ft_proj_selector": 0,  # the head learns (and exports `logits` of) this layer: 0 = backbone
        "online_linear_head": True,  # pretraining also trains the head on stop-gradient features
        "fine_tune_after_block": -1,  # finetune: freeze up to this block (-1 none, 4 backbone)
        "zero_init_logits_layer": True,  # finetune: a new, zero head (else the pretrained one)
        "color_jitter_strength": 1.0,
        "use_blur": True,
        # tf2/data_util.py's crop_and_resize resizes bicubically; tf2/resnet.py starts the
        # last batch norm of every residual block at gamma 0 (hard-coded init_zero).
        "crop_resize_method": "bicubic",
        "zero_init_residual": True,
        "batch_size": 512,
        "train_epochs": 100.0,
        "optimizer": "lars",
        "learning_rate": 0.3,
        "lr_scaling": "linear",
        "lr_schedule": "cosine",
        "warmup_epochs": 10.0,
        "weight_decay": 1e-6,
        "weight_decay_mode": "decoupled",  # LARS applies it
        "lars_exclude": ("head/",),
        "sync_bn": True,
    }

  @classmethod
  def uses_labels(cls, config):
    return config.train_mode == "finetune"

  @classmethod
  def check_config(cls, config, image_size):
    del image_size
    if config.train_mode not in TRAIN_MODES:
      raise UserError(f"Unknown train_mode '{config.train_mode}'. Known: {', '.join(TRAIN_MODES)}.")
    if config.num_proj_layers < 1:
      raise UserError(f"num_proj_layers={config.num_proj_layers}: SimCLR's head has at least "
                      "one layer (2: v1, 3: v2).")
    if not 0 <= config.ft_proj_selector <= config.num_proj_layers:
      raise UserError(f"ft_proj_selector={config.ft_proj_selector} must be in 0.."
                      f"{config.num_proj_layers} (0: the backbone's output, k: projection "
                      "layer k).")
    if config.fine_tune_after_block < -1:
      raise UserError(f"fine_tune_after_block={config.fine_tune_after_block}: use -1 to train "
                      "the whole network, or the last frozen block (4: the whole backbone).")
    if config.temperature <= 0:
      raise UserError(f"temperature={config.temperature} must be positive.")
    if config.crop_resize_method not in pp.RESIZE_METHODS:
      raise UserError(f"Unknown crop_resize_method '{config.crop_resize_method}'; choose one "
                      f"of {', '.join(pp.RESIZE_METHODS)}.")

  def __init__(self, config, num_classes, image_size):
    super().__init__(config, num_classes, image_size)
    self.finetuning = config.train_mode == "finetune"
    self.gathers_across_replicas = not self.finetuning

  # --- models ---------------------------------------------------------------

  def backbone_options(self):
    # ResNets: zero last BN gamma (v1, SimCLR's) or last conv (pre-activation) per block.
    return {"zero_init_residual": self.config.zero_init_residual}

  def build(self):
    super().build()
    config = self.config
    self.projection = ProjectionHead(
        self.feature_dim, config.num_proj_layers, config.proj_out_dim, sync_bn=config.sync_bn,
        bn_momentum=config.bn_momentum, bn_epsilon=config.bn_epsilon, name="projection")
    self.projection.build((None, self.feature_dim))
    # Images without labels (num_classes 0) train no linear head: there is nothing to learn.
    self.head = None
    if self.num_classes:
      head_dim = self.projection.dims()[config.ft_proj_selector]
      self.head = ClassifierHead(self.num_classes, name="head",
                                 zero_init=self.finetuning and config.zero_init_logits_layer)
      self.head.build((None, head_dim))
    if self.finetuning:
      models.freeze_through_block(self.backbone, config.fine_tune_after_block)
      self.projection.freeze_from(config.ft_proj_selector)
    elif self.head is not None and not config.online_linear_head:
      self.head.trainable = False  # exported untrained, like a random-init baseline's

  def trackables(self):
    trackables = dict(super().trackables(), projection=self.projection)
    if self.head is not None:
      trackables["head"] = self.head
    return trackables

  def trackables_to_initialize(self, saved=()):
    del saved
    trackables = self.trackables()
    if self.finetuning and self.config.zero_init_logits_layer:
      trackables.pop("head", None)
    return trackables

  def hiddens(self, images, training):
    """(backbone outputs, [pre-logits, projection layer 1, ..., last projection layer])."""
    outputs = self.backbone(images, training=training)
    return outputs, self.projection(outputs["default"], training=training)

  def representations(self, images, training=False):
    outputs, hiddens = self.hiddens(images, training)
    reps = dict(outputs)
    for index in range(1, len(hiddens)):
      reps[f"proj_{index}"] = tf.cast(hiddens[index], tf.float32)
    if self.head is not None:
      reps["logits"] = self.head(hiddens[self.config.ft_proj_selector])
    return reps

  # --- input ----------------------------------------------------------------

  def view(self, image, seed):
    return pp.simclr_train(image, seed, self.image_size,
                           strength=self.config.color_jitter_strength,
                           blur=self.config.use_blur,
                           area_range=(self.config.crop_area_min, 1.0),
                           resize_method=self.config.crop_resize_method, **self.view_options())

  def view_options(self):
    """Further `simclr_train` arguments of a view (FNC: its RandAugment)."""
    return {}

  def train_preprocess(self, features, seed):
    if self.finetuning:  # crop + flip
      image = pp.supervised_train(features["image"], seed, self.image_size,
                                  area_range=(self.config.crop_area_min, 1.0),
                                  resize_method=self.config.crop_resize_method)
      return {"image": image, "label": features["label"]}
    seeds = pp.split_seed(seed, self.num_views)
    views = tf.stack([self.view(features["image"], view_seed) for view_seed in seeds])
    return {"views": views, "label": features["label"]}

  def summary_images(self, batch):
    images = batch["views"] if "views" in batch else batch["image"]
    return tf.reshape(images, [-1] + images.shape[-3:].as_list())

  # --- training -------------------------------------------------------------

  def compute_loss(self, batch, training=True):
    if self.finetuning:
      return self.finetune_loss(batch, training)
    views = batch["views"]
    batch_size, num_views = views.shape[:2]
    # One pass over all views, view-major, so batch norm sees them all (SimCLR's concat).
    images = views_major(views)
    _, hiddens = self.hiddens(images, training)
    embeddings = tf.math.l2_normalize(tf.cast(hiddens[-1], tf.float32), axis=-1)
    embeddings = tf.reshape(embeddings, [num_views, batch_size, -1])
    keys = self.contrastive_keys(images, embeddings, training)
    loss, metrics = self.contrastive_loss(embeddings, keys, training)
    metrics.update(self.diagnostic_metrics(embeddings))
    if self.head is not None and self.config.online_linear_head:
      # The main views only: FNC's support views are extra crops of the same images.
      main = hiddens[self.config.ft_proj_selector][:2 * batch_size]
      logits = self.head(tf.stop_gradient(main))
      labels = tf.tile(batch["label"], [2])
      count = 2 * self.config.batch_size
      online_loss = global_mean(
          losses.softmax_cross_entropy(logits, labels, self.num_classes), count)
      loss += online_loss
      metrics.update(online_loss=online_loss,
                     online_top1=global_mean(top_k_correct(logits, labels, 1), count))
    return loss, metrics

  def contrastive_keys(self, images, embeddings, training):
    """[V, n, D] the candidates' embeddings of this replica's views: the anchors' own
    (FNC's memory bank: its momentum encoder's)."""
    del images, training
    return embeddings

  def older_candidates(self, all_keys, training):
    """[R, D] candidates besides the step's views (FNC's memory bank), or None."""
    del all_keys, training
    return None

  def contrastive_loss(self, embeddings, keys, training):
    """(loss share, metrics) of NT-Xent over all views of this replica's images."""
    all_keys, offset = cross_replica_concat_views(keys)
    older = self.older_candidates(all_keys, training)
    masks, metrics = self.false_negatives(keys, all_keys, offset, older)
    per_anchor, logits, _ = losses.multi_view_nt_xent(
        embeddings, self.config.temperature, all_keys, offset, older=older, **masks)
    num_views = embeddings.shape[0]
    # SimCLR sums its two directions' means (loss_a + loss_b); FNC scales V views' to match.
    loss = global_mean(per_anchor, self.config.batch_size) * 2.0 / num_views
    # Hit: the top candidate is another view of the anchor's own image, not an attracted
    # false negative (columns and rows are view-major: images repeat every N columns and
    # every n rows; older candidates come after the views).
    batch_size, total = embeddings.shape[1], all_keys.shape[1]
    top = tf.argmax(logits, axis=-1, output_type=tf.int32)
    anchor_image = tf.tile(tf.range(batch_size), [num_views]) + offset
    top_is_positive = tf.logical_and(top < num_views * total,
                                     tf.equal(top % total, anchor_image))
    return loss, dict(
        metrics, contrastive_loss=loss,
        contrastive_top1=global_mean(top_is_positive, self.config.batch_size * num_views))

  def false_negatives(self, keys, all_keys, offset, older):
    """({"attracted" or "eliminated": mask} for `multi_view_nt_xent`, metrics): none here."""
    del keys, all_keys, offset, older
    return {}, {}

  def finetune_loss(self, batch, training):
    _, hiddens = self.hiddens(batch["image"], training)
    logits = self.head(hiddens[self.config.ft_proj_selector])
    per_example = losses.softmax_cross_entropy(logits, batch["label"], self.num_classes,
                                               self.config.label_smoothing)
    batch_size = self.config.batch_size
    return global_mean(per_example, batch_size), {
        "top1": global_mean(top_k_correct(logits, batch["label"], 1), batch_size)}


def cross_replica_concat_views(embeddings):
  """[V, n, D] views of this replica's images -> ([V, N, D] of all replicas', offset)."""
  gathered, offset = cross_replica_concat(tf.transpose(embeddings, [1, 0, 2]))
  return tf.transpose(gathered, [1, 0, 2]), offset
