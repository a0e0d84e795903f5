import functools
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfssl import methods
from tfssl import preprocess as pp
from tfssl.preprocess import ops
from tfssl.preprocess import photometric
from tfssl.preprocess import recipes
from tfssl.errors import UserError
from tests.helpers import tiny_config

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
    "inception_crop_torchvision": lambda x, s: pp.inception_crop(x, s, 24, sampler="torchvision"),
    "paws_view_torchvision": lambda x, s: pp.paws_view(x, s, 24, (0.14, 1.0),
                                                       sampler="torchvision"),
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


SAMPLERS = sorted(ops.CROP_SAMPLERS)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_inception_crop_from_jpeg_matches_decoded_path(sampler):
  encoded = tf.io.encode_jpeg(_image(), quality=100)
  decoded = tf.io.decode_jpeg(encoded)
  crop = lambda image, seed: pp.inception_crop(image, seed, 24, area_range=(0.05, 1.0),
                                               sampler=sampler)
  for i in range(4):
    # Same window; only chroma upsampling at a crop edge not on a JPEG block differs.
    error = tf.abs(crop(encoded, _seed(i)) - crop(decoded, _seed(i)))
    assert float(tf.reduce_mean(error)) < 0.003 and float(tf.reduce_max(error)) < 0.1
  png = tf.io.encode_png(_image())
  np.testing.assert_allclose(crop(png, SEED), crop(_image(), SEED), atol=1e-6)
  np.testing.assert_allclose(pp.resize_center_crop(encoded, 24),
                             pp.resize_center_crop(decoded, 24), atol=0.03)


def test_inception_crop_resizes_bicubically_as_simclr_when_asked():
  image = tf.constant(_image())
  window = tf.image.convert_image_dtype(image[5:35, 8:44], tf.float32)
  for method in pp.RESIZE_METHODS:
    out = pp.inception_crop(image, SEED, 24, sampler="slim", resize_method=method)
    assert out.shape == (24, 24, 3) and float(tf.reduce_min(out)) >= 0
    assert float(tf.reduce_max(out)) <= 1
  bicubic = pp.inception_crop(image, SEED, 24, resize_method="bicubic")
  bilinear = pp.inception_crop(image, SEED, 24)
  assert 0 < float(tf.reduce_max(tf.abs(bicubic - bilinear))) < 0.2
  # Same window, bicubic resize (no antialias), clipped.
  expected = tf.clip_by_value(tf.image.resize(window, [24, 24], "bicubic"), 0, 1)
  got = pp.ops._resize(window, 24, "bicubic")  # pylint: disable=protected-access
  np.testing.assert_allclose(got, expected, atol=1e-6)
  with pytest.raises(UserError, match="Unknown resize method 'area'"):
    pp.inception_crop(image, SEED, 24, resize_method="area")


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_inception_crop_falls_back_to_a_center_crop(sampler):
  # A square crop of the whole area cannot fit a 40x52 image: sampling fails.
  out = pp.inception_crop(_image(), SEED, 24, area_range=(1.0, 1.0), aspect_ratio_range=(1, 1),
                          sampler=sampler)
  center = pp.resize(_image()[:, 6:46], 24)
  np.testing.assert_allclose(out, center, atol=1e-6)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_inception_crop_respects_area_range(sampler):
  image = tf.constant(np.arange(100 * 100 * 3).reshape([100, 100, 3]) % 251, tf.uint8)
  whole = pp.resize(image, 32)
  for i in range(5):
    np.testing.assert_allclose(
        pp.inception_crop(image, _seed(i), 32, area_range=(1.0, 1.0),
                          aspect_ratio_range=(1.0, 1.0), sampler=sampler), whole, atol=1e-6)


# --- crop window samplers against torchvision and the area formula ----------------------

RATIO = (3 / 4, 4 / 3)
SAMPLES = 2000
# SwAV's and PAWS's small crops, on a non-square image.
REFERENCE_SHAPE, REFERENCE_SCALE = (100, 120), (0.05, 0.14)
# (image shape, scale) where no try fits, and torchvision's centre crop (i, j, h, w).
FALLBACK_CASES = [((10, 400), (0.08, 1.0), (0, 193, 10, 13)),
                  ((400, 10), (0.08, 1.0), (193, 0, 13, 10)),
                  ((7, 301), (0.08, 1.0), (0, 146, 7, 9)),
                  ((30, 30), (1.2, 1.5), (0, 0, 30, 30))]

