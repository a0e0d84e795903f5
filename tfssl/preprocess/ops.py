"""Augmentation ops for one image inside tf.data.

Images are float32 [H, W, 3] in [0, 1]; ops that crop or resize also accept encoded
JPEG/PNG strings and uint8 tensors. Random ops are stateless: they take a `seed`
(int [2]) so a pipeline gives the same augmentations for the same seeds.
"""

import functools

import tensorflow as tf

from tfssl.registry import Registry

PREPROCESS = Registry("preprocessing op")


def split_seed(seed, num):
  """`num` independent seeds derived from `seed`."""
  return tf.unstack(tf.random.experimental.stateless_split(seed, num))


def _uniform(seed, minval=0.0, maxval=1.0):
  return tf.random.stateless_uniform([], seed, minval=minval, maxval=maxval)


def to_float(image):
  if image.dtype == tf.uint8:
    return tf.image.convert_image_dtype(image, tf.float32)
  return tf.cast(image, tf.float32)


@PREPROCESS.register("decode")
def decode_image(image):
  """JPEG/PNG string or uint8 tensor -> float32 [H, W, 3] in [0, 1]."""
  if image.dtype == tf.string:
    image = tf.io.decode_image(image, channels=3, expand_animations=False)
  image = to_float(image)
  if image.shape.rank == 3 and image.shape[-1] == 1:
    image = tf.image.grayscale_to_rgb(image)
  return image


def _crop_window(shape, seed, area_range, aspect_ratio_range):
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
      min_object_covered=0.1, aspect_ratio_range=aspect_ratio_range, area_range=area_range,
      max_attempts=100, use_image_if_no_bounding_boxes=True)
  # When sampling fails TF returns the whole image, the fallback slim and SimCLR use.
  return begin[0], begin[1], size[0], size[1]


def _resize(image, size):
  return tf.clip_by_value(
      tf.image.resize(to_float(image), [size, size], method="bilinear", antialias=False), 0.0, 1.0)


@PREPROCESS.register("inception_crop")
def inception_crop(image, seed, size, area_range=(0.08, 1.0),
                   aspect_ratio_range=(3 / 4, 4 / 3)):
  """Random-resized crop (Szegedy et al.) to [size, size, 3]; JPEGs decode only the crop."""
  area_range = tuple(float(a) for a in area_range)
  aspect_ratio_range = tuple(float(a) for a in aspect_ratio_range)
  if image.dtype == tf.string:
    encoded = image

    def crop_jpeg():
      shape = tf.image.extract_jpeg_shape(encoded)
      y, x, h, w = _crop_window(shape, seed, area_range, aspect_ratio_range)
      return tf.image.decode_and_crop_jpeg(encoded, tf.stack([y, x, h, w]), channels=3)

    def crop_other():
      decoded = tf.io.decode_image(encoded, channels=3, expand_animations=False)
      y, x, h, w = _crop_window(tf.shape(decoded), seed, area_range, aspect_ratio_range)
      return decoded[y:y + h, x:x + w]

    cropped = tf.cond(tf.io.is_jpeg(encoded), crop_jpeg, crop_other)
  else:
    y, x, h, w = _crop_window(tf.shape(image), seed, area_range, aspect_ratio_range)
    cropped = image[y:y + h, x:x + w]
  return _resize(cropped, size)


@PREPROCESS.register("resize")
def resize(image, size):
  return _resize(decode_image(image), size)


@PREPROCESS.register("resize_center_crop")
def resize_center_crop(image, size, crop_fraction=0.875):
  """Centre square of `crop_fraction` of the short side, resized to `size` (evaluation)."""
  image = decode_image(image)
  shape = tf.shape(image)
  h, w = shape[0], shape[1]
  side = tf.cast(tf.cast(tf.minimum(h, w), tf.float32) * crop_fraction, tf.int32)
  y, x = (h - side) // 2, (w - side) // 2
  return _resize(image[y:y + side, x:x + side], size)


def eval_crop(image, size):
  """Evaluation view: centre crop of 87.5% for ImageNet-size inputs; small images
  (<= 64 px, CIFAR-style) are resized whole, as CIFAR code does."""
  if size <= 64:
    return resize(image, size)
  return resize_center_crop(image, size)


@PREPROCESS.register("random_flip")
def random_flip(image, seed):
  return tf.image.stateless_random_flip_left_right(image, seed)


def _grayscale(image):
  return tf.tile(tf.image.rgb_to_grayscale(image), [1, 1, 3])


@PREPROCESS.register("random_grayscale")
def random_grayscale(image, seed, p=0.2):
  return tf.cond(_uniform(seed) < p, lambda: _grayscale(image), lambda: image)


