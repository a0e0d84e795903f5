"""S4L-Rotation and S4L-Exemplar: a self-supervised task on both streams plus supervised
cross-entropy on the labelled one (Zhai et al. 2019, section 3).

S4L-Rotation: every labelled and unlabelled image is fed at 0, 90, 180 and 270 degrees;
the class head learns all four rotations of a labelled image as its class, a rotation head
predicts the rotation of every image. loss = CE + w * mean(rotation CE unlabelled,
rotation CE labelled).

S4L-Exemplar: every image becomes `exemplar_copies` crops with HSV noise; CE on every copy
of a labelled image, plus w * mean(triplet unlabelled, triplet labelled), the triplet loss
batch-hard with a soft margin on L2-normalised embeddings whose positives are the copies of
one image. (The released code passes the copy and image counts to its triplet helper in
swapped order, so its positives are not the copies of one image; we follow the paper.)
"""

import math

import keras
import tensorflow as tf

from tfssl import losses
from tfssl import preprocess as pp
from tfssl.methods.base import METHODS, global_mean, top_k_correct
from tfssl.methods.exemplar import check_exemplar_copies
from tfssl.methods.rotation import NUM_ROTATIONS, WithRotationHead, rotate_batch
from tfssl.methods.semi_supervised import SemiSupervised


@METHODS.register("s4l_rotation")
class S4LRotation(WithRotationHead, SemiSupervised):
  """Class head + rotation head on one backbone; evaluates unrotated and 4-rotation
  averaged class predictions (S4L reports both)."""

  @classmethod
  def default_config(cls):
    return dict(super().default_config(), rotation_loss_weight=1.0)

  def rotated_streams(self, batch, training):
    """All rotations of both streams through one backbone pass: a dict of their features,
    rotation labels, the class labels of the labelled ones and the rotated unlabelled
    images."""
    sup_images, sup_rotations = rotate_batch(batch["sup"]["image"])
    unsup_images, unsup_rotations = rotate_batch(batch["unsup"]["image"])
    sup_features, unsup_features = self.joint_features(sup_images, unsup_images,
                                                       training=training)
    return {
        "sup_features": sup_features, "unsup_features": unsup_features,
        "sup_rotations": sup_rotations, "unsup_rotations": unsup_rotations,
        # rotate_batch stacks the rotations in blocks of the batch, so labels tile.
        "class_labels": tf.tile(batch["sup"]["label"], [NUM_ROTATIONS]),
        "unsup_images": unsup_images,
    }

  def rotation_loss(self, streams):
    """(mean of the two streams' rotation CE shares, rotation top-1 share on unlabelled)."""
    logits = {stream: self.rotation_head(streams[f"{stream}_features"])
              for stream in ("sup", "unsup")}
    shares = [global_mean(losses.softmax_cross_entropy(logits[stream],
                                                       streams[f"{stream}_rotations"],
                                                       NUM_ROTATIONS), count * NUM_ROTATIONS)
              for stream, count in (("sup", self.config.batch_size),
                                    ("unsup", self.unsup_batch_size))]
    top1 = global_mean(top_k_correct(logits["unsup"], streams["unsup_rotations"], 1),
                       self.unsup_batch_size * NUM_ROTATIONS)
    return 0.5 * (shares[0] + shares[1]), top1

  def rotated_class_loss(self, streams):
    return self.class_loss(self.head(streams["sup_features"]), streams["class_labels"],
                           self.config.batch_size * NUM_ROTATIONS)

  def compute_loss(self, batch, training=True):
    streams = self.rotated_streams(batch, training)
    class_loss, top1 = self.rotated_class_loss(streams)
    rotation_loss, rotation_top1 = self.rotation_loss(streams)
    loss = class_loss + self.config.rotation_loss_weight * rotation_loss
    return loss, dict(self.rotated_diagnostics(streams), class_loss=class_loss,
                      rotation_loss=rotation_loss, top1=top1, rotation_top1=rotation_top1)

  def rotated_diagnostics(self, streams, unsup_logits=None):
    """diagnostic_metrics of both streams' features and the class head's predictions on
    the unlabelled images (`unsup_logits`, when already computed)."""
    if unsup_logits is None:
      unsup_logits = self.head(streams["unsup_features"])
    return self.diagnostic_metrics(
        tf.concat([streams["sup_features"], streams["unsup_features"]], 0),
        tf.nn.softmax(unsup_logits))

  def uniform_losses(self):
    return dict(super().uniform_losses(), rotation_loss=math.log(NUM_ROTATIONS))

  def eval_metrics(self, batch):
    """Top-1/top-5 of the upright images and of the logits averaged over their rotations,
    from one pass over all rotations (the upright ones are its first block)."""
    rotated, _ = rotate_batch(batch["image"])
    logits = self.representations(rotated, training=False)["logits"]
    logits = tf.reshape(logits, [NUM_ROTATIONS, -1, logits.shape[-1]])
    mask, labels = batch["mask"], batch["label"]
    metrics = {"count": tf.reduce_sum(mask)}
    for name, scores in (("", logits[0]), ("rotation_averaged_", tf.reduce_mean(logits, 0))):
      for k in (1, 5):
        metrics[f"{name}top{k}"] = tf.reduce_sum(top_k_correct(scores, labels, k) * mask)
    return metrics


