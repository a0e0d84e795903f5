"""Losses as plain functions of tensors: per-example values, no reduction, no state."""

import tensorflow as tf


def softmax_cross_entropy(logits, labels, num_classes, label_smoothing=0.0):
  """Per-example cross-entropy against integer `labels`, with optional label smoothing."""
  return soft_target_cross_entropy(logits, tf.one_hot(labels, num_classes), label_smoothing)


def soft_target_cross_entropy(logits, targets, label_smoothing=0.0):
  """Per-example cross-entropy of softmax(logits) against target distributions [n, K]
  (mixup's soft labels), smoothed as torch's cross_entropy smooths them:
  (1 - s) * targets + s / K."""
  targets = tf.cast(targets, tf.float32)
  if label_smoothing:
    targets = targets * (1.0 - label_smoothing) + label_smoothing / targets.shape[-1]
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


# Masked logits: far below any cosine / temperature, finite so gradients stay finite.
_MASKED_LOGIT = -1e9


def _candidates(all_views, older):
  """([C, D] candidates: the view-major views of `all_views`, then `older` rows; [C] the
  image of each, -1 for the older rows, which belong to no image of this batch)."""
  num_views, _, dim = all_views.shape
  candidates = tf.reshape(tf.cast(all_views, tf.float32), [-1, dim])
  images = tf.tile(tf.range(tf.shape(all_views)[1]), [num_views])
  if older is None:
    return candidates, images
  older = tf.cast(older, tf.float32)
  return (tf.concat([candidates, older], 0),
          tf.concat([images, -tf.ones([tf.shape(older)[0]], tf.int32)], 0))


def multi_view_nt_xent(views, temperature, all_views=None, offset=0, attracted=None,
                       eliminated=None, older=None):
  """SimCLR's NT-Xent over V views per image, with FNC's false-negative handling.

  Every view is an anchor; its candidates are every view of every image in `all_views`
  except itself (and the `older` rows); its positives are the other views of its image.
  A per-anchor loss is -mean over positives p of log softmax(logits)[p] (with V=2 and
  nothing attracted or eliminated: SimCLR's loss_a / loss_b terms).

  Args:
    views: [V, n, D] L2-normalised embeddings of this replica's n images.
    temperature: softmax temperature.
    all_views: [V, N, D] every replica's views (default: `views`); with FNC's memory bank,
      the momentum encoder's embeddings of them, "itself" being an anchor's own view there.
    offset: index in `all_views` of this replica's first image.
    attracted: optional [n, C] bool over the candidates: extra positives of every view of
      an image (FNC attraction; they stay in the denominator).
    eliminated: optional [n, C] bool: candidates left out of the denominator (FNC
      elimination).
    older: optional [R, D] L2-normalised candidates after the views (FNC's memory bank
      rows from earlier steps): negatives of every anchor.

  Returns:
    (per-anchor loss [V*n], logits [V*n, C] with excluded entries masked, positives mask
    [V*n, C]), C = V*N (+ R): anchors and candidates are view-major, `older` last.
  """
  num_views, n, dim = views.shape
  if all_views is None:
    all_views = views
  total = tf.shape(all_views)[1]
  anchors = tf.reshape(tf.cast(views, tf.float32), [num_views * n, dim])
  candidates, candidate_images = _candidates(all_views, older)
  image_ids = tf.range(n) + offset
  anchor_images = tf.tile(image_ids, [num_views])
  anchor_index = tf.reshape(tf.range(num_views)[:, None] * total + image_ids[None, :], [-1])
  same_image = tf.equal(anchor_images[:, None], candidate_images[None, :])
  is_self = tf.equal(anchor_index[:, None], tf.range(tf.shape(candidates)[0])[None, :])
  positives = tf.logical_and(same_image, tf.logical_not(is_self))
  excluded = is_self
  if attracted is not None:
    positives = tf.logical_or(positives, tf.tile(attracted, [num_views, 1]))
  if eliminated is not None:
    excluded = tf.logical_or(excluded, tf.tile(eliminated, [num_views, 1]))
  logits = tf.matmul(anchors, candidates, transpose_b=True) / temperature
  logits = tf.where(excluded, _MASKED_LOGIT, logits)
  log_probs = tf.nn.log_softmax(logits, axis=-1)
  weights = tf.cast(positives, tf.float32)
  per_anchor = -tf.reduce_sum(weights * log_probs, axis=-1) / tf.reduce_sum(weights, axis=-1)
  return per_anchor, logits, positives


