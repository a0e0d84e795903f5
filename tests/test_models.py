import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tfssl import models
from tfssl.errors import UserError

TINY = 0.0625

# Expected taps at 32 px (CIFAR stem) and width 1/16: {tap: (side, channels)}.
RESNET_BASIC_32 = {"stem": (32, 4), "block1": (32, 4), "block2": (16, 8), "block3": (8, 16),
                   "block4": (4, 32)}
RESNET_BOTTLENECK_32 = {"stem": (32, 4), "block1": (32, 16), "block2": (16, 32),
                        "block3": (8, 64), "block4": (4, 128)}
WRN_32 = {"stem": (32, 1), "block1": (32, 2 * 16 * TINY), "block2": (16, 2 * 32 * TINY),
          "block3": (8, 2 * 64 * TINY)}
VGG_32 = {"block1": (32, 4), "block2": (16, 8), "block3": (8, 16), "block4": (4, 32),
          "block5": (2, 32)}


REVNET_32 = {"stem": (32, 16), "block1": (32, 16), "block2": (16, 32), "block3": (8, 64),
             "block4": (4, 128)}


def _expected_taps(name):
  if name.startswith("vit"):
    # 4-px patches at 32 px: an 8x8 grid in every tap; the width multiplier keeps the heads.
    dim, heads = {"vit_s16": (384, 6), "vit_b16": (768, 12), "vit_s8": (384, 6),
                  "vit_b8": (768, 12)}[name]
    channels = max(heads, round(dim * TINY / heads) * heads)
    return {tap: (8, channels) for tap in ["stem"] + [f"block{i}" for i in range(1, 13)]}
  if name.startswith("wide_resnet"):
    widen = int(name.removesuffix("_suncet").split("_")[-1])
    return {tap: (side, round(channels / 2 * widen) if tap != "stem" else channels)
            for tap, (side, channels) in WRN_32.items()}
  if name.startswith("vgg"):
    return VGG_32
  if name.startswith("revnet"):
    # The stem projects straight to stage 1's width: reversible units keep channel counts.
    return REVNET_32
  depth = int(name[len("resnet"):].split("_")[0])
  return RESNET_BASIC_32 if depth < 50 else RESNET_BOTTLENECK_32


def _parameter_count(variables):
  return sum(int(np.prod(v.shape)) for v in variables)


@pytest.fixture
def mixed_bfloat16():
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_registered_names():
  names = set(models.MODELS.names())
  for depth in (10, 18, 34, 50, 101, 152):
    assert {f"resnet{depth}_v1", f"resnet{depth}_v2"} <= names
  assert {"wide_resnet28_2", "vgg19"} <= names


@pytest.mark.parametrize("name", models.MODELS.names())
def test_every_model_returns_its_taps_at_32px(name):
  model = models.build_model(name, image_size=32, width=TINY)
  expected = _expected_taps(name)
  # Static shapes: the graph is built at image_size.
  assert {tap: tuple(t.shape) for tap, t in model.output.items() if tap != "default"} == {
      tap: (None, side, side, channels) for tap, (side, channels) in expected.items()}
  last_tap = max(tap for tap in expected if tap.startswith("block"))
  assert tuple(model.output["default"].shape) == (None, expected[last_tap][1])
  out = model(tf.random.uniform([2, 32, 32, 3]), training=True)
  assert set(out) == set(expected) | {"default"}
  assert all(value.dtype == tf.float32 for value in out.values())
  assert np.all(np.isfinite(out["default"].numpy()))


@pytest.mark.parametrize("name", ["resnet18_v1", "resnet50_v2", "wide_resnet28_2", "vgg19"])
def test_float32_outputs_under_mixed_bfloat16(name, mixed_bfloat16):
  del mixed_bfloat16
  model = models.build_model(name, image_size=32, width=TINY)
  assert any(layer.compute_dtype == "bfloat16" for layer in model.layers)
  out = model(tf.random.uniform([2, 32, 32, 3]), training=True)
  assert all(value.dtype == tf.float32 for value in out.values())