@METHODS.register("s4l_exemplar")
class S4LExemplar(SemiSupervised):
  """Class head + embedding head on one backbone, over `exemplar_copies` crops per image."""

  @classmethod
  def default_config(cls):
    return dict(super().default_config(), exemplar_copies=8, embed_dim=1000,
                triplet_loss_weight=1.0)

  @classmethod
  def check_config(cls, config, image_size):
    super().check_config(config, image_size)
    check_exemplar_copies(config, paper="S4L")

  def build(self):
    super().build()
    self.embedding = keras.layers.Dense(self.config.embed_dim, dtype="float32", name="embedding")
    self.embedding.build((None, self.feature_dim))

  def trackables(self):
    return dict(super().trackables(), embedding=self.embedding)

  def _copies(self, image, seed):
    """S4L's `crop_inception_patches(copies)|hsvnoise|flip_lr`: independent copies."""
    image = pp.decode_image(image)
    area_range = (self.config.crop_area_min, 1.0)
    copies = []
    for copy_seed in pp.split_seed(seed, self.config.exemplar_copies):
      crop_seed, hsv_seed, flip_seed = pp.split_seed(copy_seed, 3)
      copy = pp.inception_crop(image, crop_seed, self.image_size, area_range=area_range)
      copies.append(pp.random_flip(pp.hsv_noise(copy, hsv_seed), flip_seed))
    return tf.stack(copies)

  def train_preprocess(self, features, seed):
    return {"image": self._copies(features["image"], seed), "label": features["label"]}

  def unsup_preprocess(self, features, seed):
    return {"image": self._copies(features["image"], seed)}

  def triplet_loss(self, features, num_images, global_images):
    copies = self.config.exemplar_copies
    embeddings = tf.math.l2_normalize(self.embedding(tf.cast(features, tf.float32)), axis=-1)
    labels = tf.repeat(tf.range(num_images), copies)  # copies of an image are consecutive
    per_example = losses.triplet_batch_hard(embeddings, labels, margin=None)
    return global_mean(per_example, global_images * copies), embeddings

  def compute_loss(self, batch, training=True):
    copies = self.config.exemplar_copies
    sup_images, unsup_images = batch["sup"]["image"], batch["unsup"]["image"]
    flat = lambda images: tf.reshape(images, [-1] + images.shape[2:].as_list())
    sup_features, unsup_features = self.joint_features(flat(sup_images), flat(unsup_images),
                                                       training=training)
    class_loss, top1 = self.class_loss(self.head(sup_features),
                                       tf.repeat(batch["sup"]["label"], copies),
                                       self.config.batch_size * copies)
    sup_triplet, sup_embeddings = self.triplet_loss(sup_features, sup_images.shape[0],
                                                    self.config.batch_size)
    unsup_triplet, unsup_embeddings = self.triplet_loss(unsup_features, unsup_images.shape[0],
                                                        self.unsup_batch_size)
    triplet_loss = 0.5 * (sup_triplet + unsup_triplet)
    loss = class_loss + self.config.triplet_loss_weight * triplet_loss
    return loss, dict(
        self.diagnostic_metrics(tf.concat([sup_embeddings, unsup_embeddings], 0),
                                tf.nn.softmax(self.head(unsup_features))),
        class_loss=class_loss, triplet_loss=triplet_loss, top1=top1)

  def uniform_losses(self):
    # Every image embedded alike: each soft-margin triplet's softplus(0).
    return dict(super().uniform_losses(), triplet_loss=math.log(2.0))
