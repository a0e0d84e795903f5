"""Vision Transformers (Dosovitskiy et al. 2021) as DINO and Suave/Daino use them.

Patch embedding (a p x p conv of stride p), a class token, learned position embeddings,
pre-norm blocks (LayerNorm -> multi-head self-attention -> residual, LayerNorm -> MLP of
4x the width with GELU -> residual), a final LayerNorm. `default` is the class token's
features after it; taps are `stem` (the patch embeddings) and `block1`..`blockN` (each
block's patch tokens), as [h, w, C] maps. Initialisation as DINO's vision_transformer.py:
truncated normal (std 0.02) weights, zero biases, unit LayerNorm scales, eps 1e-6.

Images other than the built size work: the position embeddings of the patch grid are
resized bicubically to the input's grid (DINO's `interpolate_pos_encoding`), which its
multi-crop's 96-px crops need. For a static grid the resize is a product with fixed
interpolation matrices (XLA, and so TPUs, have no bicubic-resize kernel). Images of at
most 64 px (unless `cifar_stem` says otherwise) get 4-px patches, as ViTs on CIFAR
usually do; ImageNet sizes get the model's own patch size.

Stochastic depth (`drop_path_rate`, DINO's student: 0.1) drops each block's attention and
MLP branches per sample in training, at a rate rising linearly from 0 in the first block to
`drop_path_rate` in the last, and scales kept branches by 1 / keep probability.
"""

import math
import zlib

import keras
import numpy as np
import tensorflow as tf

from tfssl.errors import UserError
from tfssl.models import layers as layers_lib

_LN_EPSILON = 1e-6
_SMALL_IMAGE_PATCH = 4


def _weights_init():
  # A new initializer each time: see layers._conv_init.
  return keras.initializers.TruncatedNormal(stddev=0.02)


def _keys_cubic(distance, a=-0.5):
  distance = abs(distance)
  if distance <= 1:
    return ((a + 2) * distance - (a + 3)) * distance * distance + 1
  if distance < 2:
    return ((a * distance - 5 * a) * distance + 8 * a) * distance - 4 * a
  return 0.0


def bicubic_resize_matrix(in_size, out_size):
  """[out_size, in_size] weights of tf.image.resize's bicubic interpolation along one axis
  (Keys' kernel a = -0.5, half-pixel centres, taps outside the input dropped and the rest
  renormalised), computed exactly rather than from TF's 1024-entry table."""
  matrix = np.zeros((out_size, in_size), np.float32)
  scale = in_size / out_size
  for row in range(out_size):
    center = (row + 0.5) * scale - 0.5
    first = math.floor(center) - 1
    taps = {index: _keys_cubic(center - index) for index in range(first, first + 4)
            if 0 <= index < in_size}
    total = sum(taps.values())
    for index, weight in taps.items():
      matrix[row, index] = weight / total
  return matrix


class ClassTokenAndPositions(keras.layers.Layer):
  """[B, h, w, C] patch embeddings -> [B, 1 + h*w, C] tokens with position embeddings
  (learnt for the built grid, resized to other grids)."""

  def __init__(self, grid, **kwargs):
    super().__init__(**kwargs)
    self.grid = grid

  def build(self, input_shape):
    channels = input_shape[-1]
    self.class_token = self.add_weight(name="class_token", shape=(1, 1, channels),
                                       initializer=_weights_init())
    self.positions = self.add_weight(name="positions",
                                     shape=(1, 1 + self.grid * self.grid, channels),
                                     initializer=_weights_init())

  def grid_positions(self, height, width):
    channels = self.positions.shape[-1]
    grid = tf.reshape(self.positions[:, 1:], [1, self.grid, self.grid, channels])
    if isinstance(height, int) and isinstance(width, int):
      if height == width == self.grid:
        return tf.reshape(grid, [1, -1, channels])
      rows = tf.constant(bicubic_resize_matrix(self.grid, height), grid.dtype)
      columns = tf.constant(bicubic_resize_matrix(self.grid, width), grid.dtype)
      resized = tf.einsum("hi,bijc,wj->bhwc", rows, grid, columns)
    else:
      resized = tf.image.resize(grid, [height, width], method="bicubic")
    return tf.reshape(resized, [1, -1, channels])

  def call(self, patches):
    shape = tf.shape(patches)
    height = patches.shape[1] if patches.shape[1] is not None else shape[1]
    width = patches.shape[2] if patches.shape[2] is not None else shape[2]
    channels = patches.shape[-1]
    tokens = tf.reshape(patches, [shape[0], -1, channels])
    class_tokens = tf.tile(tf.cast(self.class_token, tokens.dtype), [shape[0], 1, 1])
    positions = tf.concat([self.positions[:, :1], self.grid_positions(height, width)], axis=1)
    return tf.concat([class_tokens, tokens], axis=1) + tf.cast(positions, tokens.dtype)


