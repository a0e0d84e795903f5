"""Geometric preprocessing ops for one image inside tf.data: decode, crops, resizes, flips.

Images are float32 [H, W, 3] in [0, 1]; ops that crop or resize also accept encoded
JPEG/PNG strings and uint8 tensors, so a JPEG is decoded only where it is needed. Random
ops are stateless: they take a `seed` (int [2]) so a pipeline gives the same
augmentations for the same seeds, eagerly, in tf.data and on any host.
"""

import math

import tensorflow as tf

from tfssl.errors import UserError
from tfssl.registry import Registry

PREPROCESS = Registry("preprocessing op")


def split_seed(seed, num):
  """`num` independent seeds derived from `seed`."""
  return tf.unstack(tf.random.experimental.stateless_split(seed, num))


def uniform(seed, minval=0.0, maxval=1.0):
  """One stateless uniform float32 scalar in [minval, maxval)."""
  return tf.random.stateless_uniform([], seed, minval=minval, maxval=maxval)


def to_float(image):
  """uint8 [0, 255] -> float32 [0, 1]; float images are only cast."""
  if image.dtype == tf.uint8:
    return tf.image.convert_image_dtype(image, tf.float32)
  return tf.cast(image, tf.float32)


def _to_rgb(image):
  """[H, W, 1] -> [H, W, 3]; [H, W, 3] unchanged, also when the channels are known late."""
  channels = image.shape[-1]
  if channels == 3:
    return image
  if channels == 1:
    return tf.tile(image, [1, 1, 3])
  image = tf.cond(tf.equal(tf.shape(image)[-1], 1), lambda: tf.tile(image, [1, 1, 3]),
                  lambda: image)
  image.set_shape([None, None, 3])
  return image