# Run apart from this process: importing torch's triton after TensorFlow crashes Python.
_TORCHVISION_GET_PARAMS = """
import json, sys
try:
  import torch
  from torchvision.transforms import RandomResizedCrop
except ImportError as error:
  print(json.dumps({"skip": repr(error)}))
  sys.exit()
torch.manual_seed(0)
windows = [[RandomResizedCrop.get_params(torch.zeros(1, height, width), scale, ratio)
            for _ in range(count)]
           for height, width, scale, ratio, count in json.loads(sys.argv[1])]
print(json.dumps({"windows": windows}))
"""


@pytest.fixture(scope="module")
def torchvision_windows():
  """torchvision's RandomResizedCrop.get_params windows (i, j, h, w): SAMPLES for the
  reference case, then one per fallback case."""
  if importlib.util.find_spec("torchvision") is None:
    pytest.skip("torchvision is not installed (the test extra installs it: pip install -e "
                "'.[test]'); it is the reference for the torchvision crop sampler")
  requests = [REFERENCE_SHAPE + (REFERENCE_SCALE, RATIO, SAMPLES)]
  requests += [shape + (scale, RATIO, 1) for shape, scale, _ in FALLBACK_CASES]
  run = subprocess.run([sys.executable, "-c", _TORCHVISION_GET_PARAMS, json.dumps(requests)],
                       capture_output=True, text=True, timeout=600, check=False)
  assert run.returncode == 0, run.stderr[-3000:]
  result = json.loads(run.stdout.strip().splitlines()[-1])
  if "skip" in result:
    pytest.skip(f"torchvision does not import: {result['skip']}")
  return [np.array(windows) for windows in result["windows"]]


@functools.lru_cache(maxsize=None)
def _windows(sampler, shape, area_range, count=SAMPLES, ratio=RATIO):
  """`count` windows (y, x, h, w) of the sampler on an image of `shape`, seeds [i, 7]."""
  sample = ops.crop_sampler(sampler)
  image_shape = tf.constant(shape + (3,))
  seeds = tf.stack([tf.range(count, dtype=tf.int64), tf.fill([count], tf.constant(7, tf.int64))],
                   axis=1)
  window = lambda seed: tf.stack(sample(image_shape, seed, area_range, ratio))
  windows = tf.function(lambda s: tf.map_fn(window, s, fn_output_signature=tf.int32))(seeds)
  return windows.numpy()


def _areas(windows, shape):
  return windows[:, 2] * windows[:, 3] / (shape[0] * shape[1])


