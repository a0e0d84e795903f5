"""Backbones: Keras 3 models from [0, 1] images to a dict of named representations.

Every model returns float32 `default` (pre-logits, globally pooled) plus taps of
intermediate feature maps (`stem`, `block1`...). Heads belong to the methods.
"""

import contextlib
import re

import keras

from tfssl.errors import UserError
from tfssl.models import layers
from tfssl.models import resnet
from tfssl.models import revnet
from tfssl.models import vgg
from tfssl.models import vit
from tfssl.models import wide_resnet
from tfssl.registry import Registry

MODELS = Registry("model")
resnet.register_all(MODELS)
revnet.register_all(MODELS)
wide_resnet.register_all(MODELS)
vgg.register_all(MODELS)
vit.register_all(MODELS)

# Standardisations of the [0, 1] input a backbone can be built with instead of its own
# ([-1, 1]): "imagenet" is torchvision's, which the PyTorch ImageNet releases (torchvision,
# SwAV, DINO, PAWS, DeiT) were trained with; "raw" leaves the [0, 1] pixels as they are,
# as google-research/simclr and fnc fed their ResNets.
INPUT_NORMALIZATIONS = {"imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
                        "raw": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))}
_STANDARDIZABLE = resnet.MODEL_NAMES + vit.MODEL_NAMES


def build_model(name, *, image_size, width=1.0, sync_bn=False, bn_momentum=0.9,
                bn_epsilon=1e-5, cifar_stem=None, patch_net=False, name_prefix=None,
                zero_init_residual=False, drop_path_rate=0.0, input_normalization="",
                stem_pool_padding=""):
  """Builds a registered backbone.

  Args:
    name: a name in `MODELS`, e.g. "resnet50_v2", "wide_resnet28_2", "vgg19".
    image_size: the side of the images the graph is built for (static shapes); the model
      also runs on other sizes.
    width: multiplier on every channel count (rounded, at least 1).
    sync_bn: cross-replica batch norm.
    bn_momentum, bn_epsilon: Keras BatchNormalization settings (momentum of the moving
      averages, i.e. 1 - PyTorch's momentum).
    cifar_stem: ResNets' 3x3/1 stem without max-pool; None picks it for image_size <= 64.
    patch_net: Revisiting's layout for patch tasks (7x7/1 root conv + max-pool, last stage
      stride 1; see `layers.stem_layout`); VGG is the same network either way.
    name_prefix: prepended (with "_") to every layer and the model name, so that two
      backbones of one method have distinct layer and variable paths.
    zero_init_residual: residual blocks start as the identity (zero last BN gamma in v1,
      zero last conv kernel in pre-activation nets).
    drop_path_rate: stochastic depth of the last block, rising linearly from 0 in the first
      (DINO's student: 0.1); Vision Transformers only. 0 builds the model without it.
    input_normalization: "" (the model's own) or a name in INPUT_NORMALIZATIONS: the
      standardisation the model applies to its [0, 1] input (ResNets and ViTs).
    stem_pool_padding: the ResNets' 3x3/2 stem max-pool: "" pads one pixel on every side
      (torchvision, Revisiting); "same" is TF's SAME, which pads only the bottom and right
      of even-sized inputs (google-research/simclr and fnc), so the pooling windows and
      every later feature sit one pixel apart from the other choice's.

  Returns:
    A Keras model mapping float32 [0, 1] NHWC images to a dict of float32 tensors.
  """
  builder = MODELS.get(name)
  if not width > 0:
    raise UserError(f"Model width multiplier must be positive, got {width}.")
  # Only the ViT builders take it, so the others never see it.
  options = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
  if options and name not in vit.MODEL_NAMES:
    raise UserError(f"drop_path_rate (stochastic depth) applies to the Vision Transformers "
                    f"({', '.join(vit.MODEL_NAMES)}), not {name}; use drop_path_rate=0.")
  if input_normalization:
    if input_normalization not in INPUT_NORMALIZATIONS:
      raise UserError(f"input_normalization={input_normalization!r} is not one of "
                      f"{', '.join(sorted(INPUT_NORMALIZATIONS))} (or empty: the model's own).")
    if name not in _STANDARDIZABLE:
      raise UserError(f"input_normalization={input_normalization!r} applies to the ResNets and "
                      f"Vision Transformers, not {name}; leave it empty.")
    options["mean_std"] = INPUT_NORMALIZATIONS[input_normalization]
  if stem_pool_padding not in resnet.STEM_POOL_PADDINGS:
    raise UserError(f"stem_pool_padding={stem_pool_padding!r} is not one of "
                    f"{resnet.STEM_POOL_PADDINGS}.")
  if stem_pool_padding:
    if name not in resnet.MODEL_NAMES:
      raise UserError(f"stem_pool_padding={stem_pool_padding!r} applies to the ResNets "
                      f"({name} has no such pool); leave it empty.")
    options["stem_pool_padding"] = stem_pool_padding
  ops = layers.LayerFactory(sync_bn=sync_bn, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon,
                            name_prefix=name_prefix)
  return builder(ops, image_size=image_size, width=width, cifar_stem=cifar_stem,
                 patch_net=patch_net, zero_init_residual=zero_init_residual, **options)


