"""Patch grids of the context-prediction tasks (Jigsaw, relative patch location).

Geometry of Doersch et al. / Noroozi & Favaro as Revisiting trains it: the image is
resized, one random square of `splits` x `splits` cells is cropped, and from each cell a
`patch_size` square is cut at a random offset of up to `jitter` pixels, so neighbouring
patches are separated by a random gap and never share an edge a network could match.
At evaluation the offset is central.
"""

import tensorflow as tf

from tfssl.preprocess.ops import PREPROCESS, resize, split_seed


def grid_side(patch_size, jitter, splits=3):
  """Side of the square cut into `splits` x `splits` cells of patch_size + jitter."""
  return splits * (patch_size + jitter)


def grid_patches(image, patch_size, jitter, splits=3, seed=None):
  """[S, S, C] image (S = grid_side) -> [splits**2, patch_size, patch_size, C], row-major.

  With a seed every patch is cut at an independent random offset inside its cell;
  without one, at the cell's centre.
  """
  cell = patch_size + jitter
  if seed is None:
    offsets = tf.fill([splits * splits, 2], jitter // 2)
  else:
    offsets = tf.random.stateless_uniform([splits * splits, 2], seed, 0, jitter + 1, tf.int32)
  patches = []
  for index in range(splits * splits):
    row, col = divmod(index, splits)
    top = row * cell + offsets[index, 0]
    left = col * cell + offsets[index, 1]
    patches.append(tf.slice(image, [top, left, 0], [patch_size, patch_size, -1]))
  return tf.stack(patches)


def batch_grid_patches(images, patch_size, splits=3):
  """[N, H, W, C] whole images -> [N, splits**2, patch_size, patch_size, C] central patches.

  Images are resized to exactly `splits` cells of patch_size (no gap), as Revisiting's
  evaluation of patch models crops them (patch_jitter 0).
  """
  side = splits * patch_size
  if images.shape[1] != side or images.shape[2] != side:
    images = tf.image.resize(images, [side, side], method="bilinear")
  rows = tf.reshape(images, [-1, splits, patch_size, splits, patch_size, images.shape[-1]])
  patches = tf.transpose(rows, [0, 1, 3, 2, 4, 5])
  return tf.reshape(patches, [-1, splits * splits, patch_size, patch_size, images.shape[-1]])


@PREPROCESS.register("patch_grid_train")
def patch_grid_train(image, seed, patch_size, jitter, splits=3, resize_ratio=292 / 255):
  """The training patches of one image: resize to resize_ratio x the grid side, random
  square crop of the grid side, jittered patches (Revisiting: 292 -> 255 -> 9 x 64 px)."""
  crop_seed, patch_seed = split_seed(seed, 2)
  side = grid_side(patch_size, jitter, splits)
  resized = resize(image, int(round(side * resize_ratio)))
  square = tf.image.stateless_random_crop(resized, [side, side, 3], crop_seed)
  return grid_patches(square, patch_size, jitter, splits, seed=patch_seed)


def standardize(images):
  """Per-image (per-patch) standardisation over the last three axes, as
  tf.image.per_image_standardization: removes each patch's mean colour and contrast, a
  low-level cue patch tasks would otherwise match on."""
  images = tf.cast(images, tf.float32)
  mean, variance = tf.nn.moments(images, axes=[-3, -2, -1], keepdims=True)
  count = tf.cast(tf.reduce_prod(tf.shape(images)[-3:]), tf.float32)
  return (images - mean) / tf.maximum(tf.sqrt(variance), tf.math.rsqrt(count))