def test_imagenet_stem_at_96px_and_auto_choice():
  model = models.build_model("resnet18_v2", image_size=96, width=TINY)
  out = model(tf.zeros([1, 96, 96, 3]))
  assert out["stem"].shape[1:3] == (24, 24) and out["block4"].shape[1:3] == (3, 3)
  forced = models.build_model("resnet18_v1", image_size=64, width=TINY, cifar_stem=False)
  assert forced.output["stem"].shape[1:3] == (16, 16)
  auto = models.build_model("resnet18_v1", image_size=64, width=TINY)
  assert auto.output["stem"].shape[1:3] == (64, 64)


@pytest.mark.parametrize("name", ["resnet10_v1", "resnet10_v2", "revnet50"])
def test_patch_net_downsamples_as_revisitings_patch_models(name):
  # root_conv_stride=1, strides=(2, 2, 1): a 64-px patch is 32 px after the root max-pool,
  # and stage 4 keeps stage 3's 8x8 (the usual layouts end at 2x2 or 8x8 from 64x64 stages).
  model = models.build_model(name, image_size=64, width=TINY, patch_net=True)
  sides = {tap: model.output[tap].shape[1] for tap in ("stem", "block1", "block2", "block3",
                                                       "block4")}
  assert sides == {"stem": 32, "block1": 32, "block2": 16, "block3": 8, "block4": 8}
  assert model.get_layer("stem_conv").kernel.shape[:2] == (7, 7)


def test_runs_on_other_input_sizes_than_built_for():
  model = models.build_model("resnet10_v1", image_size=32, width=TINY, cifar_stem=False)
  out = model(tf.random.uniform([2, 45, 38, 3]))
  # Strided layers pad symmetrically: ceil(size / 2) at every stride-2 step.
  assert out["stem"].shape[1:3] == (12, 10) and out["block4"].shape[1:3] == (2, 2)
  shapeless = tf.function(lambda images: model(images)["default"]).get_concrete_function(
      tf.TensorSpec([None, None, None, 3], tf.float32))
  assert shapeless.structured_outputs.shape.as_list() == [None, 32]


def test_first_op_rescales_to_minus_one_one():
  model = models.build_model("vgg19", image_size=8, width=TINY)
  rescale = model.get_layer("to_minus_one_one")
  np.testing.assert_allclose(rescale(tf.constant([0.0, 0.5, 1.0])), [-1.0, 0.0, 1.0])


@pytest.mark.parametrize("name,expected", [
    ("resnet50_v1", 25_557_032),  # torchvision / the ResNet paper's 25.6M
    ("resnet50_v2", 25_549_352),  # no stem BN, one final BN: 7,680 fewer
])
def test_resnet50_parameter_count_with_a_1000_way_head(name, expected):
  model = models.build_model(name, image_size=224)
  head = keras.layers.Dense(1000)
  head.build(model.output["default"].shape)
  count = _parameter_count(model.trainable_weights + head.trainable_weights)
  assert count == pytest.approx(expected, rel=0.005)
  assert count == pytest.approx(25.6e6, rel=0.005)


def test_wide_resnet28_2_parameter_count_with_a_10_way_head():
  model = models.build_model("wide_resnet28_2", image_size=32)
  assert _parameter_count(model.trainable_weights) + 128 * 10 + 10 == 1_467_610  # 1.47M


def test_width_multiplier_scales_channels():
  channels = {}
  for width in (0.125, 0.25):
    model = models.build_model("resnet18_v1", image_size=32, width=width)
    channels[width] = {tap: t.shape[-1] for tap, t in model.output.items()}
  assert channels[0.125] == {"stem": 8, "block1": 8, "block2": 16, "block3": 32, "block4": 64,
                             "default": 64}
  assert all(channels[0.25][tap] == 2 * c for tap, c in channels[0.125].items())
  assert models.build_model("wide_resnet28_2", image_size=32, width=0.001).output[
      "default"].shape[-1] == 1  # at least one channel


