import numpy as np
import pytest
import tensorflow as tf

from tfssl import preprocess as pp
from tfssl.preprocess import photometric
from tfssl.errors import UserError

SEED = tf.constant([3, 4], tf.int64)
OTHER = tf.constant([5, 6], tf.int64)


def _seed(i):
  return tf.constant([i, 7], tf.int64)


def _image(h=40, w=52):
  """Smooth random colours (uint8): JPEG round trips stay close, so paths can be compared."""
  coarse = np.random.RandomState(0).rand(1, 5, 6, 3).astype(np.float32)
  return (tf.image.resize(coarse, [h, w])[0].numpy() * 255).astype(np.uint8)


def _float(h=40, w=52):
  return tf.image.convert_image_dtype(_image(h, w), tf.float32)


def _in_tf_data(fn, image, *args):
  dataset = tf.data.Dataset.from_tensors(image).map(lambda x: fn(x, *args))
  return next(iter(dataset))


def _assert_image(out, size=None):
  assert out.dtype == tf.float32 and out.shape.rank == 3 and out.shape[-1] == 3
  if size is not None:
    assert out.shape[:2] == (size, size)
  assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 1.0


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
  _assert_image(eager)
  assert eager.shape == (op(image, _seed(0)).shape)
  np.testing.assert_array_equal(op(image, SEED), eager)
  np.testing.assert_allclose(_in_tf_data(op, image, SEED), eager, atol=1e-5)
  outputs = [op(image, _seed(i)).numpy() for i in range(8)]
  assert any(not np.allclose(outputs[0], o) for o in outputs[1:])


@pytest.mark.parametrize("source", ["jpeg", "png", "uint8"])
def test_crops_accept_encoded_and_uint8_images(source):
  encode = {"jpeg": tf.io.encode_jpeg, "png": tf.io.encode_png, "uint8": tf.constant}[source]
  image = encode(_image())
  for op in (lambda x: pp.inception_crop(x, SEED, 24), lambda x: pp.simclr_train(x, SEED, 24)):
    eager = op(image)
    _assert_image(eager, 24)
    np.testing.assert_allclose(_in_tf_data(op, image), eager, atol=1e-5)


@pytest.mark.parametrize("name,op,size", [
    ("resize", lambda x: pp.resize(x, 20), 20),
    ("resize_center_crop", lambda x: pp.resize_center_crop(x, 20), 20),
    ("eval_crop_small", lambda x: pp.eval_crop(x, 20), 20),
    ("eval_crop_large", lambda x: pp.eval_crop(x, 96), 96),
    ("decode", pp.decode_image, None),
])
@pytest.mark.parametrize("source", ["uint8", "float", "jpeg"])
def test_deterministic_ops_eager_and_in_tf_data(name, op, size, source):
  del name
  image = {"uint8": tf.constant(_image()), "float": _float(),
           "jpeg": tf.io.encode_jpeg(_image())}[source]
  out = op(image)
  _assert_image(out, size)
  np.testing.assert_allclose(_in_tf_data(op, image), out, atol=1e-6)


def test_value_range():
  out = pp.value_range(_float(), -1.0, 1.0)
  np.testing.assert_allclose(out, _float() * 2.0 - 1.0, atol=1e-6)
  np.testing.assert_allclose(_in_tf_data(pp.value_range, _float(), -1.0, 1.0), out)
  assert float(tf.reduce_min(out)) < 0.0


def test_decode_jpeg_png_grayscale_uint8():
  image = _image()
  png = pp.decode_image(tf.io.encode_png(image))
  np.testing.assert_allclose(png, image / 255.0, atol=1e-6)
  jpeg = pp.decode_image(tf.io.encode_jpeg(image, quality=100))
  assert jpeg.shape == (40, 52, 3) and float(tf.reduce_mean(tf.abs(jpeg - png))) < 0.05
  gray = pp.decode_image(tf.io.encode_png(image[..., :1]))
  assert gray.shape == (40, 52, 3)
  np.testing.assert_allclose(gray[..., 0], image[..., 0] / 255.0, atol=1e-6)
  np.testing.assert_allclose(gray[..., 0], gray[..., 2])
  np.testing.assert_allclose(pp.decode_image(tf.constant(image)), image / 255.0, atol=1e-6)
  gray_pixels = pp.decode_image(tf.constant(image[..., :1]))
  assert gray_pixels.shape == (40, 52, 3)
  # Grayscale uint8 whose channel count is only known at run time (e.g. from a generator).
  dynamic = tf.function(pp.decode_image, input_signature=[tf.TensorSpec([None, None, None],
                                                                          tf.uint8)])
  np.testing.assert_allclose(dynamic(image[..., :1]), gray_pixels)


