"""Photometric ops on float32 [H, W, 3] images in [0, 1]: SimCLR colour distortion,
grayscale, Gaussian blur. All random ops are stateless (explicit `seed`).

These run once per crop on the input host, so they are written for CPU throughput in
tf.data, where each full-image pass costs about 0.1 ms at 224 px: few passes, no
convolutions (depthwise 3-channel filters are ~10x slower than matrix products on CPU)
and no [H, W, 3] transposes. The photometric ops also compile with XLA.
"""

import functools

import tensorflow as tf

from tfssl.preprocess.ops import PREPROCESS, split_seed, uniform

# ITU-R 601 luma, as tf.image.rgb_to_grayscale.
_LUMA = (0.2989, 0.5870, 0.1140)


def grayscale(image):
  """Luma replicated into 3 channels, as one [HW, 3] x [3, 3] product (one pass)."""
  weights = tf.tile(tf.constant(_LUMA, tf.float32)[:, None], [1, 3])
  shape = tf.shape(image)
  gray = tf.matmul(tf.reshape(image, [-1, 3]), weights)
  return tf.reshape(gray, shape)


@PREPROCESS.register("random_grayscale")
def random_grayscale(image, seed, p=0.2):
  """Grayscale (3 equal channels) with probability p."""
  return tf.cond(uniform(seed) < p, lambda: grayscale(image), lambda: image)


@PREPROCESS.register("hsv_noise")
def hsv_noise(image, seed, sv_pow=(-2.0, 2.0), sv_mul=(-0.5, 0.5), sv_add=(-0.1, 0.1),
              h_add=(-0.1, 0.1)):
  """Exemplar's HSV noise (Dosovitskiy et al.; S4L's `hsvnoise` with its defaults).

  Hue is shifted cyclically by U(h_add); saturation and value each (independently)
  become 2**U(sv_mul) * x ** (2**U(sv_pow)) + U(sv_add), then everything is clipped to
  [0, 1] in HSV.
  """
  h_seed, pow_seed, mul_seed, add_seed = split_seed(seed, 4)
  two_values = lambda s, limits: tf.random.stateless_uniform([2], s, *limits)
  hsv = tf.image.rgb_to_hsv(tf.clip_by_value(image, 0.0, 1.0))
  hue, sat_val = hsv[..., :1], hsv[..., 1:]
  hue = tf.math.floormod(1.0 + hue + uniform(h_seed, *h_add), 1.0)
  sat_val = (sat_val ** (2.0 ** two_values(pow_seed, sv_pow)) * 2.0 ** two_values(mul_seed, sv_mul)
             + two_values(add_seed, sv_add))
  return tf.image.hsv_to_rgb(tf.clip_by_value(tf.concat([hue, sat_val], -1), 0.0, 1.0))


def _factor(seed, delta):
  return uniform(seed, max(0.0, 1.0 - delta), 1.0 + delta)


def _brightness(image, seed, delta):
  # SimCLR v2 brightness is multiplicative; a factor >= 0 keeps values >= 0.
  return tf.minimum(image * _factor(seed, delta), 1.0)


def _contrast(image, seed, delta):
  return tf.clip_by_value(tf.image.adjust_contrast(image, _factor(seed, delta)), 0.0, 1.0)


def _saturation(image, seed, delta):
  # The HSV op clips S to [0, 1], so values stay in [0, 1]: no clip pass needed.
  return tf.image.adjust_saturation(image, _factor(seed, delta))


def _hue(image, seed, delta):
  # A hue rotation keeps V and S, so values stay in [0, 1]: no clip pass needed.
  return tf.image.adjust_hue(image, uniform(seed, -delta, delta))


def _identity(image):
  return image


def color_jitter(image, seed, brightness, contrast, saturation, hue):
  """SimCLR v2 jitter: the four adjustments in a random order, results in [0, 1].

  A delta of 0 disables its adjustment (the order is still drawn over all four).
  """
  order_seed, *seeds = split_seed(seed, 5)
  order = tf.argsort(tf.random.stateless_uniform([4], order_seed))
  adjustments = [
      functools.partial(fn, seed=op_seed, delta=delta) if delta > 0 else _identity
      for fn, op_seed, delta in zip((_brightness, _contrast, _saturation, _hue), seeds,
                                    (brightness, contrast, saturation, hue))]
  for position in range(4):
    image = tf.switch_case(order[position],
                           [functools.partial(adjust, image) for adjust in adjustments])
  return image


@PREPROCESS.register("inception_color")
def inception_color(image, seed, brightness=32.0 / 255.0, saturation=0.5):
  """slim inception_preprocessing's fast-mode distortion (the Revisiting / S4L training view):
  additive brightness in [-brightness, brightness], then saturation in 1 +- saturation,
  clipped to [0, 1]. Fast mode draws from one colour ordering only (`num_distort_cases =
  1`), so the order is always brightness first."""
  brightness_seed, saturation_seed = split_seed(seed, 2)
  image = image + uniform(brightness_seed, -brightness, brightness)
  image = _saturation(image, seed=saturation_seed, delta=saturation)
  return tf.clip_by_value(image, 0.0, 1.0)


@PREPROCESS.register("color_distortion")
def color_distortion(image, seed, strength=1.0, p_jitter=0.8, p_grayscale=0.2):
  """SimCLR v2 colour distortion.

  With probability p_jitter: brightness, contrast, saturation (each 0.8 * strength) and
  hue (0.2 * strength) in a random order; then grayscale with probability p_grayscale.
  """
  apply_seed, jitter_seed, gray_seed = split_seed(seed, 3)
  s = float(strength)
  jitter = functools.partial(color_jitter, image, jitter_seed, 0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)
  image = tf.cond(uniform(apply_seed) < p_jitter, jitter, lambda: image)
  return random_grayscale(image, gray_seed, p_grayscale)


