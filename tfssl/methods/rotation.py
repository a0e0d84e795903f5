"""Rotation prediction (Gidaris et al. 2018) as Revisiting trains it.

Every image of the batch is fed at 0, 90, 180 and 270 degrees; a linear head on the
pre-logits classifies which rotation was applied. The rotations are made on the device,
so the input pipeline carries each image once.
"""

import functools
import math

import tensorflow as tf

from tfssl import losses
from tfssl import preprocess as pp
from tfssl.methods.base import METHODS, ClassifierHead, Method, global_mean, top_k_correct

NUM_ROTATIONS = 4


def rotate_batch(images):
  """[N, H, W, C] (square) -> ([4N, H, W, C], [4N] labels): all images at k * 90 degrees
  counter-clockwise for k = 0..3, in blocks of N, labelled k."""
  # tf.image.rot90 would add shape asserts that XLA can only drop with a warning.
  transpose = functools.partial(tf.transpose, perm=[0, 2, 1, 3])
  rotated = [images,
             transpose(tf.reverse(images, axis=[2])),
             tf.reverse(images, axis=[1, 2]),
             tf.reverse(transpose(images), axis=[2])]
  labels = tf.repeat(tf.range(NUM_ROTATIONS), tf.shape(images)[0])
  return tf.concat(rotated, axis=0), labels


class WithRotationHead:
  """Mixin: a linear 4-way rotation classifier `rotation_head` on the pre-logits."""

  def build(self):
    super().build()
    self.rotation_head = ClassifierHead(NUM_ROTATIONS, name="rotation_head")
    self.rotation_head.build((None, self.feature_dim))

  def trackables(self):
    return dict(super().trackables(), rotation_head=self.rotation_head)


@METHODS.register("rotation")
class Rotation(WithRotationHead, Method):
  """Backbone + 4-way rotation classifier; exports the backbone's representations."""

  @classmethod
  def uses_labels(cls, config):
    del config
    return False

  @classmethod
  def default_config(cls):
    return {"crop_area_min": 0.05}  # slim inception_preprocessing, as the original

  def train_preprocess(self, features, seed):
    return {"image": pp.inception_train(features["image"], seed, self.image_size,
                                        area_range=(self.config.crop_area_min, 1.0))}

  def compute_loss(self, batch, training=True):
    images, labels = rotate_batch(batch["image"])
    features = self.backbone(images, training=training)["default"]
    logits = self.rotation_head(features)
    per_example = losses.softmax_cross_entropy(logits, labels, NUM_ROTATIONS)
    inputs = self.config.batch_size * NUM_ROTATIONS
    return global_mean(per_example, inputs), dict(
        self.diagnostic_metrics(features, tf.nn.softmax(logits)),
        rotation_top1=global_mean(top_k_correct(logits, labels, 1), inputs))

  def uniform_losses(self):
    return {"loss": math.log(NUM_ROTATIONS)}