def test_no_biases_and_standard_variable_names():
  model = models.build_model("resnet10_v2", image_size=32, width=TINY)
  names = {v.name for v in model.trainable_weights}
  assert names == {"kernel", "gamma", "beta"}  # weight decay selects by these names


def test_name_prefix_separates_two_backbones():
  helpers.check_name_prefix_separates_two_backbones(
      functools.partial(models.build_model, "resnet10_v2", image_size=16, width=TINY), "target")


@pytest.mark.parametrize("name", ["resnet10_v1", "resnet10_v2"])
def test_zero_init_residual_makes_blocks_start_as_projections(name):
  model = models.build_model(name, image_size=16, width=TINY, zero_init_residual=True)
  last = "block1_unit1_bn2" if name.endswith("v1") else "block1_unit1_conv2"
  weight = model.get_layer(last).weights[0]
  assert weight.name in ("gamma", "kernel") and not np.any(weight.numpy())


def test_sync_batch_norm_under_two_replicas(two_replica_strategy):
  helpers.check_sync_batch_norm_on_two_replicas(
      two_replica_strategy,
      functools.partial(models.build_model, "resnet10_v2", image_size=16, width=TINY), 32)


def test_jit_compiled_forward_and_gradient():
  model = models.build_model("resnet10_v1", image_size=16, width=TINY)

  @tf.function(jit_compile=True)
  def gradients(images):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(model(images, training=True)["default"] ** 2)
    return tape.gradient(loss, model.trainable_variables)

  grads = gradients(tf.random.uniform([2, 16, 16, 3]))
  assert len(grads) == len(model.trainable_variables)
  assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)


def test_forward_multiply_adds_match_the_published_counts():
  assert models.forward_multiply_adds(
      models.build_model("resnet50_v1", image_size=224)) == pytest.approx(4.09e9, rel=0.01)
  assert models.forward_multiply_adds(
      models.build_model("resnet18_v2", image_size=224)) == pytest.approx(1.81e9, rel=0.01)


def test_unknown_model_lists_known_ones():
  with pytest.raises(UserError, match="Unknown model 'resnet51_v2'.*resnet50_v2.*vgg19"):
    models.build_model("resnet51_v2", image_size=32)


def test_bad_arguments_are_user_errors():
  with pytest.raises(UserError, match="width"):
    models.build_model("resnet18_v2", image_size=32, width=0)
  with pytest.raises(UserError, match="CIFAR stem"):
    models.build_model("wide_resnet28_2", image_size=96, cifar_stem=False)
  with pytest.raises(UserError, match="image_size or cifar_stem"):
    models.build_model("resnet18_v2", image_size=None)
  with pytest.raises(UserError, match="patch_net .* cannot also have the CIFAR stem"):
    models.build_model("resnet18_v2", image_size=64, cifar_stem=True, patch_net=True)
  with pytest.raises(UserError, match="Wide-ResNet has no patch-net layout"):
    models.build_model("wide_resnet28_2", image_size=32, patch_net=True)


