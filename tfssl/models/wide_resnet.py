"""Wide-ResNet (Zagoruyko & Komodakis 2016), pre-activation, as FixMatch and PAWS use it.

WRN-d-k: a 3x3 stem conv with 16 channels, then three stages of (d - 4) / 6 basic
blocks with 16k, 32k, 64k channels and strides 1, 2, 2; a final BN + activation before
the global average. WRN-28-2 therefore has widths 16/32/64/128 and 1.47M parameters
(FixMatch's "1.5M"; FixMatch's code writes it as `filters=32 << stage`).

`wide_resnet28_2` etc. differ from the FixMatch code, on purpose:
- Leaky ReLU with slope 0.1 everywhere, as in the FixMatch implementation (the WRN paper
  uses ReLU).
- Where a block changes width, both the shortcut projection and the residual branch
  read the block's pre-activation, as in the WRN paper; FixMatch does this only in
  the first stage (`activate_before_residual`), and its convs have biases.
- The width multiplier scales every channel count, including the stem.

`wide_resnet28_2_suncet` is the WRN-28-2 of PAWS (facebookresearch/suncet
src/wide_resnet.py): ReLU; every conv with a bias and PyTorch's default initialisation;
the stride on a block's second conv; the shortcut (a 1x1 conv, no BN, where the shape
changes) reading the block's raw input; the final batch norm with torch momentum 0.99
(Keras 0.01: its averages follow the last batches); CIFAR-10's mean / std standardisation
(suncet's data_manager) inside the model.

Taps: `stem`, `block1`..`block3` (each stage's last unit output, unnormalised);
`default` is the global average after the final BN + activation.
"""

from tfssl.errors import UserError
from tfssl.models import layers as layers_lib

_SLOPE = 0.1


def _block(ops, x, filters, stride, name, zero_init):
  preact = ops.leaky_relu(ops.batch_norm(x, name=f"{name}_preact_bn"), _SLOPE,
                          name=f"{name}_preact_relu")
  shortcut = x
  if stride != 1 or x.shape[-1] != filters:
    shortcut = ops.conv(preact, filters, 1, stride, name=f"{name}_proj")
  y = ops.conv(preact, filters, 3, stride, name=f"{name}_conv1")
  y = ops.leaky_relu(ops.batch_norm(y, name=f"{name}_bn1"), _SLOPE, name=f"{name}_relu1")
  y = ops.conv(y, filters, 3, 1, name=f"{name}_conv2", zero_init=zero_init)
  return ops.add(shortcut, y, name=f"{name}_add")


# suncet's data_manager: transforms.Normalize of CIFAR-10.
_CIFAR10_MEAN_STD = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
# suncet's final nn.BatchNorm2d(momentum=0.99), in Keras' sense.
_SUNCET_FINAL_BN_MOMENTUM = 0.01


def _suncet_block(ops, x, filters, stride, name, zero_init):
  """suncet's WideBasicBlock: conv1(relu(bn1(x))), conv2(relu(bn2(.))) with the stride,
  plus the shortcut of x itself."""
  shortcut = x
  if stride != 1 or x.shape[-1] != filters:
    shortcut = ops.conv(x, filters, 1, stride, name=f"{name}_proj", torch_init=True)
  y = ops.relu(ops.batch_norm(x, name=f"{name}_bn1"), name=f"{name}_relu1")
  y = ops.conv(y, filters, 3, 1, name=f"{name}_conv1", torch_init=True)
  y = ops.relu(ops.batch_norm(y, name=f"{name}_bn2"), name=f"{name}_relu2")
  if zero_init:
    y = ops.conv(y, filters, 3, stride, name=f"{name}_conv2", zero_init=True)
  else:
    y = ops.conv(y, filters, 3, stride, name=f"{name}_conv2", torch_init=True)
  return ops.add(shortcut, y, name=f"{name}_add")


def wide_resnet(depth, widen, ops, *, image_size, width=1.0, cifar_stem=None, patch_net=False,
                zero_init_residual=False, suncet=False):
  """Functional WRN-depth-widen returning float32 {stem, block1..block3, default};
  `suncet`: PAWS's variant (see the module docstring)."""
  if (depth - 4) % 6 or depth < 10:
    raise UserError(f"Wide-ResNet depth must be 6n+4 (10, 16, 22, 28, ...), got {depth}.")
  if cifar_stem is False:
    raise UserError("Wide-ResNet has only the CIFAR stem (3x3, stride 1); leave cifar_stem unset.")
  if patch_net:
    raise UserError("Wide-ResNet has no patch-net layout; for Jigsaw / relative patch location "
                    "use a ResNet, RevNet or VGG, or --config.patch_net=false.")
  blocks_per_stage = (depth - 4) // 6
  images, x = ops.inputs(image_size, mean_std=_CIFAR10_MEAN_STD if suncet else None)
  x = ops.conv(x, layers_lib.scaled(16, width), 3, 1, name="stem_conv", torch_init=suncet)
  taps = {"stem": x}
  block = _suncet_block if suncet else _block
  for stage, (base, stride) in enumerate(zip((16, 32, 64), (1, 2, 2)), start=1):
    filters = layers_lib.scaled(base * widen, width)
    for unit in range(1, blocks_per_stage + 1):
      x = block(ops, x, filters, stride if unit == 1 else 1, name=f"block{stage}_unit{unit}",
                zero_init=zero_init_residual)
    taps[f"block{stage}"] = x
  if suncet:
    x = ops.relu(ops.batch_norm(x, name="final_bn", momentum=_SUNCET_FINAL_BN_MOMENTUM),
                 name="final_relu")
  else:
    x = ops.leaky_relu(ops.batch_norm(x, name="final_bn"), _SLOPE, name="final_relu")
  suffix = "_suncet" if suncet else ""
  return ops.model(images, taps, x, name=f"wide_resnet{depth}_{widen}{suffix}")


# WRN-28-2 (CIFAR-10/SVHN in FixMatch, PAWS), WRN-28-8 (CIFAR-100 in FixMatch),
# WRN-28-10 (the WRN paper's headline model). Other sizes: call `wide_resnet` directly.
_REGISTERED = ((28, 2), (28, 8), (28, 10))


def register_all(registry):
  for depth, widen in _REGISTERED:
    def builder(ops, depth=depth, widen=widen, **kwargs):
      return wide_resnet(depth, widen, ops, **kwargs)
    registry.register(f"wide_resnet{depth}_{widen}")(builder)
  registry.register("wide_resnet28_2_suncet")(
      lambda ops, **kwargs: wide_resnet(28, 2, ops, suncet=True, **kwargs))
