"""FNC: SimCLR with false negative cancellation (Huynh et al., "Boosting Contrastive
Self-Supervised Learning with False Negative Cancellation", WACV 2022).

Each image gets `support_size` views on top of SimCLR's two, all from the same
augmentation and all anchors of the contrastive loss (the other views of an image are
its positives, as in google-research/fnc). A candidate negative (a view of another
image) scores the largest cosine similarity between it and any view of the anchor's
image; the `fn_topk` highest-scoring candidates above `fn_threshold` are taken for false
negatives of every view of that image and either

  - `attraction`: become extra positives (they stay in the denominator; each anchor's
    loss is the mean over all its positives), the strategy of the released code, or
  - `elimination`: leave the denominator.

With `memory_multiplier` M > 0 (the released default, 16), a momentum encoder (a second
backbone and projection head, each step moved to `moving_average_decay` x itself +
(1 - decay) x the online network, after the update) embeds every view, and a bank of the
last M x batch of its L2-normalised projections, filled from all replicas and the same on
each, supplies the candidates: model.py puts the step's V x batch embeddings in front and
drops as many of the oldest, and the loss uses the bank with them already in it. Each
online view is an anchor against the whole bank, its own view's entry left out, the
other views' entries of its image its positives; false negatives are the bank rows that
score highest against the momentum encoder's views of the image. As in the original, the
momentum encoder starts from its own random weights (not a copy), normalises with batch
statistics, and the bank starts as zeros; evaluation and export use the online network.
With M = 0 (the in-batch version) negatives are the views of the global batch, gathered
from every replica.
"""

import tensorflow as tf

from tfssl import losses
from tfssl.errors import UserError
from tfssl.methods.base import METHODS, global_mean, moving_average_update
from tfssl.methods.simclr import ProjectionHead, SimCLR
from tfssl.preprocess import randaugment

STRATEGIES = ("attraction", "elimination")


class MemoryBank(tf.Module):
  """FNC's memory: the momentum encoder's last `rows` embeddings of all replicas' views,
  newest first; every replica holds the same copy (written from gathered embeddings)."""

  def __init__(self, rows, dim):
    super().__init__(name="memory")
    # Every replica writes the same value, each its own copy: no aggregation, which on a
    # TPU would broadcast the (ImageNet: 32 MB) bank from the first core every step.
    with self.name_scope:
      self.embeddings = tf.Variable(tf.zeros([rows, dim]), trainable=False, name="embeddings",
                                    aggregation=tf.VariableAggregation.NONE)

  def older_rows(self, pushed):
    """The rows that stay when `pushed` new ones come in front."""
    return tf.identity(self.embeddings[:self.embeddings.shape[0] - pushed])