def _ks_distance(a, b):
  """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
  grid = np.union1d(a, b)
  cdf = lambda x: np.searchsorted(np.sort(x), grid, side="right") / len(x)
  return float(np.max(np.abs(cdf(a) - cdf(b))))


def _torchvision_mismatches(windows, reference, shape):
  """What about `windows` differs from torchvision's `reference` beyond sampling noise
  (2000 samples each; a two-sample KS distance of 0.06 has p ~ 0.001)."""
  ours, theirs = _areas(windows, shape), _areas(reference, shape)
  log_aspect = lambda w: np.log(w[:, 3] / w[:, 2])
  checks = {
      "min area": abs(ours.min() - theirs.min()) < 0.005,
      "mean area": abs(ours.mean() - theirs.mean()) < 0.004,
      "fraction of areas below 0.1": abs(np.mean(ours < 0.1) - np.mean(theirs < 0.1)) < 0.05,
      "area distribution": _ks_distance(ours, theirs) < 0.06,
      "aspect ratio distribution": _ks_distance(log_aspect(windows),
                                                log_aspect(reference)) < 0.06,
      "row offsets": _ks_distance(windows[:, 0], reference[:, 0]) < 0.06,
      "column offsets": _ks_distance(windows[:, 1], reference[:, 1]) < 0.06,
  }
  return sorted(name for name, ok in checks.items() if not ok)


def test_torchvision_sampler_matches_torchvisions_random_resized_crop(torchvision_windows):
  reference = torchvision_windows[0]
  areas = _areas(reference, REFERENCE_SHAPE)
  # torchvision itself: crops down to 5%, mean ~0.095, half of them below 10%.
  assert areas.min() < 0.055 and abs(areas.mean() - 0.095) < 0.003
  assert abs(np.mean(areas < 0.1) - 0.56) < 0.03
  ours = _windows("torchvision", REFERENCE_SHAPE, REFERENCE_SCALE)
  assert not _torchvision_mismatches(ours, reference, REFERENCE_SHAPE)
  # The same checks tell sample_distorted_bounding_box (never below 10%) apart.
  slim = _windows("slim", REFERENCE_SHAPE, REFERENCE_SCALE)
  assert {"min area", "mean area", "fraction of areas below 0.1"} <= set(
      _torchvision_mismatches(slim, reference, REFERENCE_SHAPE))


@pytest.mark.parametrize("case", range(len(FALLBACK_CASES)))
def test_torchvision_sampler_falls_back_to_torchvisions_centre_crop(case, torchvision_windows):
  shape, scale, expected = FALLBACK_CASES[case]
  np.testing.assert_array_equal(torchvision_windows[1 + case][0], expected)
  np.testing.assert_array_equal(_windows("torchvision", shape, scale, count=20),
                                np.tile(expected, [20, 1]))


def _torchvision_mean_area(scale, ratio=RATIO, tries=10):
  """RandomResizedCrop's mean crop area (a fraction) on a square image, before rounding.

  A try of area a and aspect exp(t) fits iff a * exp(|t|) <= 1; the first fitting one is
  kept, so its area is uniform on the part of `scale` that fits; if none of the tries fits,
  the whole image.
  """
  lo, hi = scale
  fit_limit = np.clip(np.exp(-np.abs(np.linspace(*np.log(ratio), 100001))), lo, hi)
  fits = np.mean((fit_limit - lo) / (hi - lo))
  area_if_fits = np.mean((fit_limit ** 2 - lo ** 2) / (2 * (hi - lo))) / fits
  none_fits = (1 - fits) ** tries
  return (1 - none_fits) * area_if_fits + none_fits


SQUARE = (1000, 1000)  # large enough that rounding a side barely moves the area
TORCHVISION_FAMILIES = {  # area ranges of torchvision-based originals
    "paws_swav_large": (0.14, 1.0), "paws_swav_small": (0.05, 0.14),
    "paws_cifar_large": (0.75, 1.0), "paws_cifar_small": (0.3, 0.75),
    "dino_global": (0.4, 1.0), "dino_local": (0.05, 0.4),
}
SLIM_FAMILIES = {  # crop_area_min of TF originals on sample_distorted_bounding_box
    "revisiting": (0.05, 1.0), "s4l": (0.05, 1.0), "simclr_fnc": (0.08, 1.0),
    "tiny_test_config": (0.5, 1.0),
}


@pytest.mark.parametrize("family", sorted(TORCHVISION_FAMILIES))
def test_torchvision_sampler_areas_follow_the_formula(family):
  lo, hi = scale = TORCHVISION_FAMILIES[family]
  areas = _areas(_windows("torchvision", SQUARE, scale), SQUARE)
  assert lo * 0.995 <= areas.min() <= lo + 0.01 * (hi - lo)
  tolerance = 4 * areas.std() / np.sqrt(len(areas)) + 0.002
  assert abs(areas.mean() - _torchvision_mean_area(scale)) < tolerance
  if hi <= 0.75:  # every try fits: uniform in the scale range
    assert abs(_torchvision_mean_area(scale) - (lo + hi) / 2) < 1e-6


@pytest.mark.parametrize("family", sorted(SLIM_FAMILIES))
def test_slim_sampler_areas_never_go_below_a_tenth(family):
  lo, hi = SLIM_FAMILIES[family]
  floor = max(lo, 0.1)  # sample_distorted_bounding_box's min_object_covered=0.1
  areas = _areas(_windows("slim", SQUARE, (lo, hi)), SQUARE)
  assert floor - 0.001 <= areas.min() <= floor + 0.01
  assert floor < areas.mean() < hi


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_crop_sampler_window_is_a_function_of_the_seed(sampler):
  sample = lambda seed: tf.stack(ops.crop_sampler(sampler)(tf.constant([40, 52, 3]), seed,
                                                           (0.05, 1.0), RATIO))
  eager = sample(SEED).numpy()
  np.testing.assert_array_equal(sample(SEED), eager)
  np.testing.assert_array_equal(tf.function(sample)(SEED), eager)
  in_data = next(iter(tf.data.Dataset.from_tensors(SEED).map(sample)))
  np.testing.assert_array_equal(in_data, eager)
  assert any(not np.array_equal(sample(_seed(i)), eager) for i in range(4))
  y, x, h, w = eager
  assert 0 <= y and 0 <= x and 0 < h and 0 < w and y + h <= 40 and x + w <= 52


def test_torchvision_sampler_compiles_with_xla():
  # XLA's stateless random numbers are not the CPU kernels' ("auto_select" algorithm).
  sample = tf.function(lambda shape, seed: tf.stack(ops.crop_sampler("torchvision")(
      shape, seed, (0.05, 0.14), RATIO)), jit_compile=True)
  shape = tf.constant([100, 120, 3])
  for i in range(4):
    y, x, h, w = window = sample(shape, _seed(i)).numpy()
    np.testing.assert_array_equal(sample(shape, _seed(i)), window)
    assert 0.04 < h * w / 12000 < 0.15 and 0 <= y <= 100 - h and 0 <= x <= 120 - w


def test_unknown_crop_sampler_is_named():
  with pytest.raises(UserError, match="Unknown crop sampler 'pil'.*slim.*torchvision"):
    pp.inception_crop(_image(), SEED, 24, sampler="pil")
  op_seed = pp.split_seed(SEED, 1)[0]  # what a one-op pipeline gives its op
  out = pp.parse("inception_crop(24, sampler='torchvision')")(_image(), SEED)
  np.testing.assert_array_equal(out, pp.inception_crop(_image(), op_seed, 24,
                                                       sampler="torchvision"))


def test_recipes_and_paws_crop_with_the_sampler_of_their_original(monkeypatch):
  used = []
  for name, sample in list(ops.CROP_SAMPLERS.items()):
    spy = lambda *args, name=name, sample=sample: used.append(name) or sample(*args)
    monkeypatch.setitem(ops.CROP_SAMPLERS, name, spy)

  def samplers(fn):
    used.clear()
    fn()
    return sorted(set(used))

  image = _image()
  assert samplers(lambda: pp.supervised_train(image, SEED, 24)) == ["slim"]
  assert samplers(lambda: pp.simclr_train(image, SEED, 24, sampler="torchvision")) == [
      "torchvision"]
  assert samplers(lambda: pp.paws_view(image, SEED, 24, (0.14, 1.0))) == ["slim"]
  assert samplers(lambda: pp.dino_view(image, SEED, 24, (0.4, 1.0))) == ["torchvision"]
  assert samplers(lambda: pp.dino_view(image, SEED, 24, (0.4, 1.0), sampler="slim")) == ["slim"]
  features = {"image": tf.constant(image), "label": tf.constant(0)}
  for mode in ("pretrain", "finetune"):
    paws = methods.get_method("paws")(tiny_config("paws", f"train_mode={mode}",
                                                  "num_local_views=1"), 10, 16)
    assert samplers(lambda: paws.unsup_preprocess(features, SEED)) == ["torchvision"]
    assert samplers(lambda: paws.train_preprocess(features, SEED)) == ["torchvision"]


def test_dino_view_jitter_strength_scales_dinos_four_deltas(monkeypatch):
  deltas = []
  jitter = recipes.color_jitter
  monkeypatch.setattr(recipes, "color_jitter",
                      lambda image, seed, *args: deltas.append(args) or jitter(image, seed, *args))
  image = tf.constant(_image())
  # In a graph both branches of the p-0.8 jitter are traced, so the jitter always is.
  tf.function(lambda: pp.dino_view(image, SEED, 24, (0.4, 1.0)))()
  tf.function(lambda: pp.dino_view(image, SEED, 24, (0.4, 1.0), jitter_strength=0.5))()
  np.testing.assert_allclose(deltas, [(0.4, 0.4, 0.2, 0.1), (0.2, 0.2, 0.1, 0.05)])


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



def test_supervised_hsv_noise_adds_s4ls_noise_to_the_same_crop_and_flip():
  features = {"image": tf.constant(_image()), "label": tf.constant(3)}
  plain = methods.get_method("supervised")(tiny_config("supervised"), 10, 16)
  noisy = methods.get_method("supervised")(tiny_config("supervised", "hsv_noise=true"), 10, 16)
  crop = plain.train_preprocess(features, SEED)["image"]
  out = noisy.train_preprocess(features, SEED)["image"]
  expected = pp.hsv_noise(crop, tf.random.experimental.stateless_split(SEED, 3)[2])
  np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=1e-6)
  assert float(tf.reduce_max(tf.abs(out - crop))) > 0.01