# suncet's src/wide_resnet.py WRN-28-2 (the PAWS CIFAR-10 encoder), in PyTorch, loaded
# with our weights: the reference for wide_resnet28_2_suncet.
_SUNCET_WRN = r'''
import json, sys
import numpy as np
try:
  import torch
  from torch import nn
  import torch.nn.functional as F
except Exception as e:  # pylint: disable=broad-except
  print(json.dumps({"skip": repr(e)})); sys.exit(0)

class Block(nn.Module):
  def __init__(self, in_planes, planes, stride):
    super().__init__()
    self.bn1 = nn.BatchNorm2d(in_planes)
    self.conv1 = nn.Conv2d(in_planes, planes, 3, padding=1, bias=True)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=True)
    self.shortcut = nn.Sequential()
    if stride != 1 or in_planes != planes:
      self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=True))
  def forward(self, x):
    out = self.conv1(F.relu(self.bn1(x)))
    out = self.conv2(F.relu(self.bn2(out)))
    return out + self.shortcut(x)

class WRN(nn.Module):
  def __init__(self):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=True)
    layers, in_planes = [], 16
    for planes, stride in ((32, 1), (64, 2), (128, 2)):
      blocks = []
      for s in [stride] + [1] * 3:
        blocks.append(Block(in_planes, planes, s)); in_planes = planes
      layers.append(nn.Sequential(*blocks))
    self.layer1, self.layer2, self.layer3 = layers
    self.bn1 = nn.BatchNorm2d(128, momentum=0.99)
  def forward(self, x):
    out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
    return F.adaptive_avg_pool2d(F.relu(self.bn1(out)), 1).flatten(1)

weights = np.load(sys.argv[1])
model = WRN().eval()
def conv(module, name):
  module.weight.data = torch.from_numpy(weights[name + "/kernel"].transpose(3, 2, 0, 1).copy())
  module.bias.data = torch.from_numpy(weights[name + "/bias"].copy())
def bn(module, name):
  for ours, theirs in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                       ("moving_variance", "running_var")):
    getattr(module, theirs).data = torch.from_numpy(weights[name + "/" + ours].copy())
conv(model.conv1, "stem_conv")
for stage, layer in enumerate((model.layer1, model.layer2, model.layer3), start=1):
  for unit, block in enumerate(layer, start=1):
    name = f"block{stage}_unit{unit}"
    bn(block.bn1, name + "_bn1"); conv(block.conv1, name + "_conv1")
    bn(block.bn2, name + "_bn2"); conv(block.conv2, name + "_conv2")
    if len(block.shortcut):
      conv(block.shortcut[0], name + "_proj")
bn(model.bn1, "final_bn")
images = weights["images"]
mean = np.array([0.4914, 0.4822, 0.4465], np.float32)
std = np.array([0.2023, 0.1994, 0.2010], np.float32)
x = torch.from_numpy(((images - mean) / std).transpose(0, 3, 1, 2).copy())
with torch.no_grad():
  print(json.dumps({"features": model(x).numpy().tolist()}))
'''


def test_suncet_wide_resnet_is_suncets_wrn_28_2(tmp_path):
  import importlib.util  # pylint: disable=import-outside-toplevel
  import json  # pylint: disable=import-outside-toplevel
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  if importlib.util.find_spec("torch") is None:
    pytest.skip("torch is not installed (the test extra installs it): it is the reference")
  model = models.build_model("wide_resnet28_2_suncet", image_size=16)
  rng = np.random.default_rng(0)
  for weight in model.weights:  # batch-norm statistics and scales away from the identity
    if weight.path.endswith(("moving_mean", "beta")):
      weight.assign(rng.normal(0, 0.1, weight.shape).astype(np.float32))
    elif weight.path.endswith(("moving_variance", "gamma")):
      weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype(np.float32))
  images = rng.uniform(size=(2, 16, 16, 3)).astype(np.float32)
  arrays = {w.path: w.numpy() for w in model.weights}
  np.savez(tmp_path / "weights.npz", images=images, **arrays)
  run = subprocess.run([sys.executable, "-c", _SUNCET_WRN, str(tmp_path / "weights.npz")],
                       capture_output=True, text=True, timeout=600, check=False)
  assert run.returncode == 0, run.stderr[-3000:]
  result = json.loads(run.stdout.strip().splitlines()[-1])
  if "skip" in result:
    pytest.skip(f"torch does not import: {result['skip']}")
  ours = model(images, training=False)["default"].numpy()
  np.testing.assert_allclose(ours, np.array(result["features"]), rtol=1e-4, atol=1e-4)
  final_bn = model.get_layer("final_bn")
  assert final_bn.momentum == pytest.approx(0.01)
  # PyTorch's default conv initialisation: weights and biases within +-1/sqrt(fan in).
  fresh = models.build_model("wide_resnet28_2_suncet", image_size=16)
  conv = fresh.get_layer("block2_unit1_conv1")
  bound = 1 / np.sqrt(3 * 3 * 32)
  assert np.abs(conv.kernel.numpy()).max() <= bound and np.abs(conv.bias.numpy()).max() <= bound
  assert np.abs(conv.kernel.numpy()).max() > 0.9 * bound
