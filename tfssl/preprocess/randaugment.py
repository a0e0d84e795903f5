"""RandAugment as google-research/fnc applies it (data_util.py calls tensorflow/tpu's
efficientnet/autoaugment.py `distort_image_with_randaugment` unchanged, 2 layers at
magnitude 7).

Each of `num_layers` layers picks one of the 16 ops of `OPS` uniformly (layers pick
independently, so an op can come twice) and always applies it: the original draws a
probability per op and discards it, and has no identity op. The magnitude (0..10) sets
every op's strength as the original's `level_to_arg` table does; geometric sizes are in
pixels whatever the image size (translate 100 x M/10, cutout 40 x M/10), and posterize
and solarize get weaker as M grows, all as in the original.

The original works on uint8 images; the ops here take float32 [H, W, 3] "levels", the
same 0..255 integers held in floats, and truncate where it casts to uint8, so results
are the original's values. `randaugment` converts from and to [0, 1] images as FNC does
(float -> uint8 by TF's convert_image_dtype, x 255.5 truncated; back / 255). Random ops
are stateless (explicit `seed`), for tf.data on a TPU host, which runs no Python.
"""

import math

import tensorflow as tf

from tfssl.errors import UserError
from tfssl.preprocess.ops import PREPROCESS, split_seed, uniform
from tfssl.preprocess.photometric import equalize_levels

MAX_MAGNITUDE = 10.0  # the original's _MAX_LEVEL
FILL = 128.0  # the grey the original's geometric ops and cutout fill with
TRANSLATE_PIXELS = 100.0  # translate_const of distort_image_with_randaugment
CUTOUT_PIXELS = 40  # cutout_const
# tf.image.rgb_to_grayscale's weights.
_LUMA = (0.2989, 0.5870, 0.1140)


def _uint8(values):
  """The original's cast to uint8 after clipping: truncation of values in [0, 255]."""
  return tf.floor(tf.clip_by_value(values, 0.0, 255.0))


def to_levels(image):
  """[0, 1] float -> 0..255 levels as tf.image.convert_image_dtype(uint8, saturate=True)."""
  return _uint8(tf.cast(image, tf.float32) * 255.5)


def from_levels(levels):
  """0..255 levels -> [0, 1], as convert_image_dtype(float32)."""
  return levels * (1.0 / 255.0)


def blend(image1, image2, factor):
  """image1 + factor (image2 - image1), extrapolating for factor > 1, then to uint8."""
  if factor == 0.0:
    return image1
  if factor == 1.0:
    return image2
  return _uint8(image1 + factor * (image2 - image1))


def _gray(levels):
  """tf.image.rgb_to_grayscale of a uint8 image: through [0, 1] floats and back."""
  gray = tf.tensordot(levels * (1.0 / 255.0), tf.constant(_LUMA), [[-1], [-1]])[..., None]
  return _uint8(gray * 255.5)


# --- the ops (levels in, levels out) --------------------------------------------------


def auto_contrast(levels):
  """Each channel stretched to 0..255 (left alone where it is constant)."""
  low = tf.reduce_min(levels, axis=[0, 1])
  high = tf.reduce_max(levels, axis=[0, 1])
  scale = 255.0 / tf.where(high > low, high - low, 1.0)
  stretched = _uint8(levels * scale + (-low * scale))
  return tf.where(high > low, stretched, levels)


def equalize(levels):
  """PIL's histogram equalisation per channel."""
  return tf.cast(equalize_levels(tf.cast(levels, tf.int32)), tf.float32)


def invert(levels):
  return 255.0 - levels


def posterize(levels, bits):
  """Keeps the `bits` high bits of each value (at least 1: the original's uint8 shifts by
  8 - bits, which TF clamps to 7)."""
  step = 2.0 ** min(8 - bits, 7)
  return tf.floor(levels / step) * step


def solarize(levels, threshold):
  """Values at or above `threshold` inverted."""
  return tf.where(levels < threshold, levels, 255.0 - levels)


def solarize_add(levels, addition, threshold=128.0):
  """`addition` added (clipped) to the values below `threshold`."""
  return tf.where(levels < threshold, tf.clip_by_value(levels + addition, 0.0, 255.0), levels)


