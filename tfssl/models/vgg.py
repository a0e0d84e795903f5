"""VGG19 with batch norm, as "Revisiting self-supervised" uses it.

The fully connected layers of the classification VGG are left out: `default` is the
global average of the last convolutional block, like every other backbone here.
"""

import keras

from tfssl.models import layers as L

_VGG19 = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))


def vgg19(*, image_size, width=1.0, norm, cifar_stem=None, name=None):
  """Functional VGG19-BN returning {block1..block5, default}."""
  del cifar_stem
  inputs = keras.Input((None, None, 3), name="images")
  x = L.to_minus_one_one(inputs)
  outputs = {}
  for stage, (num_convs, base) in enumerate(_VGG19):
    for index in range(num_convs):
      x = L.conv(L.scaled(base, width), 3, 1, name=f"block{stage + 1}_conv{index + 1}")(x)
      x = keras.layers.ReLU()(norm(name=f"block{stage + 1}_bn{index + 1}")(x))
    x = keras.layers.MaxPooling2D(2, 2, padding="same")(x)
    outputs[f"block{stage + 1}"] = x
  outputs["default"] = keras.layers.GlobalAveragePooling2D()(x)
  return keras.Model(inputs, L.as_float32(outputs), name=name or "vgg19")


def register_all(registry):
  registry.register("vgg19")(vgg19)