def _decode_pixels(image):
  """String -> uint8 [H, W, 3]; pixel tensors pass through (grayscale -> 3 channels)."""
  if image.dtype == tf.string:
    image = tf.io.decode_image(image, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image
  return _to_rgb(image)


@PREPROCESS.register("decode")
def decode_image(image):
  """JPEG/PNG string or uint8 tensor -> float32 [H, W, 3] in [0, 1]; grayscale -> RGB."""
  return to_float(_decode_pixels(image))


RESIZE_METHODS = ("bilinear", "bicubic")


def _resize(pixels, size, method="bilinear"):
  """uint8 or float [h, w, 3] -> float32 [size, size, 3] in [0, 1], bilinear or bicubic
  (SimCLR's crops), without antialiasing.

  Bilinear interpolates convexly, so its result needs no clipping; bicubic overshoots and
  is clipped to [0, 1] (SimCLR clips at the end of its view).
  (Converting before resizing is faster: TF's float resize kernel beats its uint8 one.)
  """
  if method not in RESIZE_METHODS:
    raise UserError(f"Unknown resize method '{method}'; choose one of {', '.join(RESIZE_METHODS)}.")
  resized = tf.image.resize(to_float(pixels), [size, size], method=method, antialias=False)
  if method != "bilinear":
    resized = tf.clip_by_value(resized, 0.0, 1.0)
  resized.set_shape([size, size, 3])
  return resized


def _center_fallback(window, shape, aspect_ratio_range):
  """Replaces a failed (whole-image) sample by the largest centre crop of allowed aspect,
  as torchvision's RandomResizedCrop and the Cloud TPU ResNet input fall back to a centre
  crop. A whole image of allowed aspect is its own such crop, so valid samples stay."""
  y, x, h, w = window
  height, width = shape[0], shape[1]
  failed = tf.logical_and(tf.equal(h, height), tf.equal(w, width))
  hf, wf = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
  ratio = tf.clip_by_value(wf / hf, aspect_ratio_range[0], aspect_ratio_range[1])
  crop_h = tf.cast(tf.minimum(hf, wf / ratio), tf.int32)
  crop_w = tf.cast(tf.minimum(wf, hf * ratio), tf.int32)
  crop_h, crop_w = tf.maximum(crop_h, 1), tf.maximum(crop_w, 1)
  center = ((height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w)
  return tuple(tf.where(failed, c, v) for c, v in zip(center, window))


def _slim_window(shape, seed, area_range, aspect_ratio_range):
  """slim / SimCLR: sample_distorted_bounding_box against the whole-image box, 100 attempts.

  Its min_object_covered=0.1 keeps every crop at >= 10% of the image, whatever area_range
  says. When sampling fails TF returns the whole image, replaced here by a centre crop.
  """
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
      min_object_covered=0.1, aspect_ratio_range=aspect_ratio_range, area_range=area_range,
      max_attempts=100, use_image_if_no_bounding_boxes=True)
  window = begin[0], begin[1], size[0], size[1]
  return _center_fallback(window, shape, aspect_ratio_range)


TORCHVISION_TRIES = 10


def _torchvision_window(shape, seed, area_range, aspect_ratio_range):
  """torchvision's `RandomResizedCrop.get_params`, stateless and without a loop.

  Each of 10 tries draws an area uniform in area_range (of the image area) and a log aspect
  ratio uniform in the log of aspect_ratio_range, rounds w = sqrt(area * ratio) and
  h = sqrt(area / ratio), and is accepted if the crop fits; the first accepted try gets a
  uniform position. All tries are drawn at once, so the window costs a few vector ops. When
  none fits, torchvision's centre crop: the whole image with its aspect ratio clamped into
  aspect_ratio_range, the long side shortened.
  """
  height, width = shape[0], shape[1]
  hf, wf = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
  # One draw for all: [0] areas then the row offset, [1] log ratios then the column offset.
  draws = tf.random.stateless_uniform([2, TORCHVISION_TRIES + 1], seed)
  lerp = lambda bounds, u: bounds[0] + (bounds[1] - bounds[0]) * u
  area = hf * wf * lerp(area_range, draws[0, :-1])
  ratio = tf.exp(lerp([math.log(r) for r in aspect_ratio_range], draws[1, :-1]))
  # tf.round rounds half to even, as Python's round() does.
  tries_w = tf.cast(tf.round(tf.sqrt(area * ratio)), tf.int32)
  tries_h = tf.cast(tf.round(tf.sqrt(area / ratio)), tf.int32)
  fits = (tries_w > 0) & (tries_w <= width) & (tries_h > 0) & (tries_h <= height)
  first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
  accepted = tf.reduce_any(fits)

  min_ratio, max_ratio = min(aspect_ratio_range), max(aspect_ratio_range)
  in_ratio = wf / hf
  round_int = lambda value: tf.cast(tf.round(value), tf.int32)
  fallback_h = tf.where(in_ratio < min_ratio, round_int(wf / min_ratio), height)
  fallback_w = tf.where(in_ratio > max_ratio, round_int(hf * max_ratio), width)
  # torchvision returns an empty crop where a side rounds to 0 (1 px sides, ratios beyond 2).
  h = tf.where(accepted, tries_h[first], tf.maximum(fallback_h, 1))
  w = tf.where(accepted, tries_w[first], tf.maximum(fallback_w, 1))

  def random_offset(u, free):
    """Uniform in {0, ..., free}; the minimum guards against u * (free + 1) rounding up."""
    return tf.minimum(tf.cast(u * tf.cast(free + 1, tf.float32), tf.int32), free)

  y = tf.where(accepted, random_offset(draws[0, -1], height - h), (height - h) // 2)
  x = tf.where(accepted, random_offset(draws[1, -1], width - w), (width - w) // 2)
  return y, x, h, w


CROP_SAMPLERS = {"slim": _slim_window, "torchvision": _torchvision_window}


def crop_sampler(name):
  """The window sampler `name` (a key of CROP_SAMPLERS): (shape, seed, area_range,
  aspect_ratio_range) -> (y, x, h, w)."""
  if name not in CROP_SAMPLERS:
    raise UserError(f"Unknown crop sampler '{name}'; choose one of {sorted(CROP_SAMPLERS)}.")
  return CROP_SAMPLERS[name]


def _crop_pixels(image, window_fn):
  """Crops `image` (string or pixels) to window_fn(shape) -> (y, x, h, w), decoding only the
  crop of a JPEG; returns uint8 (or float, for float inputs) [h, w, 3]."""
  if image.dtype != tf.string:
    image = _to_rgb(image)
    y, x, h, w = window_fn(tf.shape(image))
    return image[y:y + h, x:x + w]
  encoded = image

  def crop_jpeg():
    y, x, h, w = window_fn(tf.image.extract_jpeg_shape(encoded))
    return tf.image.decode_and_crop_jpeg(encoded, tf.stack([y, x, h, w]), channels=3)

  def crop_other():
    decoded = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    y, x, h, w = window_fn(tf.shape(decoded))
    return decoded[y:y + h, x:x + w]

  cropped = tf.cond(tf.io.is_jpeg(encoded), crop_jpeg, crop_other)
  cropped.set_shape([None, None, 3])
  return cropped


@PREPROCESS.register("inception_crop")
def inception_crop(image, seed, size, area_range=(0.08, 1.0),
                   aspect_ratio_range=(3 / 4, 4 / 3), sampler="slim", resize_method="bilinear"):
  """Random-resized crop (Szegedy et al.) to float32 [size, size, 3] in [0, 1].

  `sampler` picks the window as the original code did: "slim" (slim, SimCLR, S4L,
  Revisiting: sample_distorted_bounding_box, 100 attempts, never below 10% of the image;
  when none fits, the largest centre crop of allowed aspect ratio, where slim and SimCLR
  would keep the whole image) or "torchvision" (`RandomResizedCrop`: 10 tries, areas down
  to area_range[0], torchvision's centre-crop fallback).

  A JPEG string is decoded with decode_and_crop_jpeg, so only the crop is decoded; PNG
  strings and pixel tensors are decoded (if needed) and then cropped. The window is the
  same for a JPEG and its decoded pixels. `resize_method`: "bilinear", or "bicubic" as
  SimCLR's crop_and_resize.
  """
  sample_window = crop_sampler(sampler)
  area_range = tuple(float(a) for a in area_range)
  aspect_ratio_range = tuple(float(a) for a in aspect_ratio_range)
  window_fn = lambda shape: sample_window(shape, seed, area_range, aspect_ratio_range)
  return _resize(_crop_pixels(image, window_fn), size, resize_method)


@PREPROCESS.register("resize")
def resize(image, size):
  """Plain (aspect-changing) resize to float32 [size, size, 3]."""
  return _resize(_decode_pixels(image), size)


@PREPROCESS.register("resize_center_crop")
def resize_center_crop(image, size, crop_fraction=0.875):
  """Evaluation view: the centre square of `crop_fraction` of the short side, at `size`.

  Equals resizing the short side to size / crop_fraction and cropping the centre
  size x size, but crops first so a JPEG decodes only the crop and the resize is smaller.
  """

  def window_fn(shape):
    h, w = shape[0], shape[1]
    side = tf.maximum(tf.cast(tf.cast(tf.minimum(h, w), tf.float32) * crop_fraction, tf.int32), 1)
    return (h - side) // 2, (w - side) // 2, side, side

  return _resize(_crop_pixels(image, window_fn), size)


@PREPROCESS.register("eval_crop")
def eval_crop(image, size):
  """Evaluation view used by the trainer and eval_hub.

  size > 64 (ImageNet-style): centre crop of 87.5% of the short side (resize_center_crop).
  size <= 64 (CIFAR/digits-style): the whole image resized to size, as CIFAR code evaluates
  on the full 32x32 image; cropping 87.5% of a tiny image would discard its border content.
  """
  if size <= 64:
    return resize(image, size)
  return resize_center_crop(image, size)


@PREPROCESS.register("random_flip")
def random_flip(image, seed):
  """Left-right flip with probability 0.5."""
  return tf.cond(uniform(seed) < 0.5, lambda: tf.reverse(image, [1]), lambda: image)


@PREPROCESS.register("value_range")
def value_range(image, vmin=-1.0, vmax=1.0):
  """[0, 1] -> [vmin, vmax], e.g. value_range(-1, 1) for the `-1_to_1` of S4L/revisiting."""
  return vmin + image * (vmax - vmin)