def color(levels, factor):
  """Saturation: a blend with the image's grey version."""
  return blend(tf.tile(_gray(levels), [1, 1, 3]), levels, factor)


def contrast(levels, factor):
  """A blend with a constant grey. The original means the mean grey level but takes the
  sum of a 256-bin histogram over 256, which is the pixel count / 256 (196 at 224 px);
  kept, as it is the augmentation FNC trained with."""
  pixels = tf.cast(tf.shape(levels)[0] * tf.shape(levels)[1], tf.float32)
  degenerate = _uint8(pixels / 256.0) * tf.ones_like(levels)
  return blend(degenerate, levels, factor)


def brightness(levels, factor):
  """A blend with black."""
  return blend(tf.zeros_like(levels), levels, factor)


def sharpness(levels, factor):
  """A blend with PIL's SMOOTH filter of the image (the border pixels kept as they are);
  factor > 1 sharpens."""
  kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
  smooth = _uint8(tf.nn.depthwise_conv2d(levels[None], kernel, [1, 1, 1, 1], "VALID")[0])
  inside = tf.pad(tf.ones_like(smooth), [[1, 1], [1, 1], [0, 0]]) > 0
  smooth = tf.where(inside, tf.pad(smooth, [[1, 1], [1, 1], [0, 0]]), levels)
  return blend(smooth, levels, factor)


def _transform(levels, transform):
  """Output pixel (x, y) takes the input's nearest pixel at (a0 x + a1 y + a2,
  b0 x + b1 y + b2), FILL outside it (tf.contrib.image.transform with the original's
  wrap / unwrap, which under nearest sampling fills exactly the pixels from outside)."""
  transform = tf.cast(tf.stack(transform + [0.0, 0.0]), tf.float32)[None]
  return tf.raw_ops.ImageProjectiveTransformV3(
      images=levels[None], transforms=transform, output_shape=tf.shape(levels)[:2],
      fill_value=FILL, interpolation="NEAREST", fill_mode="CONSTANT")[0]


def rotate(levels, degrees):
  """Counter-clockwise rotation about the image centre."""
  height = tf.cast(tf.shape(levels)[0], tf.float32) - 1.0
  width = tf.cast(tf.shape(levels)[1], tf.float32) - 1.0
  radians = tf.cast(degrees, tf.float32) * (math.pi / 180.0)
  cos, sin = tf.cos(radians), tf.sin(radians)
  x_offset = (width - (cos * width - sin * height)) / 2.0
  y_offset = (height - (sin * width + cos * height)) / 2.0
  return _transform(levels, [cos, -sin, x_offset, sin, cos, y_offset])


def shear_x(levels, shear):
  return _transform(levels, [1.0, shear, 0.0, 0.0, 1.0, 0.0])


def shear_y(levels, shear):
  return _transform(levels, [1.0, 0.0, 0.0, shear, 1.0, 0.0])


def translate_x(levels, pixels):
  """Content moves `pixels` to the left (right for negative pixels)."""
  return _transform(levels, [1.0, 0.0, pixels, 0.0, 1.0, 0.0])


def translate_y(levels, pixels):
  """Content moves `pixels` up (down for negative pixels)."""
  return _transform(levels, [1.0, 0.0, 0.0, 0.0, 1.0, pixels])


def cutout(levels, seed, half_size):
  """A square of side 2 half_size (clipped at the borders) around a uniformly drawn
  pixel, filled with FILL."""
  height, width = tf.shape(levels)[0], tf.shape(levels)[1]
  row_seed, col_seed = split_seed(seed, 2)
  row = tf.random.stateless_uniform([], row_seed, 0, height, tf.int32)
  col = tf.random.stateless_uniform([], col_seed, 0, width, tf.int32)
  inside_rows = tf.logical_and(tf.range(height) >= row - half_size,
                               tf.range(height) < row + half_size)
  inside_cols = tf.logical_and(tf.range(width) >= col - half_size,
                               tf.range(width) < col + half_size)
  inside = tf.logical_and(inside_rows[:, None], inside_cols[None, :])[:, :, None]
  return tf.where(inside, FILL, levels)


