"""S4L's semi-supervised setting, shared by its methods (Zhai et al. 2019).

Every step zips a batch of the labelled subset (`sup`, `batch_size` images) with a batch
of the whole training split (`unsup`, `unsup_batch_size` images, labels unused). Both go
through the backbone in one concatenated pass, so batch norm normalises over both, as
S4L's `apply_model_semi` does; a linear classifier (`head`) on the pre-logits is trained
with cross-entropy on the labelled images and exported as `logits`.
"""

import math

import tensorflow as tf

from tfssl import losses
from tfssl import models
from tfssl import preprocess as pp
from tfssl.methods.base import Method, WithClassifier, global_mean, top_k_correct
from tfssl.methods.base import check_unsup_batch_size, unsup_batch_size


class SemiSupervised(WithClassifier, Method):
  """Two streams, one joint backbone pass, a class head; subclasses add their losses."""

  input_mode = "two_streams"

  @classmethod
  def default_config(cls):
    return {
        "unsup_batch_size": 0,  # 0: batch_size (S4L's unsup_batch_mult 1)
        "crop_area_min": 0.05,  # S4L's inception_crop: sample_distorted_bounding_box defaults
    }

  @classmethod
  def check_config(cls, config, image_size):
    del image_size
    check_unsup_batch_size(config)

  def __init__(self, config, num_classes, image_size):
    super().__init__(config, num_classes, image_size)
    self.unsup_batch_size = unsup_batch_size(config)

  def train_preprocess(self, features, seed):
    image = pp.supervised_train(features["image"], seed, self.image_size,
                                area_range=(self.config.crop_area_min, 1.0))
    return {"image": image, "label": features["label"]}

  def unsup_preprocess(self, features, seed):
    return {"image": self.train_preprocess(features, seed)["image"]}

  def joint_features(self, *image_batches, training=True):
    """Pre-logits of several batches from one backbone pass (shared BN statistics)."""
    sizes = [images.shape[0] for images in image_batches]
    features = self.backbone(tf.concat(image_batches, axis=0), training=training)["default"]
    return tf.split(features, sizes, axis=0)

  def uniform_losses(self):
    return {"class_loss": math.log(self.num_classes)}

  def class_loss(self, logits, labels, global_count):
    """(this replica's share of the mean cross-entropy, of the top-1 accuracy)."""
    per_example = losses.softmax_cross_entropy(logits, labels, self.num_classes,
                                               self.config.label_smoothing)
    return (global_mean(per_example, global_count),
            global_mean(top_k_correct(logits, labels, 1), global_count))

  def perturbed_logits(self, images, training=True):
    """Class logits of images that are not real data (VAT's perturbed copies): batch norm
    normalises with their own statistics but does not fold them into its averages."""
    with models.batch_norm_statistics_frozen(self.backbone):
      return self.head(self.backbone(images, training=training)["default"])
