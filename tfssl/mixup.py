"""Mixup / CutMix of a labelled batch, as Suave and Daino's labelled collator draws it
(pietroastolfi/suave-daino `src/mixup.py`, `CollateMixup` with mode 'batch').

One draw per batch: with probability `prob` the batch is mixed, else the copy equals it
(lambda 1). If both alphas are > 0, CutMix is chosen with probability `switch_prob`, mixup
otherwise; lambda ~ Beta(alpha, alpha) of the chosen kind. Image i is mixed with its
partner, the image at the mirrored position of the batch (the original's `flip(0)`): one
lambda, and for CutMix one box, for the whole batch. Mixup: lam * x + (1 - lam) * partner.
CutMix: a box of side floor(side * sqrt(1 - lam)) (rounded down to even) centred on a
uniform pixel, clipped to the image, is pasted from the partner; lambda becomes the kept
area fraction (`correct_lam`). Soft labels: lam * target(label) + (1 - lam) *
target(partner's label), target = one-hot smoothed as (1 - s) * one_hot + s / K.

The original mixes in each GPU's data loader, so partners are mirrored within each GPU's
labelled batch: `num_groups` (the recipe's number of GPUs) splits the global batch into
that many contiguous groups and mirrors within each; every group uses the same draw (the
originals seed every rank alike, so their collators draw the same numbers at a step).

Everything is stateless (an int [2] seed) with static shapes, and runs under XLA.
"""

import math

import tensorflow as tf

# Marsaglia-Tsang proposals drawn at once (static shapes instead of a rejection loop); each
# is accepted with probability > 0.95, so all of them fail with probability < 1e-20.
_GAMMA_PROPOSALS = 16
# The stream of mixing seeds, apart from the input pipeline's [seed, pipeline id].
MIX_STREAM = 0x6D6978
# Named rather than auto-selected, so every device draws the same bits; floats are made from
# the bits here because XLA turns bits into floats differently from the TF kernels.
_ALG = "philox"


def _split(seed, num):
  return tf.unstack(tf.random.experimental.stateless_split(seed, num, alg=_ALG))


def _uniform(seed, shape=()):
  """float32 uniform in [0, 1) on a 2^-24 grid, the same eagerly and under XLA."""
  bits = tf.random.stateless_uniform(shape, seed, minval=None, maxval=None, dtype=tf.uint32,
                                     alg=_ALG)
  return tf.cast(tf.bitwise.right_shift(bits, 8), tf.float32) * 2.0**-24


def _normal(seed, shape):
  """float32 standard normal (Box-Muller of two `_uniform`s)."""
  radius_seed, angle_seed = _split(seed, 2)
  radius = tf.sqrt(-2.0 * tf.math.log(1.0 - _uniform(radius_seed, shape)))
  return radius * tf.cos(2.0 * math.pi * _uniform(angle_seed, shape))


def _randint(seed, high):
  """int32 uniform in [0, high), as numpy's randint(0, high)."""
  return tf.random.stateless_uniform([], seed, 0, high, dtype=tf.int32, alg=_ALG)


def step_seed(base_seed, step, stream=MIX_STREAM):
  """The int64 [2] seed of one training step: `step` (e.g. optimizer.iterations) folded
  into [base_seed, stream]. Equal on every replica, so all of them draw the same mix."""
  seed = tf.constant([base_seed, stream], tf.int64)
  return tf.random.experimental.stateless_fold_in(seed, tf.cast(step, tf.int64), alg=_ALG)


def _log_gamma(seed, alpha):
  """log of one Gamma(alpha, 1) variate (Marsaglia & Tsang 2000; alpha < 1 through
  Gamma(alpha + 1) * U ** (1 / alpha)), in logs so tiny alphas do not underflow."""
  normal_seed, uniform_seed, boost_seed = _split(seed, 3)
  boosted_alpha = alpha + 1.0 if alpha < 1 else alpha
  d = boosted_alpha - 1.0 / 3.0
  c = 1.0 / math.sqrt(9.0 * d)
  x = _normal(normal_seed, [_GAMMA_PROPOSALS])
  u = 1.0 - _uniform(uniform_seed, [_GAMMA_PROPOSALS])
  v = (1.0 + c * x) ** 3
  log_v = tf.math.log(tf.maximum(v, 1e-30))
  accepted = tf.logical_and(v > 0, tf.math.log(u) < 0.5 * x * x + d - d * v + d * log_v)
  first = tf.argmax(tf.cast(accepted, tf.int32), output_type=tf.int32)
  # A gather, not log_v[first]: XLA compiles a slice once per value of a tensor index.
  log_sample = math.log(d) + tf.where(tf.reduce_any(accepted), tf.gather(log_v, first), 0.0)
  if alpha < 1:
    log_sample += tf.math.log(1.0 - _uniform(boost_seed)) / alpha
  return log_sample


def sample_beta(seed, alpha):
  """One float32 Beta(alpha, alpha) variate: G1 / (G1 + G2) of two Gamma(alpha) variates.
  (tf.random.stateless_gamma has no XLA kernel.)"""
  first, second = _split(seed, 2)
  return tf.sigmoid(_log_gamma(first, alpha) - _log_gamma(second, alpha))


