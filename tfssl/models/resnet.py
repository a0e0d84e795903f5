"""ResNet v1 (post-activation) and v2 (pre-activation) with a width multiplier.

Bottleneck blocks put the stride on the 3x3 convolution (the "v1.5" placement used by
torchvision and TF-Slim's v2 nets), which is what the published 25.6M-parameter
ResNet-50 counts assume.
"""

import keras

from tfssl.models import layers as L

_BLOCKS = {
    10: ("basic", (1, 1, 1, 1)),
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
_BASE_WIDTHS = (64, 128, 256, 512)
_STAGE_STRIDES = (1, 2, 2, 2)


def _v1_block(x, filters, stride, kind, norm, name):
  expansion = 4 if kind == "bottleneck" else 1
  shortcut = x
  if stride != 1 or x.shape[-1] != filters * expansion:
    shortcut = L.conv(filters * expansion, 1, stride, name=f"{name}_proj")(x)
    shortcut = norm(name=f"{name}_proj_bn")(shortcut)
  if kind == "bottleneck":
    y = L.conv(filters, 1, 1, name=f"{name}_conv1")(x)
    y = keras.layers.ReLU()(norm(name=f"{name}_bn1")(y))
    y = L.conv(filters, 3, stride, name=f"{name}_conv2")(y)
    y = keras.layers.ReLU()(norm(name=f"{name}_bn2")(y))
    y = L.conv(filters * 4, 1, 1, name=f"{name}_conv3")(y)
    y = norm(name=f"{name}_bn3")(y)
  else:
    y = L.conv(filters, 3, stride, name=f"{name}_conv1")(x)
    y = keras.layers.ReLU()(norm(name=f"{name}_bn1")(y))
    y = L.conv(filters, 3, 1, name=f"{name}_conv2")(y)
    y = norm(name=f"{name}_bn2")(y)
  return keras.layers.ReLU()(keras.layers.Add()([shortcut, y]))


def _v2_block(x, filters, stride, kind, norm, name):
  expansion = 4 if kind == "bottleneck" else 1
  preact = keras.layers.ReLU()(norm(name=f"{name}_preact_bn")(x))
  shortcut = x
  if stride != 1 or x.shape[-1] != filters * expansion:
    shortcut = L.conv(filters * expansion, 1, stride, name=f"{name}_proj")(preact)
  if kind == "bottleneck":
    y = L.conv(filters, 1, 1, name=f"{name}_conv1")(preact)
    y = keras.layers.ReLU()(norm(name=f"{name}_bn1")(y))
    y = L.conv(filters, 3, stride, name=f"{name}_conv2")(y)
    y = keras.layers.ReLU()(norm(name=f"{name}_bn2")(y))
    y = L.conv(filters * 4, 1, 1, name=f"{name}_conv3")(y)
  else:
    y = L.conv(filters, 3, stride, name=f"{name}_conv1")(preact)
    y = keras.layers.ReLU()(norm(name=f"{name}_bn1")(y))
    y = L.conv(filters, 3, 1, name=f"{name}_conv2")(y)
  return keras.layers.Add()([shortcut, y])


def resnet(depth, version, *, image_size, width=1.0, norm, cifar_stem=None, name=None):
  """Functional ResNet returning {stem, block1..block4, default}."""
  kind, blocks = _BLOCKS[depth]
  if cifar_stem is None:
    cifar_stem = image_size <= 64
  block_fn = _v1_block if version == 1 else _v2_block
  inputs = keras.Input((None, None, 3), name="images")
  x = L.to_minus_one_one(inputs)
  stem_width = L.scaled(64, width)
  if cifar_stem:
    x = L.conv(stem_width, 3, 1, name="stem_conv")(x)
  else:
    x = L.conv(stem_width, 7, 2, name="stem_conv")(x)
  if version == 1:
    x = keras.layers.ReLU()(norm(name="stem_bn")(x))
  if not cifar_stem:
    x = keras.layers.MaxPooling2D(3, 2, padding="same")(x)
  outputs = {"stem": x}
  for stage, (num_blocks, base, stride) in enumerate(zip(blocks, _BASE_WIDTHS, _STAGE_STRIDES)):
    filters = L.scaled(base, width)
    for index in range(num_blocks):
      x = block_fn(x, filters, stride if index == 0 else 1, kind, norm,
                   name=f"block{stage + 1}_unit{index + 1}")
    outputs[f"block{stage + 1}"] = x
  if version == 2:
    x = keras.layers.ReLU()(norm(name="final_bn")(x))
    outputs["block4"] = x
  outputs["default"] = keras.layers.GlobalAveragePooling2D()(x)
  return keras.Model(inputs, L.as_float32(outputs), name=name or f"resnet{depth}_v{version}")


def register_all(registry):
  for depth in _BLOCKS:
    for version in (1, 2):
      def builder(depth=depth, version=version, **kwargs):
        return resnet(depth, version, **kwargs)
      registry.register(f"resnet{depth}_v{version}")(builder)
