"""Jigsaw puzzles (Noroozi & Favaro 2016) as Revisiting trains them.

The nine patch embeddings of an image are concatenated in the order of a permutation
taken from a fixed set; the head classifies which permutation of the set it was. The set
is chosen greedily for large Hamming distances between its permutations (so the task
is not decided by a patch or two), by our code, deterministically, and cached; or read
from Noroozi's file, as Revisiting does (`permutations_file`).
Each image is shown under `perm_subset_size` distinct permutations of the set per step.
"""

import functools
import itertools
import os

import numpy as np
import tensorflow as tf
from absl import logging

from tfssl.errors import UserError
from tfssl.methods.base import METHODS
from tfssl.methods.patch_task import NUM_PATCHES, PatchTask

PERMUTATION_SEED = 0
MAX_PERMUTATIONS = 1000  # greedy selection is O(count x 9!): seconds for 1000


def _cache_dir():
  return os.environ.get("TFSSL_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "tfssl"))


def max_hamming_permutations(count, size=NUM_PATCHES, seed=PERMUTATION_SEED):
  """`count` permutations of range(size), chosen greedily for maximal Hamming distance.

  Starts from a seeded random permutation; each next one maximises the minimum Hamming
  distance to those chosen so far, ties broken by the larger mean distance, then by the
  lower lexicographic index (Noroozi & Favaro's "maximal" set maximises the mean only,
  which lets near-duplicates in). Deterministic for (count, size, seed).

  Returns:
    int32 array [count, size]; row k is label k, and position j of a puzzle holds patch
    perm[j].
  """
  max_count = int(np.prod(np.arange(1, size + 1)))
  if not 1 <= count <= max_count:
    raise UserError(f"num_permutations={count}: must be between 1 and {size}! = {max_count}.")
  return _cached_permutations(count, size, seed).copy()


@functools.lru_cache(maxsize=None)
def _cached_permutations(count, size, seed):
  path = os.path.join(_cache_dir(), f"permutations_{count}_of_{size}_seed{seed}.npy")
  try:
    cached = np.load(path)
    if cached.shape == (count, size):
      return cached
  except (OSError, ValueError):
    pass
  perms = _select_permutations(count, size, seed)
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp.npy"
    np.save(tmp, perms)
    os.replace(tmp, path)
  except OSError as e:  # A read-only home only costs recomputing next time.
    logging.info("Could not cache the permutation set at %s: %s", path, e)
  return perms


def _select_permutations(count, size, seed):
  candidates = np.array(list(itertools.permutations(range(size))), dtype=np.int8)
  rng = np.random.default_rng(seed)
  chosen = [int(rng.integers(len(candidates)))]
  min_distance = np.full(len(candidates), size + 1, np.int32)
  total_distance = np.zeros(len(candidates), np.int32)
  while len(chosen) < count:
    distance = np.sum(candidates != candidates[chosen[-1]], axis=1, dtype=np.int32)
    np.minimum(min_distance, distance, out=min_distance)
    total_distance += distance
    # Lexicographic (min, total): total <= count * size < the scale of one unit of min.
    score = min_distance.astype(np.int64) * (count * size + 1) + total_distance
    chosen.append(int(np.argmax(score)))
  return candidates[chosen].astype(np.int32)


def read_permutations_file(path):
  """Noroozi's permutation sets (`permutations_100_max.bin`, which Revisiting's README
  downloads): two little-endian int32 (count, size), then count x size int32 patch
  indices from 1, as Revisiting's patch_utils.load_permutations reads them.

  Returns:
    int32 array [count, 9], from 0, with `max_hamming_permutations`' meaning.
  """
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      data = f.read()
  except tf.errors.OpError as e:
    raise UserError(f"permutations_file={path} cannot be read ({e.message}). Pass Noroozi's "
                    "permutations_100_max.bin, or leave permutations_file empty for the "
                    "generated set.") from e
  what = (f"permutations_file={path} is not a permutation set as Noroozi's .bin files hold "
          f"it (int32 count and size, then count x size patch indices 1..{NUM_PATCHES})")
  if len(data) < 8:
    raise UserError(f"{what}: {len(data)} bytes.")
  count, size = (int(x) for x in np.frombuffer(data[:8], "<i4"))
  if size != NUM_PATCHES or count < 2 or len(data) != 8 + 4 * count * size:
    raise UserError(f"{what}: its header says {count} x {size} in {len(data)} bytes.")
  perms = np.frombuffer(data[8:], "<i4").reshape(count, size).astype(np.int32) - 1
  if not np.all(np.sort(perms, axis=1) == np.arange(size)):
    bad = int(np.argmax(np.any(np.sort(perms, axis=1) != np.arange(size), axis=1)))
    raise UserError(f"{what}: row {bad} is {(perms[bad] + 1).tolist()}.")
  return perms


def min_hamming_distance(perms):
  """Smallest Hamming distance between two distinct rows of `perms`."""
  perms = np.asarray(perms)
  distances = np.sum(perms[:, None, :] != perms[None, :, :], axis=-1)
  np.fill_diagonal(distances, perms.shape[1] + 1)
  return int(distances.min())


@METHODS.register("jigsaw")
class Jigsaw(PatchTask):
  """Classifies which of `num_permutations` fixed permutations shuffled the 3x3 patches."""

  tuple_size = NUM_PATCHES

  @classmethod
  def default_config(cls):
    # permutations_file: Noroozi's set (see read_permutations_file); empty: the generated.
    return dict(super().default_config(), num_permutations=100, perm_subset_size=8,
                permutations_file="")

  @classmethod
  def check_config(cls, config, image_size):
    super().check_config(config, image_size)
    if not 2 <= config.num_permutations <= MAX_PERMUTATIONS:
      raise UserError(f"num_permutations={config.num_permutations}: must be between 2 and "
                      f"{MAX_PERMUTATIONS} (the greedy search covers all 9! permutations).")
    if not 1 <= config.perm_subset_size <= config.num_permutations:
      raise UserError(f"perm_subset_size={config.perm_subset_size}: must be between 1 and "
                      f"num_permutations={config.num_permutations}.")
    if config.permutations_file:
      count = len(read_permutations_file(config.permutations_file))
      if count != config.num_permutations:
        raise UserError(f"permutations_file={config.permutations_file} holds {count} "
                        f"permutations, num_permutations={config.num_permutations}: set "
                        f"num_permutations={count}.")

  def __init__(self, config, num_classes, image_size):
    super().__init__(config, num_classes, image_size)
    if config.permutations_file:
      self.permutations = read_permutations_file(config.permutations_file)
    else:
      self.permutations = max_hamming_permutations(int(config.num_permutations))
    self.num_task_classes = len(self.permutations)

  def task_preprocess(self, seed):
    # Distinct permutations per image (the original drew one subset per batch).
    scores = tf.random.stateless_uniform([self.num_task_classes], seed)
    return {"permutation": tf.argsort(scores)[:self.config.perm_subset_size]}

  def arrangements(self, batch):
    labels = batch["permutation"]
    return tf.gather(tf.constant(self.permutations), labels), labels
