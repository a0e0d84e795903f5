"""ResNet v1 (post-activation, He et al. 2015) and v2 (pre-activation, He et al. 2016).

Widths 64/128/256/512 per stage (x4 at the output of bottleneck blocks) times the width
multiplier; Revisiting's `filters_factor` 4/8/12/16 is width 1/2/3/4. Stage strides
1, 2, 2, 2 (1, 2, 2, 1 in `patch_net`, see layers.stem_layout). Bottleneck blocks put
the stride on the 3x3 convolution, not on the first 1x1 ("ResNet v1.5", as torchvision,
TF official and Revisiting do): a strided 1x1 conv drops three quarters of its input. The
published 25.6M parameters of ResNet-50 count this architecture (the placement does not
change parameter counts).

Taps follow Revisiting: `stem` after the root block, `blockN` the output of the last
unit of stage N. In v2 the residual stream is unnormalised, so `default` is the global
average after a final BN + ReLU.
"""

from tfssl.models import layers as layers_lib

_BLOCKS = {
    10: ("basic", (1, 1, 1, 1)),
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
_BASE_WIDTHS = (64, 128, 256, 512)
_EXPANSION = {"basic": 1, "bottleneck": 4}
MODEL_NAMES = tuple(f"resnet{depth}_v{version}" for depth in _BLOCKS for version in (1, 2))


def _residual_branch(ops, x, filters, stride, kind, name, *, post_activation, zero_init):
  """conv-BN-ReLU-...-conv[-BN]: v1 ends with BN (post-activation), v2 with the conv.

  In v2 each conv after the first is preceded by BN + ReLU; the first one's input is
  already the block's pre-activation.
  """
  if kind == "bottleneck":
    convs = ((filters, 1, 1), (filters, 3, stride), (filters * 4, 1, 1))
  else:
    convs = ((filters, 3, stride), (filters, 3, 1))
  for index, (channels, kernel_size, conv_stride) in enumerate(convs, start=1):
    last = index == len(convs)
    if index > 1:
      x = ops.batch_norm(x, name=f"{name}_bn{index - 1}")
      x = ops.relu(x, name=f"{name}_relu{index - 1}")
    x = ops.conv(x, channels, kernel_size, conv_stride, name=f"{name}_conv{index}",
                 zero_init=zero_init and last and not post_activation)
  if post_activation:
    # Zero gamma in the last BN makes the block start as the identity (Goyal et al. 2017).
    x = ops.batch_norm(x, name=f"{name}_bn{len(convs)}", zero_init=zero_init)
  return x


def _v1_block(ops, x, filters, stride, kind, name, zero_init):
  out_channels = filters * _EXPANSION[kind]
  shortcut = x
  if stride != 1 or x.shape[-1] != out_channels:
    shortcut = ops.conv(x, out_channels, 1, stride, name=f"{name}_proj")
    shortcut = ops.batch_norm(shortcut, name=f"{name}_proj_bn")
  y = _residual_branch(ops, x, filters, stride, kind, name, post_activation=True,
                       zero_init=zero_init)
  return ops.relu(ops.add(shortcut, y, name=f"{name}_add"), name=f"{name}_out_relu")


def _v2_block(ops, x, filters, stride, kind, name, zero_init):
  out_channels = filters * _EXPANSION[kind]
  preact = ops.relu(ops.batch_norm(x, name=f"{name}_preact_bn"), name=f"{name}_preact_relu")
  shortcut = x
  if stride != 1 or x.shape[-1] != out_channels:
    shortcut = ops.conv(preact, out_channels, 1, stride, name=f"{name}_proj")
  # Zero-initialising the last conv is the pre-activation counterpart of a zero BN gamma
  # (timm / BiT `zero_init_last`).
  y = _residual_branch(ops, preact, filters, stride, kind, name, post_activation=False,
                       zero_init=zero_init)
  return ops.add(shortcut, y, name=f"{name}_add")


STEM_POOL_PADDINGS = ("", "same")


def resnet(depth, version, ops, *, image_size, width=1.0, cifar_stem=None, patch_net=False,
           zero_init_residual=False, mean_std=None, stem_pool_padding=""):
  """Functional ResNet returning float32 {stem, block1..block4, default} (`mean_std`: see
  `LayerFactory.inputs`; `stem_pool_padding`: see `models.build_model`)."""
  kind, blocks = _BLOCKS[depth]
  layout = layers_lib.stem_layout(image_size, cifar_stem, patch_net)
  block_fn = _v1_block if version == 1 else _v2_block
  images, x = ops.inputs(image_size, mean_std)
  stem_width = layers_lib.scaled(64, width)
  if layout.cifar:
    x = ops.conv(x, stem_width, 3, 1, name="stem_conv")
  else:
    x = ops.conv(x, stem_width, 7, layout.root_stride, name="stem_conv")
  if version == 1:
    x = ops.relu(ops.batch_norm(x, name="stem_bn"), name="stem_relu")
  if not layout.cifar and stem_pool_padding == "same":
    x = ops.max_pool(x, 3, 2, padding="same", name="stem_pool")
  elif not layout.cifar:
    # Zero padding, as Revisiting / TF-Slim: after the v1 ReLU it equals -inf padding.
    x = ops.pad(x, 3, name="stem_pool_pad")
    x = ops.max_pool(x, 3, 2, padding="valid", name="stem_pool")
  taps = {"stem": x}
  stages = zip(blocks, _BASE_WIDTHS, layout.stage_strides)
  for stage, (num_blocks, base, stride) in enumerate(stages, start=1):
    filters = layers_lib.scaled(base, width)
    for unit in range(1, num_blocks + 1):
      x = block_fn(ops, x, filters, stride if unit == 1 else 1, kind,
                   name=f"block{stage}_unit{unit}", zero_init=zero_init_residual)
    taps[f"block{stage}"] = x
  if version == 2:
    x = ops.relu(ops.batch_norm(x, name="final_bn"), name="final_relu")
  return ops.model(images, taps, x, name=f"resnet{depth}_v{version}")


def register_all(registry):
  for depth in _BLOCKS:
    for version in (1, 2):
      def builder(ops, depth=depth, version=version, **kwargs):
        return resnet(depth, version, ops, **kwargs)
      registry.register(f"resnet{depth}_v{version}")(builder)
