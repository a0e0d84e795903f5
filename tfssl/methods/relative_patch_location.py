"""Relative patch location (Doersch et al. 2015) as Revisiting trains it: for each of the
8 neighbours of the centre patch, the pair (neighbour, centre) is classified into the
neighbour's position. Gap, jitter, per-patch standardisation and random grayscale are
PatchTask's, against the trivial shortcuts the paper describes."""

import numpy as np
import tensorflow as tf

from tfssl.methods.base import METHODS
from tfssl.methods.patch_task import NUM_PATCHES, PatchTask

CENTRE = NUM_PATCHES // 2
# Row k: (neighbour, centre) patch indices of position class k, row-major over the grid.
PAIRS = np.array([(i, CENTRE) for i in range(NUM_PATCHES) if i != CENTRE], np.int32)


@METHODS.register("relative_patch_location")
class RelativePatchLocation(PatchTask):
  """8-way classification of a neighbour's position relative to the centre patch."""

  tuple_size = 2
  num_task_classes = len(PAIRS)

  def arrangements(self, batch):
    num_images = tf.shape(batch["patches"])[0]
    indices = tf.tile(tf.constant(PAIRS)[None], [num_images, 1, 1])
    labels = tf.tile(tf.range(len(PAIRS))[None], [num_images, 1])
    return indices, labels
