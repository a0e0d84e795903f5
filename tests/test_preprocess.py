import numpy as np
import pytest
import tensorflow as tf

from tfssl import preprocess as pp
from tfssl.errors import UserError

SEED = tf.constant([3, 4], tf.int64)
OTHER = tf.constant([5, 6], tf.int64)


def _image(h=40, w=52):
  """Smooth random colours: JPEG round trips stay close, so paths can be compared."""
  coarse = np.random.RandomState(0).rand(1, 5, 6, 3).astype(np.float32)
  return (tf.image.resize(coarse, [h, w])[0].numpy() * 255).astype(np.uint8)


def _float(h=40, w=52):
  return tf.image.convert_image_dtype(_image(h, w), tf.float32)


RANDOM_OPS = {
    "inception_crop": lambda x, s: pp.inception_crop(x, s, 24),
    "random_flip": pp.random_flip,
    "random_grayscale": lambda x, s: pp.random_grayscale(x, s, p=0.5),
    "color_distortion": pp.color_distortion,
    "gaussian_blur": lambda x, s: pp.gaussian_blur(x, s, p=1.0),
    "simclr_train": lambda x, s: pp.simclr_train(x, s, 24),
    "supervised_train": lambda x, s: pp.supervised_train(x, s, 24),
}


@pytest.mark.parametrize("name", sorted(RANDOM_OPS))
def test_random_ops_eager_and_in_tf_data_are_deterministic(name):
  op = RANDOM_OPS[name]
  image = _float()
  eager = op(image, SEED)
  assert eager.dtype == tf.float32
  assert 0.0 <= float(tf.reduce_min(eager)) and float(tf.reduce_max(eager)) <= 1.0
  np.testing.assert_allclose(op(image, SEED), eager, atol=1e-6)
  in_data = next(iter(tf.data.Dataset.from_tensors(image).map(lambda x: op(x, SEED))))
  np.testing.assert_allclose(in_data, eager, atol=1e-5)
  outputs = [op(image, tf.constant([i, 7], tf.int64)).numpy() for i in range(8)]
  assert any(not np.allclose(outputs[0], o) for o in outputs[1:])


@pytest.mark.parametrize("name,op", [
    ("resize", lambda x: pp.resize(x, 20)),
    ("resize_center_crop", lambda x: pp.resize_center_crop(x, 20)),
    ("eval_crop_small", lambda x: pp.eval_crop(x, 20)),
    ("eval_crop_large", lambda x: pp.eval_crop(x, 96)),
    ("value_range", lambda x: pp.value_range(pp.decode_image(x), -1.0, 1.0)),
])
def test_deterministic_ops(name, op):
  out = op(_image())
  in_data = next(iter(tf.data.Dataset.from_tensors(_image()).map(op)))
  np.testing.assert_allclose(in_data, out, atol=1e-6)
  if name == "value_range":
    assert float(tf.reduce_min(out)) < 0.0
  else:
    assert out.shape[0] == out.shape[1] and out.shape[-1] == 3


def test_decode_jpeg_png_grayscale_uint8():
  image = _image()
  png = pp.decode_image(tf.io.encode_png(image))
  np.testing.assert_allclose(png, image / 255.0, atol=1e-6)
  jpeg = pp.decode_image(tf.io.encode_jpeg(image, quality=100))
  assert jpeg.shape == (40, 52, 3) and float(tf.reduce_mean(tf.abs(jpeg - png))) < 0.05
  gray = pp.decode_image(tf.io.encode_png(image[..., :1]))
  assert gray.shape == (40, 52, 3)
  np.testing.assert_allclose(pp.decode_image(tf.constant(image)), image / 255.0, atol=1e-6)


def test_inception_crop_from_jpeg_matches_decoded_path():
  encoded = tf.io.encode_jpeg(_image(), quality=100)
  from_jpeg = pp.inception_crop(encoded, SEED, 24)
  from_pixels = pp.inception_crop(tf.io.decode_jpeg(encoded), SEED, 24)
  assert float(tf.reduce_mean(tf.abs(from_jpeg - from_pixels))) < 0.02
  from_png = pp.inception_crop(tf.io.encode_png(_image()), SEED, 24)
  assert from_png.shape == (24, 24, 3)


def test_flip_flips_for_some_seed():
  image = _float()
  flipped = [np.allclose(pp.random_flip(image, tf.constant([i, 0], tf.int64)), image[:, ::-1])
             for i in range(10)]
  assert any(flipped) and not all(flipped)


def test_grayscale_has_equal_channels():
  out = pp.random_grayscale(_float(), SEED, p=1.0)
  np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-6)
  np.testing.assert_allclose(out[..., 1], out[..., 2], atol=1e-6)


def test_blur_removes_high_frequencies():
  checker = tf.cast((tf.range(64)[:, None] + tf.range(64)[None, :]) % 2, tf.float32)
  image = tf.tile(checker[..., None], [1, 1, 3])
  blurred = pp.gaussian_blur(image, SEED, p=1.0, sigma_range=(1.0, 1.0))
  energy = lambda x: float(tf.reduce_mean(tf.abs(x[1:] - x[:-1])))
  assert energy(blurred) < 0.2 * energy(image)


def test_parse_builds_a_pipeline_and_rejects_unknown_ops():
  fn = pp.parse("inception_crop(24, area_range=(0.5, 1.0))|random_flip|color_distortion(strength=0.5)")
  out = fn(tf.io.encode_jpeg(_image()), SEED)
  assert out.shape == (24, 24, 3)
  np.testing.assert_allclose(fn(tf.io.encode_jpeg(_image()), SEED), out)
  with pytest.raises(UserError, match="Unknown preprocessing op 'sharpen'.*inception_crop"):
    pp.parse("inception_crop(24)|sharpen")