def top_false_negatives(views, all_views, offset, top_k, threshold, older=None):
  """FNC's candidate false negatives of each image.

  A candidate (a view of another image, or an `older` row) scores the largest cosine
  similarity between it and any of the image's views; an image's false negatives are its
  `top_k` highest-scoring candidates whose score also exceeds `threshold`. Its own views
  are never candidates.

  Args:
    views: [V, n, D] L2-normalised views (main and support) of this replica's n images.
    all_views: [V, N, D] every replica's views; offset: this replica's first image in them.
    older: optional [R, D] further candidates (FNC's memory bank rows of earlier steps).

  Returns:
    [n, C] bool over the candidates of `multi_view_nt_xent` (C = V*N (+ R)).
  """
  views = tf.stop_gradient(tf.cast(views, tf.float32))
  candidates, candidate_images = _candidates(tf.stop_gradient(all_views), (
      None if older is None else tf.stop_gradient(older)))
  n = views.shape[1]
  scores = tf.reduce_max(tf.einsum("vnd,cd->vnc", views, candidates), axis=0)
  own = tf.equal((tf.range(n) + offset)[:, None], candidate_images[None, :])
  scores = tf.where(own, _MASKED_LOGIT, scores)
  k = min(top_k, candidates.shape[0])
  top = tf.math.top_k(scores, k=k).indices
  # Scattered rather than one-hot: an [n, k, V*N] one-hot of the indices would be large.
  rows = tf.repeat(tf.range(n), k)
  in_top_k = tf.scatter_nd(tf.stack([rows, tf.reshape(top, [-1])], axis=1),
                           tf.ones([n * k], tf.int32), tf.shape(scores)) > 0
  return tf.logical_and(tf.logical_and(in_top_k, scores > threshold), tf.logical_not(own))


# --- PAWS (Assran et al. 2021) ------------------------------------------------------


def support_label_matrix(labels, num_classes, smoothing=0.0):
  """[S, num_classes] targets of the support images: one-hot, smoothed over the classes
  that are in the support set (PAWS numbers the step's classes 0..K-1 and smooths over K;
  columns of absent classes stay 0 here, which gives the same predictions and losses)."""
  one_hot = tf.one_hot(tf.reshape(labels, [-1]), num_classes)
  present = tf.reduce_max(one_hot, axis=0)
  num_present = tf.reduce_sum(present)
  return one_hot * (1.0 - smoothing) + present * (smoothing / num_present)


def soft_nearest_neighbours(queries, supports, support_labels, temperature):
  """[Q, C] class probabilities: softmax over the cosine similarities (/ temperature) of
  each query to the supports, times the supports' label rows."""
  queries = tf.math.l2_normalize(tf.cast(queries, tf.float32), axis=-1)
  supports = tf.math.l2_normalize(tf.cast(supports, tf.float32), axis=-1)
  weights = tf.nn.softmax(tf.matmul(queries, supports, transpose_b=True) / temperature, axis=-1)
  return tf.matmul(weights, tf.cast(support_labels, tf.float32))


def sharpen(probs, temperature):
  """p ** (1 / temperature), renormalised: lower temperatures give more confident rows."""
  sharp = tf.pow(probs, 1.0 / temperature)
  return sharp / tf.reduce_sum(sharp, axis=-1, keepdims=True)


def paws_targets(large_view_probs, num_views, sharpen_temperature, floor=1e-4):
  """PAWS's targets of every view, view-major [num_views * n, C], from the predictions of
  the two large views [2 * n, C] (view-major): each large view gets the other's sharpened
  prediction, each further (small) view the mean of the two. Entries below `floor` are
  zeroed as in PAWS."""
  first, second = tf.split(sharpen(large_view_probs, sharpen_temperature), 2, axis=0)
  mean = 0.5 * (first + second)
  targets = tf.concat([second, first] + [mean] * (num_views - 2), axis=0)
  return tf.where(targets < floor, 0.0, targets)


def soft_cross_entropy(targets, probs):
  """Per-row -sum(targets * log(probs)), 0 where a target is 0 (even if its prob is)."""
  return -tf.reduce_sum(tf.math.xlogy(targets, probs), axis=-1)


def negative_entropy(probs):
  """sum(p log p) of one distribution (PAWS's mean-entropy-maximisation term, to minimise)."""
  return tf.reduce_sum(tf.math.xlogy(probs, probs), axis=-1)


