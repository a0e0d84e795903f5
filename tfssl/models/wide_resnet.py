"""Wide-ResNet (Zagoruyko & Komodakis 2016), pre-activation, as FixMatch and PAWS use it.

WRN-d-k has (d - 4) / 6 blocks per stage and widths 16, 16k, 32k, 64k; leaky ReLU
with slope 0.1 follows the FixMatch/PAWS implementations.
"""

import keras

from tfssl.models import layers as L


def _activation(x):
  return keras.layers.LeakyReLU(negative_slope=0.1)(x)


def _block(x, filters, stride, norm, name):
  preact = _activation(norm(name=f"{name}_preact_bn")(x))
  shortcut = x
  if stride != 1 or x.shape[-1] != filters:
    shortcut = L.conv(filters, 1, stride, name=f"{name}_proj")(preact)
  y = L.conv(filters, 3, stride, name=f"{name}_conv1")(preact)
  y = _activation(norm(name=f"{name}_bn1")(y))
  y = L.conv(filters, 3, 1, name=f"{name}_conv2")(y)
  return keras.layers.Add()([shortcut, y])


def wide_resnet(depth, widen, *, image_size, width=1.0, norm, cifar_stem=None, name=None):
  """Functional WRN returning {stem, block1..block3, default}."""
  del cifar_stem  # WRN is a 32-px network: its stem is always a 3x3 stride-1 conv.
  if (depth - 4) % 6:
    raise ValueError(f"Wide-ResNet depth must be 6n+4, got {depth}.")
  blocks_per_stage = (depth - 4) // 6
  inputs = keras.Input((None, None, 3), name="images")
  x = L.to_minus_one_one(inputs)
  x = L.conv(L.scaled(16, width), 3, 1, name="stem_conv")(x)
  outputs = {"stem": x}
  for stage, (base, stride) in enumerate(zip((16, 32, 64), (1, 2, 2))):
    filters = L.scaled(base * widen, width)
    for index in range(blocks_per_stage):
      x = _block(x, filters, stride if index == 0 else 1, norm,
                 name=f"block{stage + 1}_unit{index + 1}")
    outputs[f"block{stage + 1}"] = x
  x = _activation(norm(name="final_bn")(x))
  outputs["block3"] = x
  outputs["default"] = keras.layers.GlobalAveragePooling2D()(x)
  return keras.Model(inputs, L.as_float32(outputs), name=name or f"wide_resnet{depth}_{widen}")


def register_all(registry):
  registry.register("wide_resnet28_2")(
      lambda **kwargs: wide_resnet(28, 2, **kwargs))
