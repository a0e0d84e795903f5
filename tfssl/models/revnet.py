"""RevNet-50: Revisiting's reversible ResNet (Kolesnikov et al. 2019), its best Rotation net.

The architecture of google/revisiting-self-supervised `models/resnet.py: revnet`:

* Root: a 7x7/2 conv straight to stage 1's width (256 x width), without BN or ReLU (it
  is a learned projection to enough channels for the reversible units), then the 3x3/2
  max-pool. For small images the CIFAR stem of resnet.py (3x3/1 conv, no pool) is chosen
  the same way.
* Unit: an additive coupling (Dinh et al. 2014, Gomez et al. 2017) on the channel
  halves, [x1, x2] -> [x2, x1 + F(x2)], with F a pre-activation bottleneck without
  shortcut, BN-ReLU-1x1-BN-ReLU-3x3-BN-ReLU-1x1, 1/4 of the half's channels inside.
  Every unit swaps the halves, so two consecutive units are one reversible block of
  Gomez et al. with F and G: y1 = x1 + F(x2), y2 = x2 + G(y1). Units are invertible:
  see `invert_unit`.
* Stages of 3, 4, 6, 3 units (16 units of 3 convs + stem + head: "50", as for ResNet-50)
  at a constant width of 256, 512, 1024, 2048 x width
  (stage 1 stride 1). Between stages a 2x2/2 average pool halves the resolution and
  zero channels (half the current count on each side) double the width; this transition
  is the only non-invertible step and has no parameters.
* A final BN + ReLU before the global average (Revisiting's configs run with
  `--last_relu True`).

Revisiting's `filters_factor` f is width f / 4: its Rotation config's 16 is width 4.
Each unit convolves only half of the channels through a narrow bottleneck, so the net
is light for its width: 5.41M parameters at width 1 (ResNet-50 v2: 25.5M), 85.8M at
width 4, almost all in the units' convs (~ width^2).

Gradients are plain backprop, which keeps every unit's activations as the original did;
the memory-saving recomputation of the inputs from the outputs in the backward pass
(Gomez et al.) is not implemented.

Taps as in resnet.py: `stem` after the root block, `blockN` the output of stage N's
last unit (before the transition, and for block4 before the final BN).
"""

import keras

from tfssl.models import layers as layers_lib

_UNITS = {50: (3, 4, 6, 3)}
_STAGE1_WIDTH = 256
_BOTTLENECK_RATIO = 4
_RESIDUAL_CONVS = 3


@keras.saving.register_keras_serializable("tfssl")
class ChannelHalves(keras.layers.Layer):
  """Splits NHWC features into the first and second half of their channels."""

  def call(self, x):
    return keras.ops.split(x, 2, axis=-1)


@keras.saving.register_keras_serializable("tfssl")
class DoubleChannels(keras.layers.Layer):
  """Doubles the channels with zeros, half the input's count before and half after."""

  def call(self, x):
    channels = x.shape[-1]
    return keras.ops.pad(x, [[0, 0], [0, 0], [0, 0], [channels // 2, channels - channels // 2]])


def _residual_function(ops, x, bottleneck, name, zero_init):
  half = x.shape[-1]
  convs = ((bottleneck, 1), (bottleneck, 3), (half, 1))
  for index, (channels, kernel_size) in enumerate(convs, start=1):
    x = ops.batch_norm(x, name=f"{name}_bn{index}")
    x = ops.relu(x, name=f"{name}_relu{index}")
    # A zero last conv makes the unit start as a swap of the halves.
    x = ops.conv(x, channels, kernel_size, name=f"{name}_conv{index}",
                 zero_init=zero_init and index == len(convs))
  return x


def _unit(ops, x, name, zero_init):
  x1, x2 = ChannelHalves(name=ops.name(f"{name}_split"))(x)
  bottleneck = max(x2.shape[-1] // _BOTTLENECK_RATIO, 1)
  y1 = ops.add(x1, _residual_function(ops, x2, bottleneck, name, zero_init), name=f"{name}_add")
  return keras.layers.Concatenate(name=ops.name(f"{name}_concat"))([x2, y1])


def residual_function(model, unit):
  """F of a unit of a built RevNet, reusing its layers.

  Args:
    model: a model built by `revnet`.
    unit: the unit's layer-name stem, e.g. "block2_unit1" ("x_block2_unit1" for a model
      built with name_prefix "x").

  Returns:
    A callable `(x2, training=False) -> F(x2)`.
  """
  layers = [model.get_layer(f"{unit}_{kind}{index}")
            for index in range(1, _RESIDUAL_CONVS + 1) for kind in ("bn", "relu", "conv")]

  def apply(x, training=False):
    for layer in layers:
      x = layer(x, training=training)
    return x

  return apply


def invert_unit(model, unit, outputs, training=False):
  """A unit's inputs from its outputs: [x2, y1] -> [y1 - F(x2), x2].

  `training` must be what the forward pass used: F's batch norm is part of F.
  """
  carried, coupled = keras.ops.split(outputs, 2, axis=-1)
  x1 = coupled - residual_function(model, unit)(carried, training=training)
  return keras.ops.concatenate([x1, carried], axis=-1)


def revnet(units_per_stage, ops, *, image_size, width=1.0, cifar_stem=None, patch_net=False,
           zero_init_residual=False, name="revnet"):
  """Functional RevNet returning float32 {stem, block1..block4, default}.

  Args:
    units_per_stage: units in each of the four stages, (3, 4, 6, 3) for RevNet-50.
    ops: a `layers.LayerFactory`.
    image_size, width, cifar_stem, patch_net, zero_init_residual: as in
      `models.build_model`.
    name: the model's name (before ops' name prefix).
  """
  layout = layers_lib.stem_layout(image_size, cifar_stem, patch_net)
  images, x = ops.inputs(image_size)
  # Even, so the units can split the channels in halves.
  stem_width = 2 * layers_lib.scaled(_STAGE1_WIDTH // 2, width)
  if layout.cifar:
    x = ops.conv(x, stem_width, 3, 1, name="stem_conv")
  else:
    x = ops.conv(x, stem_width, 7, layout.root_stride, name="stem_conv")
    x = ops.pad(x, 3, name="stem_pool_pad")
    x = ops.max_pool(x, 3, 2, padding="valid", name="stem_pool")
  taps = {"stem": x}
  for stage, num_units in enumerate(units_per_stage, start=1):
    if stage > 1:
      if layout.stage_strides[stage - 1] > 1:
        # "same": ceil(size / 2) for odd sizes, averaging only the positions inside.
        x = keras.layers.AveragePooling2D(2, 2, padding="same",
                                          name=ops.name(f"block{stage}_pool"))(x)
      x = DoubleChannels(name=ops.name(f"block{stage}_widen"))(x)
    for unit in range(1, num_units + 1):
      x = _unit(ops, x, name=f"block{stage}_unit{unit}", zero_init=zero_init_residual)
    taps[f"block{stage}"] = x
  x = ops.relu(ops.batch_norm(x, name="final_bn"), name="final_relu")
  return ops.model(images, taps, x, name=name)


def register_all(registry):
  for depth, units_per_stage in _UNITS.items():
    def builder(ops, depth=depth, units_per_stage=units_per_stage, **kwargs):
      return revnet(units_per_stage, ops, name=f"revnet{depth}", **kwargs)
    registry.register(f"revnet{depth}")(builder)