# --- RandAugment -----------------------------------------------------------------------


def _signed(seed, value):
  """value or -value, each with probability 1/2 (the original's _randomly_negate)."""
  return tf.where(uniform(seed) + 0.5 >= 1.0, value, -value)


def arguments(magnitude):
  """Each op's argument at `magnitude` (the original's level_to_arg; rotate, shear and
  translate then take a random sign)."""
  level = magnitude / MAX_MAGNITUDE
  factor = level * 1.8 + 0.1
  return dict(rotate=level * 30.0, posterize=int(level * 4), solarize=float(int(level * 256)),
              color=factor, contrast=factor, brightness=factor, sharpness=factor,
              shear_x=level * 0.3, shear_y=level * 0.3, translate_x=level * TRANSLATE_PIXELS,
              translate_y=level * TRANSLATE_PIXELS, cutout=int(level * CUTOUT_PIXELS),
              solarize_add=float(int(level * 110)))


def _op_calls(magnitude):
  """(name, fn(levels, seed)) of each op, in the original's order, at `magnitude`."""
  arg = arguments(magnitude)
  return (
      ("auto_contrast", lambda x, s: auto_contrast(x)),
      ("equalize", lambda x, s: equalize(x)),
      ("invert", lambda x, s: invert(x)),
      ("rotate", lambda x, s: rotate(x, _signed(s, arg["rotate"]))),
      ("posterize", lambda x, s: posterize(x, arg["posterize"])),
      ("solarize", lambda x, s: solarize(x, arg["solarize"])),
      ("color", lambda x, s: color(x, arg["color"])),
      ("contrast", lambda x, s: contrast(x, arg["contrast"])),
      ("brightness", lambda x, s: brightness(x, arg["brightness"])),
      ("sharpness", lambda x, s: sharpness(x, arg["sharpness"])),
      ("shear_x", lambda x, s: shear_x(x, _signed(s, arg["shear_x"]))),
      ("shear_y", lambda x, s: shear_y(x, _signed(s, arg["shear_y"]))),
      ("translate_x", lambda x, s: translate_x(x, _signed(s, arg["translate_x"]))),
      ("translate_y", lambda x, s: translate_y(x, _signed(s, arg["translate_y"]))),
      ("cutout", lambda x, s: cutout(x, s, arg["cutout"])),
      ("solarize_add", lambda x, s: solarize_add(x, arg["solarize_add"])),
  )


OPS = tuple(name for name, _ in _op_calls(MAX_MAGNITUDE))


def check_settings(num_layers, magnitude):
  if num_layers < 0 or not 0 <= magnitude <= MAX_MAGNITUDE:
    raise UserError(f"randaugment_layers={num_layers} must be >= 0 and "
                    f"randaugment_magnitude={magnitude} within 0..{MAX_MAGNITUDE:g} (the "
                    f"original's scale; FNC uses 2 layers at 7).")


def _layer_seeds(seed, num_layers):
  """(op choice seed, op seed) of each layer."""
  return [tuple(split_seed(layer_seed, 2)) for layer_seed in split_seed(seed, num_layers)]


def chosen_ops(seed, num_layers):
  """The indices into OPS of the ops `randaugment` applies for `seed`, layer by layer."""
  return [tf.random.stateless_uniform([], choice_seed, 0, len(OPS), tf.int32)
          for choice_seed, _ in _layer_seeds(seed, num_layers)]


@PREPROCESS.register("randaugment")
def randaugment(image, seed, num_layers=2, magnitude=7):
  """RandAugment of a float32 [H, W, 3] image in [0, 1] (returned in [0, 1])."""
  check_settings(num_layers, magnitude)
  calls = [fn for _, fn in _op_calls(float(magnitude))]
  levels = to_levels(tf.clip_by_value(image, 0.0, 1.0))
  for index, (_, op_seed) in zip(chosen_ops(seed, num_layers), _layer_seeds(seed, num_layers)):
    levels = tf.switch_case(index, [lambda fn=fn, x=levels, s=op_seed: fn(x, s) for fn in calls])
  return from_levels(levels)