def test_inception_crop_from_jpeg_matches_decoded_path():
  encoded = tf.io.encode_jpeg(_image(), quality=100)
  decoded = tf.io.decode_jpeg(encoded)
  for i in range(4):
    # Same window; only chroma upsampling at a crop edge not on a JPEG block differs.
    error = tf.abs(pp.inception_crop(encoded, _seed(i), 24) -
                   pp.inception_crop(decoded, _seed(i), 24))
    assert float(tf.reduce_mean(error)) < 0.003 and float(tf.reduce_max(error)) < 0.1
  png = tf.io.encode_png(_image())
  np.testing.assert_allclose(pp.inception_crop(png, SEED, 24),
                             pp.inception_crop(_image(), SEED, 24), atol=1e-6)
  np.testing.assert_allclose(pp.resize_center_crop(encoded, 24),
                             pp.resize_center_crop(decoded, 24), atol=0.03)


def test_inception_crop_falls_back_to_a_center_crop():
  # A square crop of the whole area cannot fit a 40x52 image: sampling fails.
  out = pp.inception_crop(_image(), SEED, 24, area_range=(1.0, 1.0), aspect_ratio_range=(1, 1))
  center = pp.resize(_image()[:, 6:46], 24)
  np.testing.assert_allclose(out, center, atol=1e-6)


def test_inception_crop_respects_area_range():
  image = tf.constant(np.arange(100 * 100 * 3).reshape([100, 100, 3]) % 251, tf.uint8)
  whole = pp.resize(image, 32)
  for i in range(5):
    np.testing.assert_allclose(
        pp.inception_crop(image, _seed(i), 32, area_range=(1.0, 1.0),
                          aspect_ratio_range=(1.0, 1.0)), whole, atol=1e-6)


def test_eval_crop_center_crops_large_and_resizes_small():
  image = _image(64, 64)
  np.testing.assert_allclose(pp.eval_crop(image, 32), pp.resize(image, 32))
  np.testing.assert_allclose(pp.eval_crop(image, 96), pp.resize(image[4:60, 4:60], 96), atol=1e-6)


def test_flip_flips_for_some_seed():
  image = _float()
  flipped = [np.allclose(pp.random_flip(image, _seed(i)), image[:, ::-1]) for i in range(10)]
  unchanged = [np.allclose(pp.random_flip(image, _seed(i)), image) for i in range(10)]
  assert any(flipped) and any(unchanged)
  assert all(f or u for f, u in zip(flipped, unchanged))


def test_grayscale_has_equal_channels():
  out = pp.random_grayscale(_float(), SEED, p=1.0)
  np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-6)
  np.testing.assert_allclose(out[..., 1], out[..., 2], atol=1e-6)
  np.testing.assert_allclose(out[..., :1], tf.image.rgb_to_grayscale(_float()), atol=1e-5)
  np.testing.assert_array_equal(pp.random_grayscale(_float(), SEED, p=0.0), _float())


def test_color_distortion_matches_tf_image_ops():
  image = _float()
  # One adjustment at a time (the others disabled): exactly the tf.image op and its clip.
  saturated = pp.color_jitter(image, SEED, 0.0, 0.0, 0.8, 0.0)
  factors = [tf.image.adjust_saturation(image, f) for f in np.linspace(0.2, 1.8, 161)]
  assert min(float(tf.reduce_max(tf.abs(saturated - f))) for f in factors) < 0.01
  np.testing.assert_array_equal(pp.color_jitter(image, SEED, 0.0, 0.0, 0.0, 0.0), image)
  # No jitter and no grayscale -> identity.
  np.testing.assert_array_equal(pp.color_distortion(image, SEED, p_jitter=0.0, p_grayscale=0.0),
                                image)
  # Strong jitter changes colours, not just brightness: channel ratios move.
  outs = [pp.color_distortion(image, _seed(i), p_jitter=1.0, p_grayscale=0.0) for i in range(4)]
  assert all(float(tf.reduce_mean(tf.abs(o - image))) > 0.01 for o in outs)