class TokensToMap(keras.layers.Layer):
  """[B, 1 + h*w, C] tokens and the [B, h, w, C] patch map -> the patch tokens as a map."""

  def call(self, inputs):
    tokens, patches = inputs
    shape = tf.shape(patches)
    return tf.reshape(tokens[:, 1:], [shape[0], shape[1], shape[2], tokens.shape[-1]])


class ClassToken(keras.layers.Layer):

  def call(self, tokens):
    return tokens[:, 0]


class DropPathAdd(keras.layers.Layer):
  """[x, branch] -> x + the branch with stochastic depth: in training, each sample's branch
  is zeroed with probability `rate`, else divided by 1 - `rate` (DINO's `drop_path`);
  x + branch otherwise.

  It takes the place of the block's Add rather than adding a layer before it: a functional
  model checkpoints its layers by their index in the graph, so an extra layer would shift
  the checkpoint entries of every later one and a run with stochastic depth could not
  restore (or `--init_from`) one without, nor the other way round.

  Masks are stateless draws from a Keras SeedGenerator (seeded from `seed`, advanced by
  every training call, so XLA compiles the draw and runs are reproducible), with the replica
  id folded in so each replica drops other samples. The generator's state is no weight:
  Keras leaves it out of `weights` and TF checkpoints do not track it, so a resumed run
  draws the masks of its first steps again (harmless: other images, other crops).
  """

  def __init__(self, rate, seed, **kwargs):
    super().__init__(**kwargs)
    if not 0 <= rate < 1:
      raise ValueError(f"A drop path rate must be in [0, 1), got {rate}.")
    self.rate = float(rate)
    self.seed = int(seed)
    # An explicit name: the state's path must differ between layers (the Polyak averages
    # of `--init_from` key every variable of a model by its path).
    self.seed_generator = keras.random.SeedGenerator(self.seed, name=f"{self.name}_seed")

  def drop_path(self, branch):
    keep = 1.0 - self.rate
    seed = self.seed_generator.next()
    replica_context = tf.distribute.get_replica_context()
    if replica_context is not None:
      replica = tf.cast(replica_context.replica_id_in_sync_group, seed.dtype)
      seed = tf.random.experimental.stateless_fold_in(seed, replica)
    mask_shape = tf.concat([tf.shape(branch)[:1], tf.ones([len(branch.shape) - 1], tf.int32)],
                           axis=0)
    uniform = tf.random.stateless_uniform(mask_shape, seed, dtype=tf.float32)
    scale = tf.floor(keep + uniform) / keep
    # The product in float32: under mixed_bfloat16 a bf16 1 / keep would be off by ~0.2%.
    return tf.cast(tf.cast(branch, tf.float32) * scale, branch.dtype)

  def call(self, inputs, training=None):
    x, branch = inputs
    if training and self.rate > 0:
      branch = self.drop_path(branch)
    return x + branch

  def get_config(self):
    return dict(super().get_config(), rate=self.rate, seed=self.seed)


def drop_path_rates(drop_path_rate, depth):
  """Each block's stochastic-depth rate: linear from 0 to `drop_path_rate` (DINO's `dpr`)."""
  return [float(rate) for rate in np.linspace(0.0, drop_path_rate, depth)]


def _residual_add(x, branch, drop_path_rate, name):
  if not drop_path_rate:
    return keras.layers.Add(name=name)([x, branch])
  # Seeded by the layer's name: fixed across runs and processes, distinct between layers
  # (and between backbones of other name prefixes).
  return DropPathAdd(drop_path_rate, seed=zlib.crc32(name.encode()), name=name)([x, branch])


def _layer_norm(x, name):
  return keras.layers.LayerNormalization(epsilon=_LN_EPSILON, name=name)(x)


def _dense(x, units, name, activation=None):
  return keras.layers.Dense(units, activation=activation, kernel_initializer=_weights_init(),
                            name=name)(x)


