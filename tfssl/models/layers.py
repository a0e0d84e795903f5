"""Layer factory shared by the backbones: BN settings, name prefix, padding, outputs.

Blocks are written functionally (`y = ops.conv(x, ...)`), and every layer gets an
explicit name so that two backbones of one method (an online network and its EMA
teacher) differ only by `name_prefix`, and checkpoints and summaries read well.
"""

import dataclasses

import keras

from tfssl.errors import UserError


def _conv_init():
  """He-normal (fan out, truncated), as torchvision and the TF official ResNets; the
  convolutions have no bias since BN follows them. A new initializer per layer: an
  unseeded Keras 3 initializer draws its seed when it is made, so one made at import time
  gave every process different weights whatever `keras.utils.set_random_seed` said."""
  return keras.initializers.VarianceScaling(2.0, "fan_out", "truncated_normal")


_STAGE_STRIDES = (1, 2, 2, 2)


@dataclasses.dataclass(frozen=True)
class StemLayout:
  """Where a ResNet / RevNet downsamples: the root block and the first unit of each stage.

  `cifar`: a 3x3/1 root conv without max-pool; otherwise a 7x7 root conv of stride
  `root_stride` followed by a 3x3/2 max-pool.
  """
  cifar: bool
  root_stride: int
  stage_strides: tuple


def stem_layout(image_size, cifar_stem=None, patch_net=False):
  """The layout of a ResNet / RevNet.

  ImageNet: 7x7/2 conv + pool, stages 1,2,2,2 (32x down). CIFAR (chosen for images <= 64
  px unless `cifar_stem` says otherwise): 3x3/1 conv, stages 1,2,2,2 (8x down).
  `patch_net`: Revisiting's Jigsaw / relative-patch-location nets (`root_conv_stride=1,
  strides=(2, 2, 1)`): 7x7/1 conv + pool, stages 1,2,2,1, so a 64-px patch ends at 8x8.
  """
  if patch_net:
    if cifar_stem:
      raise UserError("patch_net uses Revisiting's 7x7/1 root conv and max-pool; it cannot "
                      "also have the CIFAR stem.")
    return StemLayout(cifar=False, root_stride=1, stage_strides=(1, 2, 2, 1))
  if cifar_stem is None:
    if image_size is None:
      raise UserError("Give image_size or cifar_stem: the stem is chosen by image size.")
    cifar_stem = image_size <= 64
  return StemLayout(cifar=cifar_stem, root_stride=1 if cifar_stem else 2,
                    stage_strides=_STAGE_STRIDES)


def scaled(channels, width):
  """Channels after the width multiplier: rounded, at least one."""
  return max(int(round(channels * width)), 1)


@keras.saving.register_keras_serializable("tfssl")
class Float32(keras.layers.Layer):
  """Representations leave the model as float32 whatever the global dtype policy."""

  def __init__(self, **kwargs):
    kwargs["dtype"] = "float32"
    super().__init__(**kwargs)

  def call(self, x):
    return keras.ops.cast(x, "float32")


class LayerFactory:
  """Makes the layers of one backbone.

  Layers follow the global dtype policy (Keras keeps BN statistics in float32);
  `sync_bn` makes BN cross-replica.
  """

  def __init__(self, *, sync_bn=False, bn_momentum=0.9, bn_epsilon=1e-5, name_prefix=None):
    if name_prefix is not None and (not name_prefix or "/" in name_prefix):
      raise UserError(f"name_prefix must be a non-empty string without '/', got {name_prefix!r}.")
    self.sync_bn = sync_bn
    self.bn_momentum = bn_momentum
    self.bn_epsilon = bn_epsilon
    self.name_prefix = name_prefix

  def name(self, name):
    return f"{self.name_prefix}_{name}" if self.name_prefix else name

  def conv(self, x, filters, kernel_size, stride=1, *, name, zero_init=False, torch_init=False):
    """Conv; strided convs pad symmetrically (TF-Slim / torchvision style).

    Keras' "same" padding pads only at the end for even inputs and stride 2, which
    shifts every strided layer by half a pixel and makes the result depend on the
    input's parity; fixed padding + "valid" does neither. `torch_init`: with a bias and
    PyTorch's default Conv2d initialisation (kernel and bias uniform in +-1/sqrt(fan in):
    kaiming_uniform with a = sqrt(5)), for networks ported from PyTorch code.
    """
    padding = "same"
    if stride > 1 and kernel_size > 1:
      x = self.pad(x, kernel_size, name=f"{name}_pad")
      padding = "valid"
    if torch_init:
      bound = (x.shape[-1] * kernel_size * kernel_size) ** -0.5
      return keras.layers.Conv2D(
          filters, kernel_size, strides=stride, padding=padding, use_bias=True,
          kernel_initializer=keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform"),
          bias_initializer=keras.initializers.RandomUniform(-bound, bound),
          name=self.name(name))(x)
    initializer = "zeros" if zero_init else _conv_init()
    return keras.layers.Conv2D(
        filters, kernel_size, strides=stride, padding=padding, use_bias=False,
        kernel_initializer=initializer, name=self.name(name))(x)

  def pad(self, x, kernel_size, *, name):
    total = kernel_size - 1
    return keras.layers.ZeroPadding2D((total // 2, total - total // 2), name=self.name(name))(x)

  def batch_norm(self, x, *, name, zero_init=False, momentum=None):
    """`momentum` overrides the factory's (Keras' sense: of the moving averages)."""
    return keras.layers.BatchNormalization(
        momentum=self.bn_momentum if momentum is None else momentum, epsilon=self.bn_epsilon,
        synchronized=self.sync_bn,
        gamma_initializer="zeros" if zero_init else "ones", name=self.name(name))(x)

  def relu(self, x, *, name):
    return keras.layers.ReLU(name=self.name(name))(x)

  def leaky_relu(self, x, slope, *, name):
    return keras.layers.LeakyReLU(negative_slope=slope, name=self.name(name))(x)

  def add(self, x, y, *, name):
    return keras.layers.Add(name=self.name(name))([x, y])

  def max_pool(self, x, size, stride, *, padding, name):
    return keras.layers.MaxPooling2D(size, stride, padding=padding, name=self.name(name))(x)

  def inputs(self, image_size, mean_std=None):
    """[0, 1] images in, [-1, 1] to the first conv (or, with `mean_std`, ((r, g, b) means,
    (r, g, b) standard deviations), the standardised images)."""
    images = keras.Input((image_size, image_size, 3), name=self.name("images"))
    if mean_std is not None:
      mean, std = mean_std
      return images, keras.layers.Rescaling(
          [1 / s for s in std], offset=[-m / s for m, s in zip(mean, std)],
          name=self.name("standardize"))(images)
    return images, keras.layers.Rescaling(2.0, offset=-1.0, name=self.name("to_minus_one_one"))(
        images)

  def model(self, images, taps, final, *, name):
    """Functional model returning float32 {**taps, "default": global average of `final`}."""
    outputs = {tap: Float32(name=self.name(f"out_{tap}"))(value) for tap, value in taps.items()}
    # Pooling in float32: a bf16 mean over many positions loses precision.
    outputs["default"] = keras.layers.GlobalAveragePooling2D(
        dtype="float32", name=self.name("out_default"))(final)
    model = keras.Model(images, outputs, name=self.name(name))
    # The graph is built at `image_size` so static shapes (taps, FLOP counts) are
    # known, but a conv net runs at any size: keep only the rank and channel check
    # of the input spec (Keras would otherwise reject other spatial sizes).
    model.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: 3})
    return model
