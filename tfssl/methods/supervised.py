"""Supervised baseline: cross-entropy on the labelled images ("Supervised 1%/10%" of S4L)."""

from tfssl import losses
from tfssl.methods.base import METHODS, Method, WithClassifier, global_mean, top_k_correct


@METHODS.register("supervised")
class Supervised(WithClassifier, Method):
  """Backbone + linear classifier trained with (optionally smoothed) cross-entropy."""

  def compute_loss(self, batch, training=True):
    logits = self.representations(batch["image"], training=training)["logits"]
    per_example = losses.softmax_cross_entropy(
        logits, batch["label"], self.num_classes, self.config.label_smoothing)
    batch_size = self.config.batch_size
    return global_mean(per_example, batch_size), {
        "top1": global_mean(top_k_correct(logits, batch["label"], 1), batch_size)}