def _gaussian_kernel(sigma, radius):
  x = tf.cast(tf.range(-radius, radius + 1), tf.float32)
  kernel = tf.exp(-tf.square(x) / (2.0 * tf.square(sigma)))
  return kernel / tf.reduce_sum(kernel)


def _band_matrix(kernel, radius, block):
  """[block, block + 2 radius]; row i holds the kernel in columns i .. i + 2 radius."""
  offsets = tf.range(block + 2 * radius)[None, :] - tf.range(block)[:, None]
  inside = (offsets >= 0) & (offsets <= 2 * radius)
  return tf.where(inside, tf.gather(kernel, tf.clip_by_value(offsets, 0, 2 * radius)), 0.0)


def _blur_rows(rows, kernel, radius, block):
  """Blurs a matrix [N, M] along axis 0 ("SAME", zero padding).

  Rows are filtered in blocks: output rows b*block .. (b+1)*block - 1 are the band matrix
  [block, block + 2 radius] times the input rows they see. All blocks go through one
  matrix product (their windows side by side), which beats a batched product per block,
  one N x N banded product (mostly zeros) and, by far, convolutions on CPU.
  """
  n = tf.shape(rows)[0]
  blocks = (n + block - 1) // block
  padded = tf.pad(rows, [[radius, blocks * block - n + radius], [0, 0]])
  # windows[j, b] = padded row b * block + j.
  index = tf.range(block + 2 * radius)[:, None] + block * tf.range(blocks)[None, :]
  windows = tf.reshape(tf.gather(padded, index), [block + 2 * radius, -1])
  out = tf.matmul(_band_matrix(kernel, radius, block), windows)
  out = tf.transpose(tf.reshape(out, [block, blocks, -1]), [1, 0, 2])
  return tf.reshape(out, [blocks * block, -1])[:n]


def blur(image, sigma, radius, block=32):
  """Separable Gaussian blur of [H, W, C], kernel 2 radius + 1, zero padding ("SAME")."""
  kernel = _gaussian_kernel(sigma, radius)
  shape = tf.shape(image)
  height, width = shape[0], shape[1]
  # [H, W * C] blurred along H, then its 2-D transpose [W * C, H] = [W, C * H] along W.
  # 2-D transposes are cheap; a [H, W, C] -> [W, H, C] transpose is not for C = 3.
  rows = _blur_rows(tf.reshape(image, [height, -1]), kernel, radius, block)
  columns = tf.reshape(tf.transpose(rows), [width, -1])
  columns = _blur_rows(columns, kernel, radius, block)
  return tf.reshape(tf.transpose(tf.reshape(columns, [-1, height])), shape)


@PREPROCESS.register("gaussian_blur")
def gaussian_blur(image, seed, p=0.5, sigma_range=(0.1, 2.0), kernel_fraction=0.1):
  """Gaussian blur with probability p, sigma ~ U(sigma_range), as SimCLR.

  The kernel spans kernel_fraction of the image height, made odd (224 px: 23 taps).
  """
  apply_seed, sigma_seed = split_seed(seed, 2)
  height = image.shape[0]
  if height is None:
    height = tf.shape(image)[0]
    radius = tf.cast(tf.cast(height, tf.float32) * kernel_fraction, tf.int32) // 2
  else:
    radius = int(height * kernel_fraction) // 2
    if radius == 0:
      return image
  sigma = uniform(sigma_seed, float(sigma_range[0]), float(sigma_range[1]))
  blurred = tf.cond(uniform(apply_seed) < p, lambda: blur(image, sigma, radius), lambda: image)
  blurred.set_shape(image.shape)
  return blurred


def solarize(image, threshold=128.0 / 255.0):
  """Values at or above `threshold` inverted (PIL ImageOps.solarize's default 128)."""
  return tf.where(image >= threshold, 1.0 - image, image)


@PREPROCESS.register("random_solarize")
def random_solarize(image, seed, p=0.2):
  """Solarize with probability p at a threshold drawn uniformly from the 8-bit range
  (PAWS's CIFAR augmentation; a threshold above 1 leaves the image unchanged)."""
  apply_seed, threshold_seed = split_seed(seed, 2)
  threshold = uniform(threshold_seed, 0.0, 256.0 / 255.0)
  return tf.cond(uniform(apply_seed) < p, lambda: solarize(image, threshold), lambda: image)


def _equalize_channel(levels):
  """PIL ImageOps.equalize of one channel of integer levels 0..255 [N]."""
  histogram = tf.math.bincount(levels, minlength=256, maxlength=256)
  last_level_count = tf.gather(histogram, tf.reduce_max(levels))
  step = (tf.reduce_sum(histogram) - last_level_count) // 255

  def equalized():
    lookup = (tf.cumsum(histogram, exclusive=True) + step // 2) // tf.maximum(step, 1)
    return tf.gather(tf.minimum(lookup, 255), levels)

  return tf.cond(step > 0, equalized, lambda: levels)


def equalize_levels(levels):
  """PIL's histogram equalisation of each channel of int32 [H, W, 3] levels 0..255."""
  channels = tf.reshape(tf.transpose(tf.reshape(levels, [-1, 3])), [3, -1])
  equalized = tf.stack([_equalize_channel(channels[c]) for c in range(3)], axis=1)
  return tf.reshape(equalized, tf.shape(levels))


def equalize(image):
  """Histogram equalisation per channel, on 8-bit levels as PIL does it."""
  levels = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.int32)
  return tf.cast(equalize_levels(levels), tf.float32) / 255.0


@PREPROCESS.register("random_equalize")
def random_equalize(image, seed, p=0.2):
  return tf.cond(uniform(seed) < p, lambda: equalize(image), lambda: image)
