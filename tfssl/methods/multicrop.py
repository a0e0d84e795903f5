"""What Suave and Daino share (Fini et al. 2023, "Semi-supervised learning made simple
with self-supervised clustering"; pietroastolfi/suave-daino).

Every step zips `batch_size` labelled images (one crop each: random-resized crop, flip,
colour jitter 0.4/0.4/0.4/0.1 with p 0.8, grayscale p 0.2) with `unsup_batch_size`
images of the whole train split, each as two global crops (`global_crop_area`) and
`num_local_views` small ones (`local_crop_area`, `local_crop_size` px). The labelled images
and the global crops share one backbone pass (and batch-norm batch), the local crops get
their own, as the originals' multi-resolution forward.

The head ends in one linear layer with a unit per class (the class prototypes). An
unlabelled crop learns to predict the target of the other crops of its image (the
method's), a labelled image its class one-hot (label-smoothed): both are cross-entropies
of softmax(head output / `temperature`), weighted by their share of the crops in the
step: labelled B_l / (B_l + V B_u), unlabelled V B_u / (B_l + V B_u).

`logits` (head output / temperature) are the exported classifier, which evaluation and
`eval_metrics` score.
"""

import tensorflow as tf

from tfssl import losses
from tfssl import preprocess as pp
from tfssl.errors import UserError
from tfssl.methods.base import Method, check_unsup_batch_size, global_mean, top_k_correct
from tfssl.methods.base import unsup_batch_size
from tfssl.methods.base import views_major

NUM_GLOBAL_VIEWS = 2
# The originals' small crops are 96 px of 224.
LOCAL_SIZE_RATIO = 96 / 224


