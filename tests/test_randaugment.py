"""RandAugment as FNC applies it (tensorflow/tpu's autoaugment.py): each op on a known
input (PIL, which the original's uint8 ops imitate, where PIL computes the same thing;
by hand where the original departs from PIL), the magnitude table, the op choice, and
determinism for a seed eagerly and in tf.data."""

import collections

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from tfssl.errors import UserError
from tfssl.preprocess import randaugment as ra

SEED = tf.constant([3, 4], tf.int64)


def _levels(seed=0, shape=(6, 7, 3)):
  return np.random.default_rng(seed).integers(0, 256, shape).astype(np.float32)


def _pil(levels, op, *args):
  return np.asarray(op(Image.fromarray(levels.astype(np.uint8)), *args), np.float32)


def _run(fn, levels, *args):
  return fn(tf.constant(levels), *args).numpy()


def test_levels_convert_as_tfs_convert_image_dtype():
  image = tf.constant([[[0.0, 0.5, 1.0], [0.2, 0.999, 0.0039]]])
  np.testing.assert_array_equal(ra.to_levels(image).numpy(),
                                tf.image.convert_image_dtype(image, tf.uint8, saturate=True))
  np.testing.assert_allclose(ra.from_levels(tf.constant([0.0, 255.0])).numpy(), [0.0, 1.0])


@pytest.mark.parametrize("name,ours,pil,args", [
    ("equalize", ra.equalize, ImageOps.equalize, ()),
    ("invert", ra.invert, ImageOps.invert, ()),
    ("posterize", ra.posterize, ImageOps.posterize, (2,)),
    ("solarize", ra.solarize, ImageOps.solarize, (179,)),
])
def test_ops_pil_defines_equal_pil(name, ours, pil, args):
  levels = _levels()
  levels[0, 0] = 255  # equalize: the top level's count leaves the step
  np.testing.assert_array_equal(_run(ours, levels, *args), _pil(levels, pil, *args), err_msg=name)


def test_posterize_keeps_at_least_one_bit_as_the_originals_clamped_shift():
  levels = np.array([[[0, 100, 200]]], np.float32)
  np.testing.assert_array_equal(_run(ra.posterize, levels, 0), [[[0, 0, 128]]])
  np.testing.assert_array_equal(_run(ra.posterize, levels, 3), [[[0, 96, 192]]])


def test_auto_contrast_stretches_each_channel_and_leaves_constant_ones():
  levels = np.zeros([2, 3, 3], np.float32)
  levels[..., 0] = [[50, 60, 70], [80, 90, 100]]
  levels[..., 1] = 7
  levels[..., 2] = [[0, 10, 20], [30, 40, 255]]
  out = _run(ra.auto_contrast, levels)
  np.testing.assert_array_equal(out[..., 0], np.floor((levels[..., 0] - 50) * 255 / 50))
  np.testing.assert_array_equal(out[..., 1:], levels[..., 1:])


def test_solarize_add_adds_below_128_only_and_clips():
  levels = np.array([[[0, 100, 127], [128, 200, 255]]], np.float32)
  np.testing.assert_array_equal(_run(ra.solarize_add, levels, 77.0),
                                [[[77, 177, 204], [128, 200, 255]]])


def _gray(levels):
  luma = levels / 255.0 @ np.array([0.2989, 0.5870, 0.1140], np.float32)
  return np.floor(np.clip(luma * 255.5, 0, 255))[..., None]


def _blend(degenerate, levels, factor):
  return np.floor(np.clip(degenerate + factor * (levels - degenerate), 0, 255))


def test_color_blends_with_tfs_grayscale_of_the_uint8_image():
  levels = _levels(1)
  expected = _blend(_gray(levels), levels, 1.36)
  np.testing.assert_array_equal(_run(ra.color, levels, 1.36), expected)
  # The grey is tf.image.rgb_to_grayscale's of the uint8 image.
  gray = tf.image.rgb_to_grayscale(tf.constant(levels.astype(np.uint8))).numpy()
  np.testing.assert_array_equal(_gray(levels), gray)


def test_contrast_blends_with_the_pixel_count_over_256_as_the_original():
  levels = _levels(2, (32, 32, 3))
  # 32 x 32 / 256 = 4: the original's "mean" (its histogram sum over 256), not 127ish.
  np.testing.assert_array_equal(_run(ra.contrast, levels, 1.36), _blend(4.0, levels, 1.36))
  np.testing.assert_array_equal(_run(ra.contrast, levels, 0.5),
                                np.floor(4.0 + 0.5 * (levels - 4.0)))


def test_brightness_scales_and_clips():
  levels = np.array([[[0, 100, 200]]], np.float32)
  np.testing.assert_array_equal(_run(ra.brightness, levels, 1.36), [[[0, 136, 255]]])
  np.testing.assert_array_equal(_run(ra.brightness, levels, 0.55), [[[0, 55, 110]]])


def test_sharpness_blends_with_the_smoothed_interior_and_keeps_the_border():
  levels = _levels(3, (5, 6, 3))
  kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13
  smooth = levels.copy()
  for i in range(1, 4):
    for j in range(1, 5):
      smooth[i, j] = np.floor(np.clip(
          np.einsum("hw,hwc->c", kernel, levels[i - 1:i + 2, j - 1:j + 2]), 0, 255))
  out = _run(ra.sharpness, levels, 1.36)
  np.testing.assert_array_equal(out, _blend(smooth, levels, 1.36))
  np.testing.assert_array_equal(out[0], levels[0])