def _brightness(image, seed, delta):
  return image * _uniform(seed, max(0.0, 1.0 - delta), 1.0 + delta)


def _contrast(image, seed, delta):
  return tf.image.adjust_contrast(image, _uniform(seed, max(0.0, 1.0 - delta), 1.0 + delta))


def _saturation(image, seed, delta):
  return tf.image.adjust_saturation(image, _uniform(seed, max(0.0, 1.0 - delta), 1.0 + delta))


def _hue(image, seed, delta):
  return tf.image.adjust_hue(image, _uniform(seed, -delta, delta))


def _color_jitter(image, seed, brightness, contrast, saturation, hue):
  """SimCLR v2 jitter: the four adjustments in a random order."""
  order_seed, *seeds = split_seed(seed, 5)
  order = tf.argsort(tf.random.stateless_uniform([4], order_seed))
  adjustments = list(zip((_brightness, _contrast, _saturation, _hue), seeds,
                         (brightness, contrast, saturation, hue)))
  for position in range(4):
    branches = [functools.partial(fn, image, op_seed, delta)
                for fn, op_seed, delta in adjustments]
    image = tf.clip_by_value(tf.switch_case(order[position], branches), 0.0, 1.0)
  return image


@PREPROCESS.register("color_distortion")
def color_distortion(image, seed, strength=1.0, p_jitter=0.8, p_grayscale=0.2):
  """SimCLR colour distortion: jitter (0.8s, 0.8s, 0.8s, 0.2s) with p_jitter, gray with p_grayscale."""
  apply_seed, jitter_seed, gray_seed = split_seed(seed, 3)
  s = float(strength)
  jitter = functools.partial(_color_jitter, image, jitter_seed, 0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)
  image = tf.cond(_uniform(apply_seed) < p_jitter, jitter, lambda: image)
  return random_grayscale(image, gray_seed, p_grayscale)


def _blur_matrix(kernel, length):
  """[length, length] banded matrix that convolves a signal with `kernel` ("SAME", zero pad)."""
  radius = (kernel.shape[0] - 1) // 2
  offsets = tf.range(length)[None, :] - tf.range(length)[:, None] + radius
  inside = (offsets >= 0) & (offsets <= 2 * radius)
  return tf.where(inside, tf.gather(kernel, tf.clip_by_value(offsets, 0, 2 * radius)), 0.0)


def _gaussian_blur(image, sigma, kernel_size):
  radius = kernel_size // 2
  x = tf.cast(tf.range(-radius, radius + 1), tf.float32)
  kernel = tf.exp(-tf.square(x) / (2.0 * tf.square(sigma)))
  kernel /= tf.reduce_sum(kernel)
  # Separable blur as two matrix products: on CPU inside tf.data this is an order of
  # magnitude faster than (depthwise) convolutions, which dominated the pipeline.
  shape = tf.shape(image)
  rows = _blur_matrix(kernel, shape[0])
  cols = _blur_matrix(kernel, shape[1])
  return tf.einsum("ij,jwc,vw->ivc", rows, image, cols)


@PREPROCESS.register("gaussian_blur")
def gaussian_blur(image, seed, p=0.5, sigma_range=(0.1, 2.0), kernel_fraction=0.1):
  """Separable Gaussian blur with probability p; kernel 10% of the image side (odd)."""
  apply_seed, sigma_seed = split_seed(seed, 2)
  side = image.shape[0] or 32
  kernel_size = 2 * (int(side * kernel_fraction) // 2) + 1
  if kernel_size < 3:
    return image
  sigma = _uniform(sigma_seed, float(sigma_range[0]), float(sigma_range[1]))
  blur = functools.partial(_gaussian_blur, image, sigma, kernel_size)
  return tf.cond(_uniform(apply_seed) < p, blur, lambda: image)


@PREPROCESS.register("value_range")
def value_range(image, vmin=-1.0, vmax=1.0):
  return vmin + image * (vmax - vmin)


def supervised_train(image, seed, size, area_range=(0.08, 1.0)):
  """Inception crop + flip: the supervised / fine-tuning augmentation."""
  crop_seed, flip_seed = split_seed(seed, 2)
  return random_flip(inception_crop(image, crop_seed, size, area_range=area_range), flip_seed)


def simclr_train(image, seed, size, strength=1.0, blur=True, area_range=(0.08, 1.0)):
  """One SimCLR view: inception crop, flip, colour distortion, blur (p 0.5)."""
  crop_seed, color_seed, blur_seed = split_seed(seed, 3)
  image = supervised_train(image, crop_seed, size, area_range=area_range)
  image = color_distortion(image, color_seed, strength=strength)
  if blur:
    image = gaussian_blur(image, blur_seed)
  return image
