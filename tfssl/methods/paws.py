"""PAWS: semi-supervised learning by predicting view assignments with support samples
(Assran et al. 2021, "Semi-Supervised Learning of Visual Features by Non-Parametrically
Predicting View Assignments with Support Samples"), as facebookresearch/suncet runs it.

Pretraining (`train_mode=pretrain`). Every step holds a class-stratified support set
(`support_classes` x `support_images_per_class` labelled images, `support_views` crops
each) and a batch of unlabelled images (the whole train split), each as two large crops
and `num_local_views` small ones. Support and large crops share one backbone pass (and
batch-norm batch), the small crops get their own. The projection head gives h, the
optional prediction head z = pred(h). Each view's prediction is the soft nearest-
neighbour class distribution: softmax of its cosine similarities to the supports of all
replicas (/ `temperature`) times their label-smoothed one-hot rows. The target of a large
view is the other large view's prediction from h (no gradient), sharpened with
`sharpen_temperature`; small views target the mean of the two. Loss: cross-entropy to the
targets plus `me_max_weight` x the negative entropy of the mean sharpened prediction
over all views of all replicas (mean-entropy maximisation).

Fine-tuning, the paper's two ways (both with `--init_from` a pretraining run):
- `train_mode=finetune` (its ImageNet protocol): backbone + the first projection layer
  (fc1, bn1, ReLU) + a new zero-initialised linear head learn the labelled images with
  cross-entropy (random-resized crop + flip); exports `logits`.
- `train_mode=suncet` (its CIFAR-10 protocol, snn_fine_tune.py): support batches only,
  of flipped centre crops (CIFAR's "basic" augmentation), SuNCEt (each support crop's soft-NN prediction over the other
  crops of the gathered support set) on z, with every batch norm in inference mode;
  evaluated with soft-NN.

Exports `default` and the taps, `proj` (h) and, with the prediction head, `pred` (z):
soft-NN evaluation uses z, i.e. `pred` with the head and `proj` without.
"""

import math

import keras
import tensorflow as tf

from tfssl import losses
from tfssl import preprocess as pp
from tfssl.errors import UserError
from tfssl.methods.base import METHODS, ClassifierHead, Method, cross_replica_concat
from tfssl.methods.base import cross_replica_sum, global_mean, num_replicas, top_k_correct
from tfssl.methods.base import views_major

TRAIN_MODES = ("pretrain", "finetune", "suncet")
# suncet crops with torchvision's RandomResizedCrop (areas down to the range's minimum).
CROP_SAMPLER = "torchvision"
MULTICROP_PRESETS = ("auto", "cifar", "imagenet")
# suncet's hard-coded crops per dataset (src/paws_train.py): large crops' area range,
# small crops' side relative to the image and their area range, colour recipe.
_PRESETS = {
    "cifar": dict(large_area=(0.75, 1.0), local_size_ratio=18 / 32, local_area=(0.3, 0.75)),
    "imagenet": dict(large_area=(0.14, 1.0), local_size_ratio=96 / 224,
                     local_area=(0.05, 0.14)),
}


def multicrop_preset(name, image_size):
  """The preset `name` resolves to: "auto" is CIFAR's for images up to 64 px."""
  if name == "auto":
    return "cifar" if image_size <= 64 else "imagenet"
  return name


def _dense(units, name):
  return keras.layers.Dense(units, name=name, dtype="float32")


def _batch_norm(config, name):
  return keras.layers.BatchNormalization(
      momentum=config.bn_momentum, epsilon=config.bn_epsilon, synchronized=config.sync_bn,
      name=name, dtype="float32")


class ProjectionHead(keras.layers.Layer):
  """suncet's projection: fc1-BN-ReLU-fc2-BN-ReLU-fc3, with biases, in float32 (the
  embeddings are divided by a small temperature)."""

  def __init__(self, in_dim, hidden_dim, out_dim, config, **kwargs):
    super().__init__(**kwargs)
    self.in_dim = in_dim
    self.fc1, self.bn1 = _dense(hidden_dim, "fc1"), _batch_norm(config, "bn1")
    self.fc2, self.bn2 = _dense(hidden_dim, "fc2"), _batch_norm(config, "bn2")
    self.fc3 = _dense(out_dim, "fc3")

  def build(self, input_shape):
    del input_shape
    self.fc1.build((None, self.in_dim))
    self.bn1.build((None, self.fc1.units))
    self.fc2.build((None, self.fc1.units))
    self.bn2.build((None, self.fc2.units))
    self.fc3.build((None, self.fc2.units))
    self.built = True

  def first_layer(self, features, training=False):
    """relu(bn1(fc1(x))): what fine-tuning keeps of the head."""
    x = self.fc1(tf.cast(features, tf.float32))
    return keras.ops.relu(self.bn1(x, training=training))

  def call(self, features, training=False):
    x = self.first_layer(features, training)
    x = keras.ops.relu(self.bn2(self.fc2(x), training=training))
    return self.fc3(x)

  def freeze_after_first_layer(self):
    for layer in (self.fc2, self.bn2, self.fc3):
      layer.trainable = False