def test_rotate_is_counter_clockwise_about_the_centre():
  levels = _levels(4, (5, 5, 3))
  np.testing.assert_array_equal(_run(ra.rotate, levels, 90.0), np.rot90(levels))
  np.testing.assert_array_equal(_run(ra.rotate, levels, -90.0), np.rot90(levels, -1))
  # 45 degrees leaves the centre and fills the corners with grey.
  out = _run(ra.rotate, levels, 45.0)
  np.testing.assert_array_equal(out[2, 2], levels[2, 2])
  np.testing.assert_array_equal(out[0, 0], [128, 128, 128])


def test_shear_and_translate_sample_the_nearest_input_pixel_and_fill_grey():
  levels = _levels(5, (4, 5, 3))
  height, width = levels.shape[:2]

  def sampled(source_of):  # output (y, x) takes input source_of(x, y), rounded half away
    out = np.full_like(levels, 128)
    for y in range(height):
      for x in range(width):
        sx, sy = (int(np.sign(v) * np.floor(abs(v) + 0.5)) for v in source_of(x, y))
        if 0 <= sx < width and 0 <= sy < height:
          out[y, x] = levels[sy, sx]
    return out

  np.testing.assert_array_equal(_run(ra.shear_x, levels, 0.3), sampled(lambda x, y: (x + 0.3 * y, y)))
  np.testing.assert_array_equal(_run(ra.shear_y, levels, -0.3), sampled(lambda x, y: (x, y - 0.3 * x)))
  np.testing.assert_array_equal(_run(ra.translate_x, levels, 2.0), sampled(lambda x, y: (x + 2, y)))
  np.testing.assert_array_equal(_run(ra.translate_y, levels, -1.0), sampled(lambda x, y: (x, y - 1)))


def test_cutout_fills_a_square_around_a_drawn_pixel_clipped_at_the_borders():
  levels = _levels(6, (9, 10, 3))
  filled_shapes = set()
  for i in range(20):
    out = _run(lambda x: ra.cutout(x, tf.constant([i, 1], tf.int64), 2), levels)
    filled = np.all(out == 128, axis=-1) & np.any(levels != 128, axis=-1)
    rows, cols = np.nonzero(filled)
    assert 1 <= np.ptp(rows) + 1 <= 4 and 1 <= np.ptp(cols) + 1 <= 4
    assert filled[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
    np.testing.assert_array_equal(out[~filled], levels[~filled])
    filled_shapes.add((np.ptp(rows) + 1, np.ptp(cols) + 1))
  assert (4, 4) in filled_shapes and len(filled_shapes) > 1  # clipped near the borders
  np.testing.assert_array_equal(_run(lambda x: ra.cutout(x, SEED, 20), levels), 128)


def test_magnitude_sets_the_originals_arguments():
  assert ra.arguments(7) == pytest.approx(dict(
      rotate=21.0, posterize=2, solarize=179.0, color=1.36, contrast=1.36, brightness=1.36,
      sharpness=1.36, shear_x=0.21, shear_y=0.21, translate_x=70.0, translate_y=70.0,
      cutout=28, solarize_add=77.0))
  assert ra.arguments(10)["posterize"] == 4 and ra.arguments(10)["solarize"] == 256.0


def test_each_layer_picks_one_of_the_sixteen_ops_uniformly_and_always_applies_it():
  assert len(ra.OPS) == 16
  picks = [tuple(int(i) for i in ra.chosen_ops(tf.constant([s, 9], tf.int64), 2))
           for s in range(800)]
  counts = collections.Counter(i for pair in picks for i in pair)
  assert sorted(counts) == list(range(16)) and min(counts.values()) > 60  # 100 expected
  assert any(a == b for a, b in picks)  # with replacement
  # The image is the chosen ops applied in turn: nothing skipped.
  image = tf.random.stateless_uniform([12, 12, 3], [1, 2])
  calls = dict(ra._op_calls(7.0))  # pylint: disable=protected-access
  for s in range(6):
    seed = tf.constant([s, 9], tf.int64)
    levels = ra.to_levels(image)
    for index, (_, op_seed) in zip(ra.chosen_ops(seed, 2), ra._layer_seeds(seed, 2)):  # pylint: disable=protected-access
      levels = calls[ra.OPS[int(index)]](levels, op_seed)
    np.testing.assert_array_equal(ra.randaugment(image, seed).numpy(),
                                  ra.from_levels(levels).numpy())


def test_randaugment_is_a_function_of_the_seed_eagerly_and_in_tf_data():
  image = tf.random.stateless_uniform([16, 16, 3], [1, 2])
  seeds = tf.constant([[s, 5] for s in range(8)], tf.int64)
  eager = np.stack([ra.randaugment(image, seed).numpy() for seed in seeds])
  mapped = tf.data.Dataset.from_tensor_slices(seeds).map(
      lambda seed: ra.randaugment(image, seed), num_parallel_calls=4, deterministic=True)
  np.testing.assert_array_equal(np.stack(list(mapped.as_numpy_iterator())), eager)
  assert len({out.tobytes() for out in eager}) > 4
  assert eager.min() >= 0 and eager.max() <= 1


def test_bad_settings_are_named():
  with pytest.raises(UserError, match="randaugment_magnitude=11"):
    ra.check_settings(2, 11)
  with pytest.raises(UserError, match="randaugment_layers=-1"):
    ra.check_settings(-1, 7)