def _block(x, dim, heads, name, drop_path_rate=0.0):
  y = _layer_norm(x, f"{name}_norm1")
  y = keras.layers.MultiHeadAttention(heads, dim // heads, kernel_initializer=_weights_init(),
                                      name=f"{name}_attention")(y, y)
  x = _residual_add(x, y, drop_path_rate, f"{name}_add1")
  y = _layer_norm(x, f"{name}_norm2")
  y = _dense(y, 4 * dim, f"{name}_mlp_fc1", activation="gelu")
  y = _dense(y, dim, f"{name}_mlp_fc2")
  return _residual_add(x, y, drop_path_rate, f"{name}_add2")


def vision_transformer(ops, *, dim, depth, heads, patch_size, image_size, width=1.0,
                       cifar_stem=None, patch_net=False, zero_init_residual=False,
                       drop_path_rate=0.0, mean_std=None, name="vit"):
  """Functional ViT returning float32 {stem, block1..block`depth`, default}.

  `drop_path_rate`: stochastic depth of the last block (see `drop_path_rates`); at 0 the
  model is exactly the one without stochastic depth. `mean_std`: see `LayerFactory.inputs`.
  """
  if patch_net:
    raise UserError("Vision Transformers have no patch-net layout; for Jigsaw / relative "
                    "patch location use a ResNet, RevNet or VGG.")
  if zero_init_residual:
    raise UserError("zero_init_residual applies to ResNets, not Vision Transformers.")
  if not 0 <= drop_path_rate < 1:
    raise UserError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}.")
  if cifar_stem is None:
    cifar_stem = image_size <= 64
  patch = _SMALL_IMAGE_PATCH if cifar_stem else patch_size
  if image_size % patch:
    raise UserError(f"A ViT with {patch}-px patches needs an image size divisible by {patch}; "
                    f"got {image_size}.")
  # The width multiplier keeps the heads; each head stays at least 1 wide.
  dim = max(heads, round(layers_lib.scaled(dim, width) / heads) * heads)
  images, x = ops.inputs(image_size, mean_std)
  patches = keras.layers.Conv2D(dim, patch, strides=patch, kernel_initializer=_weights_init(),
                                name=ops.name("stem_patch_embedding"))(x)
  taps = {"stem": patches}
  tokens = ClassTokenAndPositions(image_size // patch, name=ops.name("stem_tokens"))(patches)
  for index, rate in enumerate(drop_path_rates(drop_path_rate, depth), start=1):
    tokens = _block(tokens, dim, heads, ops.name(f"block{index}"), rate)
    taps[f"block{index}"] = TokensToMap(name=ops.name(f"block{index}_map"))([tokens, patches])
  features = ClassToken(name=ops.name("class_token"))(_layer_norm(tokens, ops.name("norm")))
  outputs = {tap: layers_lib.Float32(name=ops.name(f"out_{tap}"))(value)
             for tap, value in taps.items()}
  outputs["default"] = layers_lib.Float32(name=ops.name("out_default"))(features)
  model = keras.Model(images, outputs, name=ops.name(name))
  model.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: 3})
  return model


# name: (width, depth, heads, patch size)
# name -> (width, blocks, heads, patch size at 224 px): DeiT-S / ViT-B, DINO's 16 and 8 px.
REGISTERED = {"vit_s16": (384, 12, 6, 16), "vit_b16": (768, 12, 12, 16),
              "vit_s8": (384, 12, 6, 8), "vit_b8": (768, 12, 12, 8)}
MODEL_NAMES = tuple(sorted(REGISTERED))


def register_all(registry):
  for model_name, (dim, depth, heads, patch_size) in REGISTERED.items():
    def builder(ops, model_name=model_name, dim=dim, depth=depth, heads=heads,
                patch_size=patch_size, **kwargs):
      return vision_transformer(ops, dim=dim, depth=depth, heads=heads, patch_size=patch_size,
                                name=model_name, **kwargs)
    registry.register(model_name)(builder)


def patch_size(model_name, image_size):
  """The patch side of registered ViT `model_name` on `image_size`-px images (with the
  default stem), or None for a name that is not a ViT."""
  if model_name not in REGISTERED:
    return None
  return _SMALL_IMAGE_PATCH if image_size <= 64 else REGISTERED[model_name][3]