@METHODS.register("fnc")
class FNC(SimCLR):
  """SimCLR + false negatives found through support views, attracted or eliminated."""

  @classmethod
  def default_config(cls):
    # google-research/fnc run.py defaults.
    return dict(super().default_config(), support_size=8, fn_topk=10, fn_threshold=0.7,
                fn_strategy="attraction", learning_rate=0.1, lr_scaling="sqrt",
                weight_decay=1e-4,
                # RandAugment on every view, between the colour jitter and the grayscale;
                # run.py's flag, with data_util.py's hard-coded 2 layers at magnitude 7.
                use_randaugment=True, randaugment_layers=2, randaugment_magnitude=7,
                memory_multiplier=16, moving_average_decay=0.999)

  @classmethod
  def check_config(cls, config, image_size):
    super().check_config(config, image_size)
    if config.fn_strategy not in STRATEGIES:
      raise UserError(f"Unknown fn_strategy '{config.fn_strategy}'. Known: "
                      f"{', '.join(STRATEGIES)}.")
    if config.support_size < 0 or config.fn_topk < 0:
      raise UserError(f"support_size={config.support_size} and fn_topk={config.fn_topk} "
                      "must be >= 0.")
    randaugment.check_settings(config.randaugment_layers, config.randaugment_magnitude)
    views = 2 + config.support_size
    if config.memory_multiplier and config.memory_multiplier < views:
      raise UserError(
          f"memory_multiplier={config.memory_multiplier} makes a memory bank smaller than "
          f"one step's {views} views (2 + support_size) of every image, which FNC puts in it "
          f"each step: use memory_multiplier >= {views} (the original refuses less; it uses "
          f"16), or 0 for in-batch negatives.")
    if config.memory_multiplier < 0 or not 0 <= config.moving_average_decay < 1:
      raise UserError(f"memory_multiplier={config.memory_multiplier} must be >= 0 and "
                      f"moving_average_decay={config.moving_average_decay} in [0, 1) (1 "
                      f"would leave the momentum encoder at its random start).")

  def __init__(self, config, num_classes, image_size):
    super().__init__(config, num_classes, image_size)
    self.num_views = 2 + config.support_size
    self.uses_memory = bool(config.memory_multiplier) and not self.finetuning

  # --- models ---------------------------------------------------------------

  def build(self):
    super().build()
    if not self.uses_memory:
      return
    config = self.config
    self.ema_backbone = self.new_backbone(name_prefix="ema")
    self.ema_projection = ProjectionHead(
        self.feature_dim, config.num_proj_layers, config.proj_out_dim, sync_bn=config.sync_bn,
        bn_momentum=config.bn_momentum, bn_epsilon=config.bn_epsilon, name="ema_projection")
    self.ema_projection.build((None, self.feature_dim))
    self.memory = MemoryBank(config.memory_multiplier * config.batch_size, config.proj_out_dim)

  def _memory_trackables(self):
    if not self.uses_memory:
      return {}
    return {"ema_backbone": self.ema_backbone, "ema_projection": self.ema_projection,
            "memory": self.memory}

  def trackables(self):
    return dict(super().trackables(), **self._memory_trackables())

  def _without_memory(self, trackables):
    return {name: obj for name, obj in trackables.items()
            if name not in self._memory_trackables()}

  def trackables_to_initialize(self, saved=()):
    return self._without_memory(super().trackables_to_initialize(saved))

  def exported_trackables(self):
    return self._without_memory(self.trackables())

  @property
  def trainable_variables(self):
    return [v for obj in self._without_memory(self.trackables()).values()
            for v in obj.trainable_variables]

  def _ema_pairs(self):
    """(momentum encoder variable, online variable) of the parameters (the original's
    trainable variables; batch-norm statistics are each network's own)."""
    pairs = []
    for ema, online in ((self.ema_backbone, self.backbone),
                        (self.ema_projection, self.projection)):
      if [("ema_" + v.path, v.shape) for v in online.weights] != [
          (v.path, v.shape) for v in ema.weights]:
        raise AssertionError("momentum encoder and online network differ in variables")
      pairs += [(average, value) for average, value in zip(ema.weights, online.weights)
                if value.trainable]
    return pairs

  def after_initialize(self):
    """`--init_from` loaded the online network: the momentum encoder starts as its copy
    (from scratch it starts from its own random weights, as the original)."""
    if self.uses_memory:
      for average, value in self._ema_pairs():
        average.assign(value)

  def after_step(self):
    if self.uses_memory:
      return moving_average_update(self._ema_pairs(), self.config.moving_average_decay)
    return super().after_step()

  # --- training -------------------------------------------------------------

  def contrastive_keys(self, images, embeddings, training):
    if not self.uses_memory:
      return embeddings
    _, hiddens = self.ema_projection_of(images, training)
    keys = tf.math.l2_normalize(tf.cast(hiddens[-1], tf.float32), axis=-1)
    return tf.stop_gradient(tf.reshape(keys, embeddings.shape))

  def ema_projection_of(self, images, training):
    # In training mode, as the original's momentum encoder: batch statistics.
    outputs = self.ema_backbone(images, training=training)
    return outputs, self.ema_projection(outputs["default"], training=training)

  def older_candidates(self, all_keys, training):
    """The bank's rows after this step's keys; a training step pushes the keys in front."""
    if not self.uses_memory:
      return None
    step_rows = tf.reshape(all_keys, [-1, all_keys.shape[-1]])
    older = self.memory.older_rows(step_rows.shape[0])
    if training:
      with tf.control_dependencies([older]):
        push = self.memory.embeddings.assign(tf.concat([step_rows, older], 0))
      with tf.control_dependencies([push]):
        older = tf.identity(older)
    return older

  def view_options(self):
    if not self.config.use_randaugment:
      return {}
    return {"randaugment_layers": self.config.randaugment_layers,
            "randaugment_magnitude": self.config.randaugment_magnitude}

  def false_negatives(self, keys, all_keys, offset, older):
    config = self.config
    if not config.fn_topk:
      return {}, {}
    mask = losses.top_false_negatives(keys, all_keys, offset, config.fn_topk,
                                      config.fn_threshold, older=older)
    key = "attracted" if config.fn_strategy == "attraction" else "eliminated"
    per_image = tf.reduce_sum(tf.cast(mask, tf.float32), axis=-1)
    return {key: mask}, {"false_negatives_per_image": global_mean(per_image, config.batch_size)}
