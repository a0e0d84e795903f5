"""Supervised baseline: cross-entropy on the labelled images ("Supervised 1%/10%" of S4L)."""

from tfssl import losses
from tfssl import preprocess as pp
from tfssl.methods.base import METHODS, Method, WithClassifier, global_mean, top_k_correct


@METHODS.register("supervised")
class Supervised(WithClassifier, Method):
  """Backbone + linear classifier trained with (optionally smoothed) cross-entropy."""

  @classmethod
  def default_config(cls):
    # S4L's supervised 1% adds its `hsvnoise` to the labelled images' crop and flip.
    return {"hsv_noise": False}

  def train_preprocess(self, features, seed):
    example = super().train_preprocess(features, seed)
    if self.config.hsv_noise:
      # A third child of the seed whose first two crop and flip: those stay as without noise.
      example["image"] = pp.hsv_noise(example["image"], pp.split_seed(seed, 3)[2])
    return example

  def compute_loss(self, batch, training=True):
    logits = self.representations(batch["image"], training=training)["logits"]
    per_example = losses.softmax_cross_entropy(
        logits, batch["label"], self.num_classes, self.config.label_smoothing)
    batch_size = self.config.batch_size
    return global_mean(per_example, batch_size), {
        "top1": global_mean(top_k_correct(logits, batch["label"], 1), batch_size)}
