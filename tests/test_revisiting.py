"""Rotation, Exemplar, Jigsaw and relative patch location: task pieces, steps, export."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import fixed_batch_losses, tiny_config
from tfssl import experiment
from tfssl import trainer
from tfssl.errors import UserError
from tfssl.methods import jigsaw
from tfssl.methods import relative_patch_location
from tfssl.methods.rotation import rotate_batch
from tfssl.preprocess import patches

# Patch methods on 16-px digits: 3x3 grid of 5-px patches with 1 px of jitter.
PATCH_TINY = ["patch_size=5", "patch_jitter=1", "embed_dim=16", "head_hidden=32"]
METHOD_OVERRIDES = {
    "rotation": [],
    "exemplar": ["exemplar_copies=4", "embed_dim=16", "batch_size=16"],
    "jigsaw": PATCH_TINY + ["num_permutations=10", "perm_subset_size=4"],
    "relative_patch_location": PATCH_TINY,
}


def _config(method, *overrides):
  return tiny_config(method, *METHOD_OVERRIDES[method], *overrides)


# --- task pieces ---------------------------------------------------------------


def test_rotation_labels_match_the_rotations_applied():
  images = np.random.default_rng(0).random((3, 6, 6, 2)).astype(np.float32)
  rotated, labels = rotate_batch(tf.constant(images))
  rotated, labels = rotated.numpy(), labels.numpy()
  assert rotated.shape == (12, 6, 6, 2)
  for index, label in enumerate(labels):
    # Undoing `label` counter-clockwise quarter turns gives the source image back.
    source = images[index % 3]
    np.testing.assert_array_equal(np.rot90(rotated[index], -label, axes=(0, 1)), source)
  np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])


def test_grid_patches_central_and_jittered():
  side = patches.grid_side(patch_size=2, jitter=2)
  assert side == 12
  image = tf.reshape(tf.range(side * side, dtype=tf.float32), [side, side, 1])
  central = patches.grid_patches(image, 2, 2).numpy()
  assert central.shape == (9, 2, 2, 1)
  # Patch (row 1, col 2) starts at cell corner (4, 8) plus the centring offset 1.
  np.testing.assert_array_equal(central[5, :, :, 0], image.numpy()[5:7, 9:11, 0])
  seed = tf.constant([3, 4])
  first = patches.grid_patches(image, 2, 2, seed=seed).numpy()
  np.testing.assert_array_equal(first, patches.grid_patches(image, 2, 2, seed=seed).numpy())
  other = patches.grid_patches(image, 2, 2, seed=tf.constant([5, 6])).numpy()
  assert not np.array_equal(first, other)
  for index in range(9):  # every patch stays inside its own cell
    row, col = divmod(index, 3)
    values = first[index, :, :, 0].astype(int)
    rows, cols = values // side, values % side
    assert rows.min() >= row * 4 and rows.max() < (row + 1) * 4
    assert cols.min() >= col * 4 and cols.max() < (col + 1) * 4


def test_batch_grid_patches_is_row_major():
  image = tf.reshape(tf.range(36, dtype=tf.float32), [1, 6, 6, 1])
  got = patches.batch_grid_patches(image, patch_size=2).numpy()
  assert got.shape == (1, 9, 2, 2, 1)
  np.testing.assert_array_equal(got[0, 3, :, :, 0], [[12, 13], [18, 19]])
  np.testing.assert_array_equal(got[0, 8, :, :, 0], [[28, 29], [34, 35]])


def test_patch_grid_train_shapes_and_determinism():
  image = tf.random.stateless_uniform([32, 32, 3], [1, 2])
  seed = tf.constant([7, 8])
  got = patches.patch_grid_train(image, seed, patch_size=5, jitter=2)
  assert got.shape == (9, 5, 5, 3)
  np.testing.assert_array_equal(got.numpy(),
                                patches.patch_grid_train(image, seed, 5, 2).numpy())


def test_standardize_per_patch():
  x = tf.random.stateless_uniform([4, 5, 5, 3], [0, 1]) * 7.0 + 3.0
  got = patches.standardize(x).numpy()
  np.testing.assert_allclose(got.mean(axis=(1, 2, 3)), 0.0, atol=1e-5)
  np.testing.assert_allclose(got.std(axis=(1, 2, 3)), 1.0, atol=1e-3)


def test_permutation_set_is_deterministic_distinct_and_far_apart(tmp_path, monkeypatch):
  monkeypatch.setenv("TFSSL_CACHE_DIR", str(tmp_path))
  jigsaw._cached_permutations.cache_clear()
  perms = jigsaw.max_hamming_permutations(100)
  assert perms.shape == (100, 9)
  assert all(sorted(row) == list(range(9)) for row in perms.tolist())
  assert len({tuple(row) for row in perms.tolist()}) == 100
  minimum = jigsaw.min_hamming_distance(perms)
  print(f"minimum Hamming distance of the 100-permutation set: {minimum}")
  assert minimum >= 6
  assert os.listdir(tmp_path)  # cached on disk
  jigsaw._cached_permutations.cache_clear()
  np.testing.assert_array_equal(jigsaw.max_hamming_permutations(100), perms)  # from the cache
  np.testing.assert_array_equal(jigsaw._select_permutations(100, 9, 0), perms)  # recomputed


def _noroozi_file(path, rows, header=None):
  """A permutation set laid out as Revisiting's load_permutations reads it: struct '<ll'
  (count, size), then count x size '<l', 1-based."""
  import struct  # pylint: disable=import-outside-toplevel
  count, size = header or (len(rows), len(rows[0]))
  with open(path, "wb") as f:
    f.write(struct.pack("<ll", count, size))
    for row in rows:
      f.write(struct.pack(f"<{len(row)}l", *row))
  return str(path)


def test_jigsaw_reads_noroozis_permutation_file(tmp_path):
  rng = np.random.default_rng(0)
  rows = [list(rng.permutation(9) + 1) for _ in range(10)]
  path = _noroozi_file(tmp_path / "permutations_10_max.bin", rows)
  np.testing.assert_array_equal(jigsaw.read_permutations_file(path), np.array(rows) - 1)
  method = experiment.resolve(_config("jigsaw", f"permutations_file={path}")).new_method()
  np.testing.assert_array_equal(method.permutations, np.array(rows) - 1)
  assert method.num_task_classes == 10


def test_bad_permutation_files_are_named(tmp_path):
  rows = [list(np.arange(9) + 1) for _ in range(10)]
  cases = {
      "missing": (str(tmp_path / "nothing.bin"), "cannot be read"),
      "header": (_noroozi_file(tmp_path / "a.bin", rows, header=(12, 9)), "says 12 x 9 in 368"),
      "not a permutation": (_noroozi_file(tmp_path / "b.bin", rows[:9] + [[1] * 9]),
                            r"row 9 is \[1, 1, 1"),
      "count": (_noroozi_file(tmp_path / "c.bin", rows[:8]),
                "holds 8 permutations, num_permutations=10: set num_permutations=8"),
  }
  for name, (path, message) in cases.items():
    with pytest.raises(UserError, match=message):
      experiment.resolve(_config("jigsaw", f"permutations_file={path}"))


def test_relative_patch_location_pairs_are_the_eight_neighbours_of_the_centre():
  pairs = relative_patch_location.PAIRS
  assert pairs.shape == (8, 2) and set(pairs[:, 1]) == {4}
  assert sorted(pairs[:, 0]) == [0, 1, 2, 3, 5, 6, 7, 8]


# --- steps ----------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(METHOD_OVERRIDES))
def test_step_compiles_with_xla_and_loss_falls_on_a_fixed_batch(method):
  # Without the head's dropout the loss of one fixed batch falls monotonically enough.
  no_dropout = ["head_dropout=0.0"] if method in ("jigsaw", "relative_patch_location") else []
  config = _config(method, "jit_compile=true", "learning_rate=0.05", *no_dropout)
  losses = fixed_batch_losses(config, tf.distribute.get_strategy(), steps=8)
  assert all(np.isfinite(losses))
  assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("method", sorted(METHOD_OVERRIDES))
def test_step_runs_on_two_replicas(method, two_replica_strategy):
  losses = fixed_batch_losses(_config(method, "jit_compile=true"), two_replica_strategy, 2)
  assert all(np.isfinite(losses))


@pytest.mark.parametrize("method", sorted(METHOD_OVERRIDES))
def test_train_export_reload_takes_whole_images(method, tmp_path):
  run = trainer.train(_config(method, "train_steps=4", "steps_per_loop=2"), str(tmp_path))
  module_dir = os.path.join(tmp_path, "export", "hub", "4")
  module = tf.saved_model.load(module_dir)
  for size in (16, 24):  # whole images, also at another size than trained
    images = tf.random.stateless_uniform([3, size, size, 3], [0, size])
    outputs = module(images, training=False)
    assert outputs["default"].shape == (3, run.method.feature_dim)
    np.testing.assert_allclose(outputs["default"].numpy(),
                               run.method.representations(images)["default"].numpy(),
                               rtol=1e-4, atol=1e-4)
  assert "logits" not in outputs  # a pretext head is not a classifier of the dataset


def test_random_init_baseline_exports_step_zero(tmp_path):
  trainer.train(_config("rotation", "train_epochs=0"), str(tmp_path))
  assert tf.io.gfile.exists(os.path.join(tmp_path, "export", "hub", "0", "saved_model.pb"))
  assert not tf.io.gfile.exists(os.path.join(tmp_path, "checkpoints", "checkpoint"))


# --- bad configurations ---------------------------------------------------------


@pytest.mark.parametrize("method,overrides,message", [
    ("jigsaw", ["patch_size=8"], r"patch_size=8 does not fit the image.*image_size >= 24"),
    ("relative_patch_location", ["patch_size=2"], r"patch_size=2 is too small"),
    ("relative_patch_location", ["patch_jitter=-1"], r"patch_jitter=-1 must be >= 0"),
    ("jigsaw", ["perm_subset_size=20"], r"perm_subset_size=20.*num_permutations=10"),
    ("exemplar", ["triplet_mining=hardest"], r"Unknown triplet_mining 'hardest'"),
    ("exemplar", ["exemplar_copies=1"], r"exemplar_copies=1"),
])
def test_bad_configuration_fails_before_the_workdir_is_touched(method, overrides, message,
                                                                tmp_path):
  workdir = tmp_path / "run"
  with pytest.raises(UserError, match=message):
    trainer.train(_config(method, *overrides), str(workdir))
  assert not workdir.exists()