@contextlib.contextmanager
def batch_norm_statistics_frozen(model):
  """Calls of `model` traced inside the block normalise with their batch's statistics
  (training mode) but leave the moving averages unchanged.

  VAT's forward passes on perturbed images must not move the statistics used at test
  time; S4L set the BN decay to 1 for them, and so does this (momentum is read when a
  call is traced, so the block must enclose the call, not just its execution).
  """
  norms = [layer for layer in model._flatten_layers(include_self=False, recursive=True)  # pylint: disable=protected-access
           if isinstance(layer, keras.layers.BatchNormalization)]
  momenta = [layer.momentum for layer in norms]
  for layer in norms:
    layer.momentum = 1.0
  try:
    yield
  finally:
    for layer, momentum in zip(norms, momenta):
      layer.momentum = momentum


def freeze_through_block(model, block):
  """Freezes the stem and blocks 1..`block` of a backbone for fine-tuning (SimCLR's
  `fine_tune_after_block`): their variables stop being trainable and their batch norms
  normalise with the moving averages, which stay as they are. -1 freezes nothing; the
  last block (or more, e.g. 4 for ResNets and Wide ResNets alike) freezes everything.

  Blocks are the model's taps (`stem`, `block1`, ...): a layer belongs to the tap its
  name starts with. Returns the names of the frozen layers that hold weights.
  """
  if block < 0:
    return []
  taps = [name for name in model.output if name != "default"]
  numbered = sorted(int(name[len("block"):]) for name in taps
                    if re.fullmatch(r"block\d+", name))
  if not numbered:
    raise UserError(f"Model {model.name} has no block taps (block1, block2...): "
                    "fine_tune_after_block needs one of the ResNet, Wide ResNet or VGG models.")
  if block >= numbered[-1]:
    frozen = list(model.layers)
  else:
    groups = {"stem"} | {f"block{number}" for number in numbered if number <= block}
    frozen = [layer for layer in model.layers if _layer_group(layer.name) in groups]
    if not frozen:
      raise UserError(f"No layer of model {model.name} belongs to {sorted(groups)}: its layer "
                      "names do not start with their block's name.")
  for layer in frozen:
    # Keras runs a BatchNormalization that is not trainable in inference mode.
    layer.trainable = False
  return [layer.name for layer in frozen if layer.weights]


def _layer_group(layer_name):
  """`block2` for `block2_unit1_conv1`, `stem` for `stem_bn`."""
  return layer_name.split("_", 1)[0]


def forward_multiply_adds(model):
  """Multiply-adds of one image's forward pass, from the conv and dense layers' shapes.

  Uses the static shapes of the graph as built (at `image_size`); elementwise ops, BN
  and pooling are left out, as in the usual FLOP counts of conv nets.
  """
  total = 0
  for layer in _leaf_layers(model):
    if isinstance(layer, keras.layers.Conv2D):
      _, height, width, channels = layer.output.shape
      kernel_height, kernel_width, in_channels, _ = layer.kernel.shape
      total += height * width * channels * kernel_height * kernel_width * in_channels
    elif isinstance(layer, keras.layers.Dense):
      total += int(layer.kernel.shape[0]) * int(layer.kernel.shape[1])
  return int(total)


def _leaf_layers(model):
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      yield from _leaf_layers(layer)
    else:
      yield layer


def patch_size(name, image_size):
  """The side of the patches a ViT `name` cuts `image_size`-px images into (None for the
  convolutional models, which take any size)."""
  return vit.patch_size(name, image_size)
