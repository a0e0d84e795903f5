"""Losses as plain functions of tensors: per-example values, no reduction, no state."""

import tensorflow as tf


def softmax_cross_entropy(logits, labels, num_classes, label_smoothing=0.0):
  """Per-example cross-entropy against integer `labels`, with optional label smoothing."""
  targets = tf.one_hot(labels, num_classes)
  if label_smoothing:
    targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
  return tf.nn.softmax_cross_entropy_with_logits(targets, tf.cast(logits, tf.float32))


def pairwise_squared_distances(embeddings):
  """[N, D] -> [N, N] squared Euclidean distances, clipped at 0 against round-off."""
  embeddings = tf.cast(embeddings, tf.float32)
  squared_norms = tf.reduce_sum(tf.square(embeddings), axis=-1)
  dot = tf.matmul(embeddings, embeddings, transpose_b=True)
  distances = squared_norms[:, None] - 2.0 * dot + squared_norms[None, :]
  return tf.maximum(distances, 0.0)


def _same_label_masks(labels):
  labels = tf.reshape(labels, [-1])
  same = tf.equal(labels[:, None], labels[None, :])
  not_self = tf.logical_not(tf.eye(tf.shape(labels)[0], dtype=tf.bool))
  return tf.logical_and(same, not_self), tf.logical_not(same)


def pairwise_distances(embeddings, epsilon=1e-12):
  """[N, N] Euclidean distances; `epsilon` inside the root keeps gradients finite where
  points coincide."""
  return tf.sqrt(pairwise_squared_distances(embeddings) + epsilon)


def triplet_batch_hard(embeddings, labels, margin):
  """Per-anchor triplet loss with batch-hard mining (Hermans et al. 2017).

  Each anchor is paired with its farthest positive and its nearest negative in the
  batch; distances are Euclidean, not squared, as Hermans et al. use them: with squared
  distances a collapsed embedding (every point equal) is a stationary point whose loss
  is stuck at the margin. `margin=None` is their soft margin, softplus(d_ap - d_an)
  (S4L's choice). Anchors without a positive or a negative contribute 0.
  """
  distances = pairwise_distances(embeddings)
  positives, negatives = _same_label_masks(labels)
  hardest_positive = tf.reduce_max(tf.where(positives, distances, 0.0), axis=1)
  hardest_negative = tf.reduce_min(tf.where(negatives, distances, float("inf")), axis=1)
  valid = tf.logical_and(tf.reduce_any(positives, axis=1), tf.reduce_any(negatives, axis=1))
  gap = hardest_positive - tf.where(valid, hardest_negative, 0.0)
  loss = tf.nn.softplus(gap) if margin is None else tf.nn.relu(gap + margin)
  return tf.where(valid, loss, 0.0)


def triplet_semi_hard(embeddings, labels, margin):
  """Per-anchor triplet loss with semi-hard negatives (Schroff et al. 2015), as the
  `triplet_semihard_loss` Revisiting's Exemplar used.

  For every anchor-positive pair the negative is the nearest one farther than the
  positive; if there is none, the farthest negative. Each anchor's value is the mean over
  its positive pairs (so the mean over anchors equals the mean over pairs when every
  anchor has as many positives, as in Exemplar batches).
  """
  distances = pairwise_squared_distances(embeddings)
  positives, negatives = _same_label_masks(labels)
  # [anchor, positive, negative]
  d_ap = distances[:, :, None]
  d_an = distances[:, None, :]
  negative = negatives[:, None, :]
  farther = tf.logical_and(negative, d_an > d_ap)
  semi_hard = tf.reduce_min(tf.where(farther, d_an, float("inf")), axis=2)
  farthest = tf.reduce_max(tf.where(negative, d_an, -float("inf")), axis=2)
  chosen = tf.where(tf.reduce_any(farther, axis=2), semi_hard, farthest)
  has_negative = tf.reduce_any(negatives, axis=1, keepdims=True)
  pair_loss = tf.nn.relu(distances - chosen + margin)
  pair_mask = tf.cast(tf.logical_and(positives, has_negative), tf.float32)
  num_pairs = tf.reduce_sum(pair_mask, axis=1)
  return tf.math.divide_no_nan(tf.reduce_sum(pair_loss * pair_mask, axis=1), num_pairs)


def entropy_from_logits(logits):
  """Per-example entropy H(softmax(logits)) in nats (entropy minimisation)."""
  logits = tf.cast(logits, tf.float32)
  return -tf.reduce_sum(tf.nn.softmax(logits) * tf.nn.log_softmax(logits), axis=-1)


def kl_divergence_from_logits(p_logits, q_logits):
  """Per-example KL[softmax(p_logits) || softmax(q_logits)]."""
  p_logits = tf.cast(p_logits, tf.float32)
  q_logits = tf.cast(q_logits, tf.float32)
  log_p = tf.nn.log_softmax(p_logits)
  return tf.reduce_sum(tf.exp(log_p) * (log_p - tf.nn.log_softmax(q_logits)), axis=-1)