def suncet(embeddings, all_embeddings, all_targets, offset, temperature):
  """SuNCEt (Assran et al. 2020), PAWS's CIFAR-10 fine-tuning loss.

  Each row of `embeddings` (rows offset.. of `all_embeddings`, whose class rows are
  `all_targets` [N, C]) predicts the soft nearest-neighbour class distribution over every
  other row of `all_embeddings` (cosine / temperature); returns (per-row cross-entropy to
  its own target row, the [n, C] probabilities).
  """
  queries = tf.math.l2_normalize(tf.cast(embeddings, tf.float32), axis=-1)
  keys = tf.math.l2_normalize(tf.cast(all_embeddings, tf.float32), axis=-1)
  similarities = tf.matmul(queries, keys, transpose_b=True) / temperature
  own_column = tf.one_hot(tf.range(tf.shape(queries)[0]) + offset, tf.shape(keys)[0])
  weights = tf.nn.softmax(tf.where(own_column > 0, -1e9, similarities), axis=-1)
  all_targets = tf.cast(all_targets, tf.float32)
  probs = tf.matmul(weights, all_targets)
  own_targets = tf.gather(all_targets, tf.range(tf.shape(queries)[0]) + offset)
  return soft_cross_entropy(own_targets, probs), probs


# --- SwAV / Suave and DINO / Daino ----------------------------------------------------------


def sinkhorn_knopp(scores, epsilon, iterations, global_sum=tf.identity, mask=None):
  """SwAV's equipartitioned soft assignments (Caron et al. 2020, distributed_sinkhorn).

  `scores` [n, K]: this replica's cosine similarities to the K prototypes (bounded, so
  exp(scores / epsilon) needs no shift: a per-replica shift would skew the transport).
  `global_sum` sums a tensor over all replicas (identity on one). Alternately normalises
  Q = exp(scores / epsilon) so every prototype gets 1/K of the global batch's mass and
  every sample 1/B; returns [n, K] rows that sum to 1 (the targets), without gradient.
  `mask` [n] (1/0): rows with 0 take no part (zero rows out) — an empty queue's, without
  a branch around the cross-replica sums, which replicas cannot take inside control flow.
  """
  scores = tf.stop_gradient(tf.cast(scores, tf.float32))
  if mask is None:
    mask = tf.ones([tf.shape(scores)[0]], tf.float32)
  mask = tf.cast(mask, tf.float32)[:, None]
  num_samples = global_sum(tf.reduce_sum(mask))
  num_prototypes = tf.cast(tf.shape(scores)[1], tf.float32)
  q = tf.exp(scores / epsilon) * mask
  q /= global_sum(tf.reduce_sum(q))
  for _ in range(iterations):
    q /= global_sum(tf.reduce_sum(q, axis=0, keepdims=True)) * num_prototypes
    q = tf.math.divide_no_nan(q, tf.reduce_sum(q, axis=1, keepdims=True) * num_samples)
  return q * num_samples


def cross_view_cross_entropy(logits, targets, temperature):
  """Per image [n]: each target view's targets predicted by every other view, averaged
  over the T x (V - 1) (target view, other view) pairs. SwAV's swapped prediction
  (targets: Sinkhorn assignments) and DINO's loss (targets: the centred teacher) alike.

  `logits` [V, n, K]: all V views' scores (view-major, the T target views first);
  `targets` [T, n, K]; predictions are softmax(logits / temperature).
  """
  log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32) / temperature, axis=-1)
  num_views, num_targets = log_probs.shape[0], targets.shape[0]
  total = 0.0
  for target_view in range(num_targets):
    for view in range(num_views):
      if view != target_view:
        total += -tf.reduce_sum(targets[target_view] * log_probs[view], axis=-1)
  return total / (num_targets * (num_views - 1))


def dino_teacher_probs(teacher_logits, center, temperature):
  """DINO's teacher targets: softmax((logits - center) / temperature), no gradient."""
  return tf.stop_gradient(tf.nn.softmax(
      (tf.cast(teacher_logits, tf.float32) - center) / temperature, axis=-1))


def updated_center(center, batch_mean_logits, momentum):
  """DINO's centre: an exponential moving average (momentum) of the teacher's mean logits
  over the global batch."""
  return center * momentum + tf.cast(batch_mean_logits, tf.float32) * (1.0 - momentum)
