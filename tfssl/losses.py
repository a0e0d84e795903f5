"""Losses as plain functions of tensors: per-example values, no reduction, no state."""

import tensorflow as tf


def softmax_cross_entropy(logits, labels, num_classes, label_smoothing=0.0):
  """Per-example cross-entropy against integer `labels`, with optional label smoothing."""
  targets = tf.one_hot(labels, num_classes)
  if label_smoothing:
    targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
  return tf.nn.softmax_cross_entropy_with_logits(targets, tf.cast(logits, tf.float32))
