"""VGG19 with batch norm, as "Revisiting self-supervised" uses it.

Five blocks of 3x3 conv + BN + ReLU ([2, 2, 4, 4, 4] convs of 64, 128, 256, 512, 512
channels times the width multiplier; Revisiting's `filters_factor` 8 is width 1), with
a 2x2/2 max-pool between blocks. Taps `block1`..`block5` are the blocks' outputs before
pooling, as in Revisiting.

Unlike Revisiting, there are no fc6/fc7 layers (which it implements as a 7x7 "valid"
conv and a 1x1 conv, so they only fit 224-px inputs): `default` is the global average
of `block5`, like every other backbone here, so the model runs at any input size.
"""

from tfssl.errors import UserError
from tfssl.models import layers as layers_lib

_VGG19 = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))


def vgg19(ops, *, image_size, width=1.0, cifar_stem=None, patch_net=False,
          zero_init_residual=False):
  """Functional VGG19-BN returning float32 {block1..block5, default}."""
  # VGG has no separate stem; the same network serves every size and (as in Revisiting)
  # patch tasks too.
  del cifar_stem, patch_net
  if zero_init_residual:
    raise UserError("vgg19 has no residual blocks; zero_init_residual applies to ResNets.")
  images, x = ops.inputs(image_size)
  taps = {}
  for stage, (num_convs, base) in enumerate(_VGG19, start=1):
    if stage > 1:
      # "same" so odd sizes round up instead of dropping the last row and column.
      x = ops.max_pool(x, 2, 2, padding="same", name=f"block{stage - 1}_pool")
    for index in range(1, num_convs + 1):
      x = ops.conv(x, layers_lib.scaled(base, width), 3, 1, name=f"block{stage}_conv{index}")
      x = ops.batch_norm(x, name=f"block{stage}_bn{index}")
      x = ops.relu(x, name=f"block{stage}_relu{index}")
    taps[f"block{stage}"] = x
  return ops.model(images, taps, x, name="vgg19")


def register_all(registry):
  registry.register("vgg19")(vgg19)