def _reference_blur(image, sigma, radius):
  x = tf.cast(tf.range(-radius, radius + 1), tf.float32)
  kernel = tf.exp(-x ** 2 / (2.0 * sigma ** 2))
  kernel /= tf.reduce_sum(kernel)
  channels = image.shape[-1]
  rows = tf.tile(kernel[:, None, None, None], [1, 1, channels, 1])
  cols = tf.tile(kernel[None, :, None, None], [1, 1, channels, 1])
  out = tf.nn.depthwise_conv2d(image[None], rows, [1, 1, 1, 1], "SAME")
  return tf.nn.depthwise_conv2d(out, cols, [1, 1, 1, 1], "SAME")[0]


@pytest.mark.parametrize("shape,radius", [((224, 200, 3), 11), ((37, 41, 3), 5),
                                          ((20, 33, 3), 19), ((16, 16, 3), 0)])
def test_blur_equals_depthwise_convolution(shape, radius):
  image = tf.random.stateless_uniform(shape, SEED)
  for sigma in (0.1, 1.3, 2.0):
    np.testing.assert_allclose(photometric.blur(image, sigma, radius),
                               _reference_blur(image, sigma, radius), atol=1e-5)


def test_blur_removes_high_frequencies():
  checker = tf.cast((tf.range(64)[:, None] + tf.range(64)[None, :]) % 2, tf.float32)
  image = tf.tile(checker[..., None], [1, 1, 3])
  blurred = pp.gaussian_blur(image, SEED, p=1.0, sigma_range=(1.0, 1.0))
  energy = lambda x: float(tf.reduce_mean(tf.abs(x[1:] - x[:-1])) +
                           tf.reduce_mean(tf.abs(x[:, 1:] - x[:, :-1])))
  assert energy(blurred) < 0.2 * energy(image)
  np.testing.assert_array_equal(pp.gaussian_blur(image, SEED, p=0.0), image)


def test_blur_of_unknown_size_uses_the_kernel_of_the_run_time_size():
  image = tf.random.stateless_uniform([60, 50, 3], SEED)
  dynamic = tf.function(lambda x: pp.gaussian_blur(x, SEED, p=1.0),
                        input_signature=[tf.TensorSpec([None, None, 3], tf.float32)])
  np.testing.assert_allclose(dynamic(image), pp.gaussian_blur(image, SEED, p=1.0), atol=1e-6)


@pytest.mark.parametrize("name,op", [
    ("random_flip", pp.random_flip),
    ("color_distortion", pp.color_distortion),
    ("gaussian_blur", lambda x, s: pp.gaussian_blur(x, s, p=1.0)),
    ("random_grayscale", lambda x, s: pp.random_grayscale(x, s, p=1.0)),
])
def test_photometric_ops_compile_with_xla(name, op):
  del name
  out = tf.function(op, jit_compile=True)(_float(32, 32), SEED)
  _assert_image(out, 32)


def test_parse_builds_a_pipeline_and_rejects_unknown_ops():
  fn = pp.parse("inception_crop(24, area_range=(0.5, 1.0))|random_flip|"
                "color_distortion(strength=0.5)|gaussian_blur|value_range(-1, 1)")
  out = fn(tf.io.encode_jpeg(_image()), SEED)
  assert out.shape == (24, 24, 3) and float(tf.reduce_min(out)) < 0.0
  np.testing.assert_array_equal(fn(tf.io.encode_jpeg(_image()), SEED), out)
  in_data = _in_tf_data(fn, tf.io.encode_jpeg(_image()), SEED)
  np.testing.assert_allclose(in_data, out, atol=1e-5)
  assert not np.allclose(fn(tf.io.encode_jpeg(_image()), OTHER), out)
  np.testing.assert_array_equal(pp.parse("")(_float(), SEED), _float())
  with pytest.raises(UserError, match="Unknown preprocessing op 'sharpen'.*inception_crop"):
    pp.parse("inception_crop(24)|sharpen")
  with pytest.raises(UserError, match="unexpected keyword argument 'sigma'"):
    pp.parse("gaussian_blur(sigma=1)")
  with pytest.raises(UserError, match="literals"):
    pp.parse("resize(size)")