def mix_params(seed, height, width, *, mixup_alpha=1.0, cutmix_alpha=1.0, prob=1.0,
               switch_prob=0.5, correct_lam=True):
  """The draw of one batch: {"lam": float32, "use_cutmix": bool, "box": int32 [4]
  (y_low, y_high, x_low, x_high), rows and columns low <= . < high; empty unless CutMix}.

  Lambda is the weight of the image itself (after CutMix with `correct_lam`: the fraction
  of its pixels outside the box).
  """
  if mixup_alpha <= 0 and cutmix_alpha <= 0:
    raise ValueError("mixup_alpha or cutmix_alpha must be > 0.")
  apply_seed, switch_seed, mixup_seed, cutmix_seed, y_seed, x_seed = _split(seed, 6)
  if mixup_alpha > 0 and cutmix_alpha > 0:
    use_cutmix = _uniform(switch_seed) < switch_prob
    lam = tf.where(use_cutmix, sample_beta(cutmix_seed, cutmix_alpha),
                   sample_beta(mixup_seed, mixup_alpha))
  elif mixup_alpha > 0:
    use_cutmix = tf.constant(False)
    lam = sample_beta(mixup_seed, mixup_alpha)
  else:
    use_cutmix = tf.constant(True)
    lam = sample_beta(cutmix_seed, cutmix_alpha)
  mixed = _uniform(apply_seed) < prob
  use_cutmix = tf.logical_and(mixed, use_cutmix)
  lam = tf.where(mixed, lam, 1.0)

  ratio = tf.sqrt(1.0 - lam)
  half_height = tf.cast(tf.floor(height * ratio), tf.int32) // 2
  half_width = tf.cast(tf.floor(width * ratio), tf.int32) // 2
  centre_y = _randint(y_seed, height)
  centre_x = _randint(x_seed, width)
  box = tf.stack([tf.clip_by_value(centre_y - half_height, 0, height),
                  tf.clip_by_value(centre_y + half_height, 0, height),
                  tf.clip_by_value(centre_x - half_width, 0, width),
                  tf.clip_by_value(centre_x + half_width, 0, width)])
  box = tf.where(use_cutmix, box, tf.zeros_like(box))
  if correct_lam:
    area = tf.cast((box[1] - box[0]) * (box[3] - box[2]), tf.float32)
    lam = tf.where(use_cutmix, 1.0 - area / (height * width), lam)
  return {"lam": lam, "use_cutmix": use_cutmix, "box": box}


def partner_indices(batch_size, num_groups=1):
  """[batch_size] int32: the partner of each row, its mirror within its group of
  batch_size / num_groups contiguous rows (the original's flip of each GPU's batch)."""
  if num_groups < 1 or batch_size % num_groups:
    raise ValueError(f"batch_size={batch_size} must be a multiple of num_groups={num_groups}.")
  group_size = batch_size // num_groups
  rows = tf.range(batch_size, dtype=tf.int32)
  return rows // group_size * group_size + group_size - 1 - rows % group_size


def mix_images(images, partner_images, params):
  """[B, H, W, C]: each image mixed with the same row of `partner_images` as `params` say
  (the partners gathered by the caller: mirrored rows of the same batch for the labelled
  copy; for the originals' mixup_unlab, the mirrored rows of the second global view)."""
  height, width = images.shape[1], images.shape[2]
  box = params["box"]
  rows = tf.range(height)[:, None]
  columns = tf.range(width)[None, :]
  in_box = tf.logical_and(tf.logical_and(rows >= box[0], rows < box[1]),
                          tf.logical_and(columns >= box[2], columns < box[3]))
  # One per-pixel weight of the image for both kinds: lam everywhere (mixup), 0 inside the
  # box and 1 outside (CutMix: exact copies of either pixel).
  weight = tf.where(params["use_cutmix"], tf.cast(tf.logical_not(in_box), tf.float32),
                    params["lam"])
  weight = tf.cast(tf.broadcast_to(weight, [height, width])[None, :, :, None], images.dtype)
  return weight * images + (1 - weight) * partner_images


def smoothed_targets(labels, num_classes, label_smoothing=0.0):
  """[B, K] float32: one-hot of int `labels`, smoothed as (1 - s) * one_hot + s / K."""
  targets = tf.one_hot(tf.reshape(labels, [-1]), num_classes)
  return targets * (1.0 - label_smoothing) + label_smoothing / num_classes


def mixed_copy(images, labels, num_classes, seed, *, label_smoothing=0.0, mixup_alpha=1.0,
               cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, correct_lam=True, num_groups=1):
  """The mixed copy of a labelled batch: (images [B, H, W, C], soft labels [B, K] float32).

  Args:
    images: [B, H, W, C] the *global* labelled batch (static shape), any float dtype
      (mixing commutes with the per-channel standardisation the originals mix after).
    labels: [B] int class ids.
    num_classes: K.
    seed: int [2] stateless seed, the same on every replica (e.g. `step_seed`).
    label_smoothing: applied to both targets before mixing (the same targets as the
      originals' mix with 0 smoothing followed by cross-entropy with `label_smoothing`).
    mixup_alpha, cutmix_alpha, prob, switch_prob, correct_lam: the originals' Mixup
      arguments (Suave/Daino: 1, 1, 1 in mode 'extend' or mixup_lab_prob in 'replace',
      0.5, True).
    num_groups: partners are mirrored within num_groups contiguous groups (the original's
      per-GPU collators: its GPU count); 1 mirrors the whole batch.

  The result depends on the global batch and the seed only. Replica r of R holding rows
  [r * b, (r + 1) * b) of the global batch takes the same rows of the result. When
  `num_groups` is a multiple of R, a replica's partners are all on it: calling this on its
  own b rows with num_groups // R groups and the same seed gives those rows with no gather.
  """
  batch_size, height, width = images.shape[0], images.shape[1], images.shape[2]
  params = mix_params(seed, height, width, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha,
                      prob=prob, switch_prob=switch_prob, correct_lam=correct_lam)
  partners = partner_indices(batch_size, num_groups)
  targets = smoothed_targets(labels, num_classes, label_smoothing)
  lam = params["lam"]
  mixed_targets = lam * targets + (1.0 - lam) * tf.gather(targets, partners)
  return mix_images(images, tf.gather(images, partners), params), mixed_targets