class PredictionHead(keras.layers.Layer):
  """suncet's prediction head: BN-fc(d, d/4)-BN-ReLU-fc(d/4, d), in float32."""

  def __init__(self, dim, config, **kwargs):
    super().__init__(**kwargs)
    self.dim = dim
    self.bn1, self.fc1 = _batch_norm(config, "bn1"), _dense(max(dim // 4, 1), "fc1")
    self.bn2, self.fc2 = _batch_norm(config, "bn2"), _dense(dim, "fc2")

  def build(self, input_shape):
    del input_shape
    self.bn1.build((None, self.dim))
    self.fc1.build((None, self.dim))
    self.bn2.build((None, self.fc1.units))
    self.fc2.build((None, self.fc1.units))
    self.built = True

  def call(self, h, training=False):
    x = self.fc1(self.bn1(h, training=training))
    return self.fc2(keras.ops.relu(self.bn2(x, training=training)))


@METHODS.register("paws")
class PAWS(Method):
  """Support-set soft nearest-neighbour pseudo-labels across views (see module doc)."""

  gathers_across_replicas = True
  stall_causes = ("for PAWS, a sharpen_temperature too close to 1 (targets stay uniform), "
                  "a temperature too high for the soft nearest neighbours, support batches "
                  "too small (support_images_per_class) or me_max_weight fighting the loss")

  @classmethod
  def default_config(cls):
    # suncet configs/paws/cifar10_train.yaml (per GPU = global: one GPU); the ImageNet
    # scripts set the rest.
    return {
        "train_mode": "pretrain",  # pretrain | finetune | suncet
        "temperature": 0.1,
        "sharpen_temperature": 0.25,
        "me_max_weight": 1.0,  # 0 turns mean-entropy maximisation off
        "label_smoothing": 0.1,
        "support_classes": 10,
        "support_images_per_class": 64,
        "support_views": 2,
        "num_local_views": 6,
        "multicrop": "auto",  # auto | cifar | imagenet: crop sizes, scales, colour ops
        "local_crop_size": 0,  # 0: the preset's (CIFAR 18 of 32 px, ImageNet 96 of 224)
        "color_jitter_strength": 0.5,
        "proj_hidden_dim": 0,  # 0: the backbone's feature width
        "proj_out_dim": 0,  # 0: the backbone's feature width
        "use_pred_head": False,
        "batch_size": 256,  # unlabelled images per step
        "train_epochs": 600.0,  # passes over the unlabelled (whole) train split
        "optimizer": "lars",
        "learning_rate": 3.2,
        "lr_scaling": "none",
        "lr_schedule": "cosine",
        "warmup_epochs": 10.0,
        "warmup_start_factor": 0.25,  # start_lr 0.8 = 3.2 * 0.25
        "end_lr_factor": 0.01,  # final_lr 0.032
        "weight_decay": 1e-6,
        "weight_decay_mode": "decoupled",
        "sync_bn": True,
    }

  @classmethod
  def check_config(cls, config, image_size):
    del image_size
    if config.train_mode not in TRAIN_MODES:
      raise UserError(f"Unknown train_mode '{config.train_mode}'. Known: {', '.join(TRAIN_MODES)}.")
    if config.multicrop not in MULTICROP_PRESETS:
      raise UserError(f"Unknown multicrop preset '{config.multicrop}'. Known: "
                      f"{', '.join(MULTICROP_PRESETS)}.")
    for key in ("temperature", "sharpen_temperature"):
      if config[key] <= 0:
        raise UserError(f"{key}={config[key]} must be positive.")
    if config.support_views < 1 or config.num_local_views < 0:
      raise UserError(f"support_views={config.support_views} must be >= 1 and "
                      f"num_local_views={config.num_local_views} >= 0.")
    if config.train_mode == "suncet" and config.support_views * config.support_images_per_class < 2:
      raise UserError("SuNCEt needs two crops of a class in the support set: raise "
                      "support_views or support_images_per_class.")

  @classmethod
  def uses_support_stream(cls, config):
    return config.train_mode in ("pretrain", "suncet")

  @classmethod
  def steps_per_epoch(cls, config, num_labelled, num_train):
    """pretrain: a pass over the unlabelled stream; suncet: every labelled image once
    (suncet's snn_fine_tune: 4000 labels / 640 support images = 6 steps)."""
    if config.train_mode == "pretrain":
      return max(num_train // config.batch_size, 1)
    if config.train_mode == "suncet":
      support = config.support_classes * config.support_images_per_class
      return max(num_labelled // support, 1)
    return super().steps_per_epoch(config, num_labelled, num_train)

  def __init__(self, config, num_classes, image_size):
    super().__init__(config, num_classes, image_size)
    self.mode = config.train_mode
    self.support_stream = self.uses_support_stream(config)
    self.input_mode = {"pretrain": "two_streams", "suncet": "support"}.get(self.mode, "single")
    self.gathers_across_replicas = self.support_stream
    self.color_recipe = multicrop_preset(config.multicrop, image_size)
    preset = _PRESETS[self.color_recipe]
    self.large_area = preset["large_area"]
    self.local_area = preset["local_area"]
    self.local_size = config.local_crop_size or max(
        round(image_size * preset["local_size_ratio"]), 1)

  # --- models ---------------------------------------------------------------

  def build(self):
    super().build()
    config = self.config
    hidden = config.proj_hidden_dim or self.feature_dim
    self.embedding_dim = config.proj_out_dim or self.feature_dim
    # float32 layers: under mixed_bfloat16 their inputs are not rounded to bfloat16.
    self.projection = ProjectionHead(self.feature_dim, hidden, self.embedding_dim, config,
                                     name="projection", dtype="float32")
    self.projection.build((None, self.feature_dim))
    self.prediction = None
    if config.use_pred_head:
      self.prediction = PredictionHead(self.embedding_dim, config, name="prediction",
                                       dtype="float32")
      self.prediction.build((None, self.embedding_dim))
    self.head = None
    if self.mode == "finetune":
      self.head = ClassifierHead(self.num_classes, zero_init=True, name="head")
      self.head.build((None, hidden))
      self.projection.freeze_after_first_layer()
      if self.prediction is not None:
        self.prediction.trainable = False

  def trackables(self):
    trackables = dict(super().trackables(), projection=self.projection)
    if self.prediction is not None:
      trackables["prediction"] = self.prediction
    if self.head is not None:
      trackables["head"] = self.head
    return trackables

  def trackables_to_initialize(self, saved=()):
    del saved
    trackables = self.trackables()
    trackables.pop("head", None)  # fine-tuning starts a new, zero head
    return trackables

  def embed(self, images, training):
    """(backbone outputs, h, z) of `images`."""
    outputs = self.backbone(images, training=training)
    h = self.projection(outputs["default"], training=training)
    z = self.prediction(h, training=training) if self.prediction is not None else h
    return outputs, h, z

  def representations(self, images, training=False):
    outputs, h, z = self.embed(images, training)
    reps = dict(outputs, proj=h)
    if self.prediction is not None:
      reps["pred"] = z
    if self.head is not None:
      reps["logits"] = self.logits(outputs, training)
    return reps

  def logits(self, backbone_outputs, training):
    """Fine-tuning's classifier: the new head on relu(bn1(fc1(pre-logits)))."""
    return self.head(self.projection.first_layer(backbone_outputs["default"], training))

  # --- input ----------------------------------------------------------------

  def crop(self, image, seed, size, area):
    return pp.paws_view(image, seed, size, area, strength=self.config.color_jitter_strength,
                        color_recipe=self.color_recipe, sampler=CROP_SAMPLER)

  def crops(self, image, seed, count, size, area):
    seeds = pp.split_seed(seed, count)
    return tf.stack([self.crop(image, crop_seed, size, area) for crop_seed in seeds])

  def train_preprocess(self, features, seed):
    """A support image: `support_views` large crops (suncet: flipped centre crops, the
    "basic" views of snn_fine_tune.py); finetune: crop + flip."""
    if self.mode == "finetune":
      image = pp.supervised_train(features["image"], seed, self.image_size,
                                  area_range=(self.config.crop_area_min, 1.0),
                                  sampler=CROP_SAMPLER)
      return {"image": image, "label": features["label"]}
    if self.mode == "suncet":
      image = pp.eval_crop(features["image"], self.image_size)
      seeds = pp.split_seed(seed, self.config.support_views)
      views = tf.stack([pp.random_flip(image, view_seed) for view_seed in seeds])
    else:
      views = self.crops(features["image"], seed, self.config.support_views, self.image_size,
                         self.large_area)
    return {"views": views, "label": features["label"]}

  def unsup_preprocess(self, features, seed):
    """An unlabelled image: two large crops and `num_local_views` small ones."""
    large_seed, local_seed = pp.split_seed(seed, 2)
    batch = {"views": self.crops(features["image"], large_seed, 2, self.image_size,
                                 self.large_area),
             "label": features["label"]}  # only for the online accuracy
    if self.config.num_local_views:
      batch["local"] = self.crops(features["image"], local_seed, self.config.num_local_views,
                                  self.local_size, self.local_area)
    return batch

  def summary_images(self, batch):
    if self.input_mode == "two_streams":
      batch = batch["unsup"]
    images = batch["views"] if "views" in batch else batch["image"]
    return tf.reshape(images, [-1] + images.shape[-3:].as_list())

  # --- training -------------------------------------------------------------

  def compute_loss(self, batch, training=True):
    if self.mode == "finetune":
      return self.finetune_loss(batch, training)
    if self.mode == "suncet":
      return self.suncet_loss(batch["sup"] if "sup" in batch else batch)
    return self.paws_loss(batch["sup"], batch["unsup"], training)

  def gathered_support(self, support_embeddings, labels):
    """Support embeddings and their label matrix, of every replica."""
    embeddings, _ = cross_replica_concat(support_embeddings)
    all_labels, _ = cross_replica_concat(labels)
    return embeddings, losses.support_label_matrix(all_labels, self.num_classes,
                                                   self.config.label_smoothing)

  def paws_loss(self, support, unsup, training):
    config = self.config
    support_images = views_major(support["views"])
    support_labels = tf.tile(support["label"], [config.support_views])
    large = views_major(unsup["views"])
    num_support, batch_size = support_images.shape[0], unsup["views"].shape[0]
    # suncet's forward: one pass for the crops of one size (support + large: one BN batch).
    _, h_large, z_large = self.embed(tf.concat([support_images, large], 0), training)
    anchors = [z_large[num_support:]]
    if "local" in unsup:
      anchors.append(self.embed(views_major(unsup["local"]), training)[2])
    anchors = tf.concat(anchors, 0)
    num_views = anchors.shape[0] // batch_size

    supports, label_matrix = self.gathered_support(z_large[:num_support], support_labels)
    probs = losses.soft_nearest_neighbours(anchors, supports, label_matrix, config.temperature)
    target_supports, _ = cross_replica_concat(tf.stop_gradient(h_large[:num_support]))
    large_view_probs = losses.soft_nearest_neighbours(
        tf.stop_gradient(h_large[num_support:]), target_supports, label_matrix,
        config.temperature)
    targets = tf.stop_gradient(
        losses.paws_targets(large_view_probs, num_views, config.sharpen_temperature))

    num_anchors = config.batch_size * num_views  # over all replicas
    cross_entropy = global_mean(losses.soft_cross_entropy(targets, probs), num_anchors)
    mean_prediction = cross_replica_sum(tf.reduce_sum(
        losses.sharpen(probs, config.sharpen_temperature), axis=0)) / num_anchors
    # Every replica holds the same value; the summed loss counts it once.
    me_max = losses.negative_entropy(mean_prediction) / num_replicas()
    loss = cross_entropy + config.me_max_weight * me_max
    large_labels = tf.tile(unsup["label"], [2])
    return loss, dict(self.diagnostic_metrics(anchors, probs), **{
        "paws_loss": cross_entropy,
        "me_max": me_max,
        "support_snn_top1": global_mean(
            top_k_correct(probs[:2 * batch_size], large_labels, 1), 2 * config.batch_size),
        "support_classes_seen": tf.reduce_sum(
            tf.cast(tf.reduce_max(label_matrix, axis=0) > 0.5, tf.float32)) / num_replicas(),
    })

  def uniform_losses(self):
    if self.mode != "pretrain":
      return {}
    # Soft nearest neighbours equally near every support class: uniform over those classes.
    return {"paws_loss": math.log(self.config.support_classes)}

  def suncet_loss(self, support):
    """SuNCEt on the support crops (label-smoothed as the support set of pretraining);
    batch norm in inference mode, as snn_fine_tune.py."""
    config = self.config
    images = views_major(support["views"])
    labels = tf.tile(support["label"], [config.support_views])
    z = self.embed(images, training=False)[2]
    all_z, offset = cross_replica_concat(z)
    all_labels, _ = cross_replica_concat(labels)
    targets = losses.support_label_matrix(all_labels, self.num_classes, config.label_smoothing)
    per_crop, probs = losses.suncet(z, all_z, targets, offset, config.temperature)
    global_crops = config.support_classes * config.support_images_per_class * config.support_views
    return global_mean(per_crop, global_crops), {
        "suncet_top1": global_mean(top_k_correct(probs, labels, 1), global_crops)}

  def finetune_loss(self, batch, training):
    logits = self.logits(self.backbone(batch["image"], training=training), training)
    per_example = losses.softmax_cross_entropy(logits, batch["label"], self.num_classes)
    batch_size = self.config.batch_size
    return global_mean(per_example, batch_size), {
        "top1": global_mean(top_k_correct(logits, batch["label"], 1), batch_size)}

