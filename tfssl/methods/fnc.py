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

This is the in-batch version (the released code's `memory_multiplier=0`): negatives are
the views of the global batch, gathered from every replica.
"""

import tensorflow as tf

from tfssl import losses
from tfssl import preprocess as pp
from tfssl.errors import UserError
from tfssl.methods.base import METHODS, global_mean
from tfssl.methods.simclr import SimCLR
from tfssl.preprocess import randaugment

STRATEGIES = ("attraction", "elimination")


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
                use_randaugment=True, randaugment_layers=2, randaugment_magnitude=7)

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

  def __init__(self, config, num_classes, image_size):
    super().__init__(config, num_classes, image_size)
    self.num_views = 2 + config.support_size

  def view(self, image, seed):
    if not self.config.use_randaugment:
      return super().view(image, seed)
    return pp.simclr_train(image, seed, self.image_size,
                           strength=self.config.color_jitter_strength,
                           blur=self.config.use_blur,
                           area_range=(self.config.crop_area_min, 1.0),
                           randaugment_layers=self.config.randaugment_layers,
                           randaugment_magnitude=self.config.randaugment_magnitude)

  def false_negatives(self, embeddings, all_embeddings, offset):
    config = self.config
    if not config.fn_topk:
      return {}, {}
    mask = losses.top_false_negatives(embeddings, all_embeddings, offset, config.fn_topk,
                                      config.fn_threshold)
    key = "attracted" if config.fn_strategy == "attraction" else "eliminated"
    per_image = tf.reduce_sum(tf.cast(mask, tf.float32), axis=-1)
    return {key: mask}, {"false_negatives_per_image": global_mean(per_image, config.batch_size)}