class MultiCropSemiSupervised(Method):
  """Labelled crops + multi-crop unlabelled images through one class-prototype head."""

  input_mode = "two_streams"

  @classmethod
  def default_config(cls):
    return {
        "unsup_batch_size": 0,  # 0: batch_size
        "num_local_views": 8,
        "local_crop_size": 0,  # 0: 96/224 of image_size
        "global_crop_area": (0.14, 1.0),
        "local_crop_area": (0.05, 0.14),
        "labelled_color_strength": 0.5,  # jitter 0.4/0.4/0.4/0.1 (x 0.8 / 0.2 of SimCLR's)
        "temperature": 0.1,
        "label_smoothing": 0.01,
        # --init_from also loads the projection (the originals' init_proj); the class
        # prototypes are always new.
        "init_projection": False,
    }

  @classmethod
  def check_config(cls, config, image_size):
    del image_size
    check_unsup_batch_size(config)
    if config.num_local_views < 0:
      raise UserError(f"num_local_views={config.num_local_views} must be >= 0.")
    if config.temperature <= 0:
      raise UserError(f"temperature={config.temperature} must be positive.")
    for key in ("global_crop_area", "local_crop_area"):
      low, high = config[key]
      if not 0 < low <= high <= 1:
        raise UserError(f"{key}={config[key]} must be (min, max) with 0 < min <= max <= 1.")

  @classmethod
  def steps_per_epoch(cls, config, num_labelled, num_train):
    """A pass over the unlabelled stream (the whole train split), as the originals count."""
    del num_labelled
    return max(num_train // unsup_batch_size(config), 1)

  def __init__(self, config, num_classes, image_size):
    super().__init__(config, num_classes, image_size)
    self.unsup_batch_size = unsup_batch_size(config)
    self.local_size = config.local_crop_size or max(round(image_size * LOCAL_SIZE_RATIO), 1)
    self.num_views = NUM_GLOBAL_VIEWS + config.num_local_views
    total = config.batch_size + self.num_views * self.unsup_batch_size
    self.labelled_weight = config.batch_size / total
    self.unlabelled_weight = self.num_views * self.unsup_batch_size / total

  # --- input ----------------------------------------------------------------

  def view(self, image, seed, size, area_range, index):
    """Unlabelled crop number `index` (global crops first) of one image."""
    raise NotImplementedError

  def train_preprocess(self, features, seed):
    image = pp.simclr_train(features["image"], seed, self.image_size,
                            strength=self.config.labelled_color_strength, blur=False,
                            area_range=(self.config.crop_area_min, 1.0))
    return {"image": image, "label": features["label"]}

  def unsup_preprocess(self, features, seed):
    """Two global crops and `num_local_views` local ones (the label: only for metrics)."""
    image = features["image"]
    seeds = pp.split_seed(seed, self.num_views)
    batch = {
        "global": tf.stack([self.view(image, seeds[i], self.image_size,
                                      self.config.global_crop_area, i)
                            for i in range(NUM_GLOBAL_VIEWS)]),
        "label": features["label"],
    }
    if self.config.num_local_views:
      batch["local"] = tf.stack([self.view(image, seeds[i], self.local_size,
                                           self.config.local_crop_area, i)
                                 for i in range(NUM_GLOBAL_VIEWS, self.num_views)])
    return batch

  def summary_images(self, batch):
    images = batch["unsup"]["global"]
    return tf.reshape(images, [-1] + images.shape[-3:].as_list())

  # --- training -------------------------------------------------------------

  def head(self, features, training):
    """(embedding, class-prototype scores) of the student's pre-logits `features`."""
    raise NotImplementedError

  def head_outputs(self, images, training):
    """(backbone outputs, embedding, class-prototype scores) of `images`."""
    outputs = self.backbone(images, training=training)
    return (outputs,) + tuple(self.head(outputs["default"], training))

  def student_outputs(self, batch, training):
    """(labelled images' scores [B_l, K], unlabelled crops' scores [V, B_u, K], global
    crops' embeddings [2 * B_u, D]). The backbone takes labelled + global crops in one
    pass and local crops in another; the head takes all their features at once (one
    batch-norm batch), as the originals' multi-resolution forward."""
    labelled, unsup = batch["sup"]["image"], batch["unsup"]
    num_labelled, num_unlabelled = labelled.shape[0], unsup["global"].shape[0]
    passes = [tf.concat([labelled, views_major(unsup["global"])], 0)]
    if "local" in unsup:
      passes.append(views_major(unsup["local"]))
    features = tf.concat([self.backbone(images, training=training)["default"]
                          for images in passes], 0)
    embeddings, scores = self.head(features, training)
    view_scores = tf.reshape(scores[num_labelled:], [self.num_views, num_unlabelled, -1])
    global_embeddings = embeddings[num_labelled:num_labelled + 2 * num_unlabelled]
    return scores[:num_labelled], view_scores, global_embeddings

  def combined_loss(self, labelled_scores, labels, unlabelled_per_image, targets,
                    unlabelled_labels):
    """(loss, metrics): the share-weighted sum of the labelled and unlabelled terms.

    `unlabelled_per_image` [B_u]: this replica's images' cross-view losses; `targets`
    [2, B_u, K]: the global crops' targets, scored against the true labels as a metric.
    """
    config = self.config
    supervised = global_mean(losses.softmax_cross_entropy(
        labelled_scores / config.temperature, labels, self.num_classes,
        config.label_smoothing), config.batch_size)
    unsupervised = global_mean(unlabelled_per_image, self.unsup_batch_size)
    loss = self.labelled_weight * supervised + self.unlabelled_weight * unsupervised
    target_hits = top_k_correct(tf.reshape(targets, [-1, targets.shape[-1]]),
                                tf.tile(unlabelled_labels, [NUM_GLOBAL_VIEWS]), 1)
    return loss, {
        "supervised_loss": supervised,
        "unsupervised_loss": unsupervised,
        "labelled_top1": global_mean(top_k_correct(labelled_scores, labels, 1),
                                     config.batch_size),
        "target_top1": global_mean(target_hits, NUM_GLOBAL_VIEWS * self.unsup_batch_size),
    }

  def class_logits(self, scores):
    return tf.cast(scores, tf.float32) / self.config.temperature
