"""Shared machinery of the context-prediction tasks on a 3x3 patch grid (Jigsaw, relative
patch location), as Revisiting trains them.

Every patch goes through the same backbone and a linear embedding; a task arranges the
nine embeddings of an image into ordered tuples (a permutation, a neighbour-centre pair),
concatenates each tuple and classifies it with the AlexNet-style head fc-BN-ReLU-dropout-fc.
Patches are standardised one by one, and with probability `grayscale_probability` the
whole image is turned gray first, against chromatic-aberration and colour shortcuts.

The exported module takes whole images: it cuts them into the 3x3 grid of central
patches and averages each representation over the nine patches (Revisiting's linear
evaluation of patch models, `combine_patches=avg_pool`).
"""

import math

import keras
import tensorflow as tf

from tfssl import losses
from tfssl import optim
from tfssl import preprocess as pp
from tfssl.errors import UserError
from tfssl.methods.base import Method, global_mean, top_k_correct

SPLITS = 3
NUM_PATCHES = SPLITS * SPLITS
MIN_PATCH_SIZE = 4


class PatchTask(Method):
  """Subclasses define `num_task_classes`, `task_preprocess` and `arrangements`."""

  num_task_classes = None

  @classmethod
  def uses_labels(cls, config):
    del config
    return False

  @classmethod
  def default_config(cls):
    return {
        "patch_size": 64,
        "patch_jitter": 21,  # cell = patch + jitter: 85-px cells of a 255-px crop
        "patch_resize_ratio": 292 / 255,  # image resized to this x the grid side, then cropped
        "grayscale_probability": 0.66,
        "embed_dim": 1000,
        "head_hidden": 4096,
        "head_dropout": 0.5,
        "head_bn_momentum": 0.997,
        "head_weight_decay": 5e-4,
        # Revisiting's patch nets: ResNet / RevNet with a 7x7/1 root conv + max-pool and a
        # last stage of stride 1 (64-px patch -> 8x8). False: the backbone's usual stem for
        # the patch size (the 3x3/1 CIFAR stem up to 64 px), better for tiny patches.
        "patch_net": True,
    }

  @classmethod
  def check_config(cls, config, image_size):
    check_patch_geometry(config, image_size)

  def __init__(self, config, num_classes, image_size):
    super().__init__(config, num_classes, image_size)
    self.patch_size = int(config.patch_size)
    self.backbone_image_size = self.patch_size

  def backbone_options(self):
    return {"patch_net": bool(self.config.patch_net)}

  def build(self):
    super().build()
    config = self.config
    self.embedding = keras.layers.Dense(config.embed_dim, dtype="float32", name="embedding")
    self.embedding.build((None, self.feature_dim))
    tuple_dim = self.tuple_size * config.embed_dim
    init = keras.initializers.TruncatedNormal(stddev=0.005)
    self.head = keras.Sequential([
        keras.layers.Input((tuple_dim,)),
        keras.layers.Dense(config.head_hidden, kernel_initializer=init,
                           bias_initializer=keras.initializers.Constant(0.1), name="fc1"),
        keras.layers.BatchNormalization(momentum=config.head_bn_momentum, epsilon=1e-5,
                                        name="fc1_bn"),
        keras.layers.ReLU(name="fc1_relu"),
        keras.layers.Dropout(config.head_dropout, name="fc1_dropout"),
        keras.layers.Dense(self.num_task_classes, kernel_initializer=init, name="fc2"),
    ], name="task_head")

  def trackables(self):
    return dict(super().trackables(), embedding=self.embedding, task_head=self.head)

  # --- representations: whole images in ------------------------------------

  def representations(self, images, training=False):
    patches = pp.patches.batch_grid_patches(images, self.patch_size, SPLITS)
    per_patch = self._backbone_on_patches(patches, training)
    return {name: tf.reduce_mean(value, axis=1) for name, value in per_patch.items()}

  def _backbone_on_patches(self, patches, training):
    """[N, 9, p, p, C] -> every backbone output as [N, 9, ...]."""
    flat = tf.reshape(patches, [-1] + patches.shape[2:].as_list())
    outputs = self.backbone(pp.patches.standardize(flat), training=training)
    return {name: tf.reshape(value, [-1, NUM_PATCHES] + value.shape[1:].as_list())
            for name, value in outputs.items()}

  # --- input -----------------------------------------------------------------

  def train_preprocess(self, features, seed):
    gray_seed, patch_seed, task_seed = pp.split_seed(seed, 3)
    image = pp.decode_image(features["image"])
    image = pp.random_grayscale(image, gray_seed, self.config.grayscale_probability)
    patches = pp.patches.patch_grid_train(
        image, patch_seed, self.patch_size, int(self.config.patch_jitter), SPLITS,
        resize_ratio=float(self.config.patch_resize_ratio))
    return dict(self.task_preprocess(task_seed), patches=patches)

  def task_preprocess(self, seed):
    """Per-image task inputs drawn in tf.data (e.g. which permutations to apply)."""
    del seed
    return {}

  def summary_images(self, batch):
    patches = batch["patches"]
    return tf.reshape(patches, [-1] + patches.shape[-3:].as_list())

  # --- training --------------------------------------------------------------

  @property
  def tuple_size(self):
    raise NotImplementedError

  def arrangements(self, batch):
    """(indices [N, A, tuple_size] of patches to concatenate, labels [N, A])."""
    raise NotImplementedError

  def compute_loss(self, batch, training=True):
    features = self._backbone_on_patches(batch["patches"], training)["default"]
    embeddings = self.embedding(tf.cast(features, tf.float32))  # [N, 9, E]
    indices, labels = self.arrangements(batch)
    tuples = tf.gather(embeddings, indices, batch_dims=1)  # [N, A, K, E]
    arrangements_per_image = indices.shape[1]
    logits = self.head(tf.reshape(tuples, [-1, self.tuple_size * self.config.embed_dim]),
                       training=training)
    labels = tf.reshape(labels, [-1])
    per_example = losses.softmax_cross_entropy(logits, labels, self.num_task_classes)
    inputs = self.config.batch_size * arrangements_per_image
    return global_mean(per_example, inputs), dict(
        self.diagnostic_metrics(embeddings, tf.nn.softmax(logits)),
        task_top1=global_mean(top_k_correct(logits, labels, 1), inputs))

  def uniform_losses(self):
    return {"loss": math.log(self.num_task_classes)}

  def weight_decay_loss(self):
    """The backbone's decay, plus the head's own (heavier, AlexNet's fc) decay."""
    replicas = tf.distribute.get_replica_context().num_replicas_in_sync
    head = {id(v) for v in self.head.trainable_variables}
    body = [v for v in self.trainable_variables if id(v) not in head]
    total = (optim.loss_weight_decay(self.config, body)
             + optim.loss_weight_decay(self.config, self.head.trainable_variables,
                                       self.config.head_weight_decay))
    return total / replicas


def check_patch_geometry(config, image_size):
  """One clear message for a patch grid that cannot work, before anything is built."""
  patch, jitter = int(config.patch_size), int(config.patch_jitter)
  if patch < MIN_PATCH_SIZE:
    raise UserError(f"patch_size={patch} is too small: patches need at least {MIN_PATCH_SIZE} "
                    "pixels for the backbone. Raise --config.patch_size.")
  if jitter < 0:
    raise UserError(f"patch_jitter={jitter} must be >= 0 (the gap between patches).")
  if SPLITS * patch > image_size:
    raise UserError(
        f"patch_size={patch} does not fit the image: a {SPLITS}x{SPLITS} grid of {patch}-px "
        f"patches needs image_size >= {SPLITS * patch}, got image_size={image_size}. Use "
        f"--config.patch_size<={image_size // SPLITS} or --config.image_size>={SPLITS * patch}.")
  if config.patch_resize_ratio < 1.0:
    raise UserError(f"patch_resize_ratio={config.patch_resize_ratio} must be >= 1: the image is "
                    "resized to this multiple of the grid before the random grid crop.")
