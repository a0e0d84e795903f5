"""Exemplar (Dosovitskiy et al. 2014) with a triplet loss, as Revisiting trains it.

Each image becomes `exemplar_copies` heavily augmented crops (its "class"); an embedding
head on the pre-logits is trained with a triplet loss whose labels are the source images.
Inputs are standardised per image on the device, in training and in the exported module
alike, so the module takes the same [0, 1] images as every other.

Each embedding is L2-normalised. The released code normalised along the batch axis
(`l2_normalize(logits, axis=0)`), which makes every embedding depend on the rest of the
batch; we take that for a slip and follow the paper's per-embedding normalisation.
"""

import math

import keras
import tensorflow as tf

from tfssl import losses
from tfssl import preprocess as pp
from tfssl.errors import UserError
from tfssl.methods.base import METHODS, Method, global_mean

TRIPLET_LOSSES = {"batch_hard": losses.triplet_batch_hard,
                  "semi_hard": losses.triplet_semi_hard}


def check_exemplar_copies(config, paper):
  if config.exemplar_copies < 2:
    raise UserError(f"exemplar_copies={config.exemplar_copies}: a triplet needs at least 2 "
                    f"copies of each image ({paper} uses 8).")


@METHODS.register("exemplar")
class Exemplar(Method):
  """Backbone + linear embedding head trained with a triplet loss over augmented copies."""

  @classmethod
  def uses_labels(cls, config):
    del config
    return False

  @classmethod
  def default_config(cls):
    return {
        "crop_area_min": 0.05,  # slim inception_preprocessing
        "exemplar_copies": 8,
        "grayscale_probability": 0.66,  # whole image, before the copies are cut
        "embed_dim": 1000,
        "triplet_margin": 0.5,
        # batch_hard: the paper's "batch-hard" mining; semi_hard: the released code's loss.
        "triplet_mining": "batch_hard",
    }

  @classmethod
  def check_config(cls, config, image_size):
    del image_size
    if config.triplet_mining not in TRIPLET_LOSSES:
      raise UserError(f"Unknown triplet_mining '{config.triplet_mining}'. "
                      f"Known: {', '.join(TRIPLET_LOSSES)}.")
    check_exemplar_copies(config, paper="the paper")

  def build(self):
    super().build()
    self.embedding = keras.layers.Dense(self.config.embed_dim, dtype="float32", name="embedding")
    self.embedding.build((None, self.feature_dim))

  def trackables(self):
    return dict(super().trackables(), embedding=self.embedding)

  def representations(self, images, training=False):
    return dict(self.backbone(pp.patches.standardize(images), training=training))

  def train_preprocess(self, features, seed):
    gray_seed, *copy_seeds = pp.split_seed(seed, 1 + self.config.exemplar_copies)
    image = pp.decode_image(features["image"])
    image = pp.random_grayscale(image, gray_seed, self.config.grayscale_probability)
    area_range = (self.config.crop_area_min, 1.0)
    return {"image": tf.stack([pp.inception_train(image, copy_seed, self.image_size, area_range)
                               for copy_seed in copy_seeds])}

  def compute_loss(self, batch, training=True):
    images = batch["image"]  # [N, copies, H, W, C]
    num_images, copies = tf.shape(images)[0], images.shape[1]
    flat = tf.reshape(images, [-1] + images.shape[2:].as_list())
    features = self.representations(flat, training=training)["default"]
    embeddings = tf.math.l2_normalize(self.embedding(tf.cast(features, tf.float32)), axis=-1)
    labels = tf.repeat(tf.range(num_images), copies)
    per_example = TRIPLET_LOSSES[self.config.triplet_mining](
        embeddings, labels, self.config.triplet_margin)
    return global_mean(per_example, self.config.batch_size * copies), self.diagnostic_metrics(
        embeddings)

  def uniform_losses(self):
    # Every image embedded alike: each triplet's distances are 0.
    margin = self.config.triplet_margin
    return {"loss": math.log(2.0) if margin is None else margin}
