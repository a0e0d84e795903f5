import time

import numpy as np
import pytest
import tensorflow as tf

from tfssl import losses
from tfssl import mixup

NUM_CLASSES = 5
BATCH, HEIGHT, WIDTH = 6, 12, 10


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  images = rng.uniform(size=[BATCH, HEIGHT, WIDTH, 3]).astype(np.float32)
  labels = rng.integers(0, NUM_CLASSES, size=[BATCH]).astype(np.int32)
  return images, labels


def _seed(i):
  return tf.constant([i, 17], tf.int64)


def _params_over_seeds(count, **settings):
  draw = lambda seed: mixup.mix_params(seed, HEIGHT, WIDTH, **settings)
  seeds = tf.stack([tf.range(count, dtype=tf.int64), tf.fill([count], tf.constant(3, tf.int64))],
                   axis=1)
  spec = {"lam": tf.TensorSpec([], tf.float32), "use_cutmix": tf.TensorSpec([], tf.bool),
          "box": tf.TensorSpec([4], tf.int32)}
  params = tf.function(lambda s: tf.map_fn(draw, s, fn_output_signature=spec))(seeds)
  return {key: value.numpy() for key, value in params.items()}


def _seed_with(predicate, **settings):
  for i in range(200):
    params = mixup.mix_params(_seed(i), HEIGHT, WIDTH, **settings)
    if predicate(params):
      return _seed(i), params
  raise AssertionError("no seed found")


def _one_hot(labels, smoothing=0.0):
  return np.eye(NUM_CLASSES)[labels] * (1 - smoothing) + smoothing / NUM_CLASSES


def test_partners_mirror_each_group():
  np.testing.assert_array_equal(mixup.partner_indices(6).numpy(), [5, 4, 3, 2, 1, 0])
  np.testing.assert_array_equal(mixup.partner_indices(6, num_groups=2).numpy(),
                                [2, 1, 0, 5, 4, 3])
  with pytest.raises(ValueError):
    mixup.partner_indices(6, num_groups=4)


def test_mix_images_by_hand():
  images = tf.constant([[[[0.0], [0.0]], [[0.0], [0.0]]], [[[4.0], [4.0]], [[4.0], [4.0]]]])
  partner_images = tf.reverse(images, [0])
  mixup_params = {"lam": tf.constant(0.25), "use_cutmix": tf.constant(False),
                  "box": tf.zeros([4], tf.int32)}
  mixed = mixup.mix_images(images, partner_images, mixup_params).numpy()[..., 0]
  np.testing.assert_allclose(mixed, [[[3.0, 3.0], [3.0, 3.0]], [[1.0, 1.0], [1.0, 1.0]]])
  # Row 0, columns 1..2: a quarter of the image from the partner, so lam = 0.75.
  cutmix_params = {"lam": tf.constant(0.75), "use_cutmix": tf.constant(True),
                   "box": tf.constant([0, 1, 1, 2])}
  mixed = mixup.mix_images(images, partner_images, cutmix_params).numpy()[..., 0]
  np.testing.assert_array_equal(mixed, [[[0.0, 4.0], [0.0, 0.0]], [[4.0, 0.0], [4.0, 4.0]]])


def test_mixup_is_lam_image_plus_rest_partner_with_smoothed_labels():
  images, labels = _batch()
  seed, params = _seed_with(lambda p: not p["use_cutmix"])
  lam = float(params["lam"])
  mixed, targets = mixup.mixed_copy(images, labels, NUM_CLASSES, seed, label_smoothing=0.1)
  partner = images[::-1]
  np.testing.assert_allclose(mixed.numpy(), lam * images + (1 - lam) * partner, atol=1e-6)
  expected = lam * _one_hot(labels, 0.1) + (1 - lam) * _one_hot(labels[::-1], 0.1)
  np.testing.assert_allclose(targets.numpy(), expected, atol=1e-6)
  np.testing.assert_allclose(targets.numpy().sum(axis=1), 1.0, atol=1e-6)


def test_cutmix_pastes_the_partner_box_and_weights_labels_by_kept_area():
  images, labels = _batch()
  seed, params = _seed_with(lambda p: bool(p["use_cutmix"]) and p["box"][0] > 0
                            and p["box"][1] < HEIGHT)
  y_low, y_high, x_low, x_high = params["box"].numpy()
  mixed, targets = mixup.mixed_copy(images, labels, NUM_CLASSES, seed)
  inside = np.zeros([HEIGHT, WIDTH], bool)
  inside[y_low:y_high, x_low:x_high] = True
  assert inside.any() and not inside.all()
  mixed = mixed.numpy()
  np.testing.assert_array_equal(mixed[:, inside], images[::-1][:, inside])
  np.testing.assert_array_equal(mixed[:, ~inside], images[:, ~inside])
  kept = 1 - inside.mean()
  assert float(params["lam"]) == pytest.approx(kept, abs=1e-6)
  expected = kept * _one_hot(labels) + (1 - kept) * _one_hot(labels[::-1])
  np.testing.assert_allclose(targets.numpy(), expected, atol=1e-6)


def test_cutmix_box_is_the_originals_clipped_square_of_even_sides():
  params = _params_over_seeds(500, mixup_alpha=0.0, correct_lam=False)
  assert params["use_cutmix"].all()
  y_low, y_high, x_low, x_high = params["box"].T
  half_h = np.floor(HEIGHT * np.sqrt(1 - params["lam"])).astype(int) // 2
  half_w = np.floor(WIDTH * np.sqrt(1 - params["lam"])).astype(int) // 2
  unclipped = (y_low > 0) & (y_high < HEIGHT) & (x_low > 0) & (x_high < WIDTH)
  assert unclipped.any() and not unclipped.all()
  np.testing.assert_array_equal((y_high - y_low)[unclipped], 2 * half_h[unclipped])
  np.testing.assert_array_equal((x_high - x_low)[unclipped], 2 * half_w[unclipped])
  assert (y_low >= 0).all() and (y_high <= HEIGHT).all() and (y_low <= y_high).all()
  assert (x_low >= 0).all() and (x_high <= WIDTH).all() and (x_low <= x_high).all()


def test_switch_probability_picks_cutmix_half_of_the_time():
  params = _params_over_seeds(2000)
  assert params["use_cutmix"].mean() == pytest.approx(0.5, abs=0.04)


@pytest.mark.parametrize("alpha", [1.0, 0.4, 2.0])
def test_lambda_is_beta_alpha_alpha(alpha):
  lam = _params_over_seeds(4000, mixup_alpha=alpha, cutmix_alpha=0.0)["lam"]
  assert ((lam >= 0) & (lam <= 1)).all()
  assert lam.mean() == pytest.approx(0.5, abs=0.02)
  assert lam.var() == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.1)
  if alpha == 1.0:
    np.testing.assert_allclose(np.quantile(lam, [0.1, 0.25, 0.75, 0.9]), [0.1, 0.25, 0.75, 0.9],
                               atol=0.03)


def test_prob_leaves_the_copy_unmixed():
  images, labels = _batch()
  mixed, targets = mixup.mixed_copy(images, labels, NUM_CLASSES, _seed(0), prob=0.0)
  np.testing.assert_array_equal(mixed.numpy(), images)
  np.testing.assert_allclose(targets.numpy(), _one_hot(labels))
  unmixed = _params_over_seeds(2000, prob=0.5)["lam"] == 1.0
  assert unmixed.mean() == pytest.approx(0.5, abs=0.04)


def test_same_seed_same_mix_other_seed_other_mix():
  images, labels = _batch()
  first = mixup.mixed_copy(images, labels, NUM_CLASSES, _seed(4))
  again = mixup.mixed_copy(images, labels, NUM_CLASSES, _seed(4))
  other = mixup.mixed_copy(images, labels, NUM_CLASSES, _seed(5))
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert not np.array_equal(first[0].numpy(), other[0].numpy())


def test_runs_under_jit_compile_as_in_graph_mode_and_compiles_once():
  images, labels = _batch()
  step = tf.Variable(0, dtype=tf.int64)
  mix = lambda: mixup.mixed_copy(images, labels, NUM_CLASSES, mixup.step_seed(3, step),
                                 label_smoothing=0.01, num_groups=2)
  compiled_mix, graph_mix = tf.function(mix, jit_compile=True), tf.function(mix)
  kind = tf.function(lambda: mixup.mix_params(mixup.step_seed(3, step), HEIGHT, WIDTH)[
      "use_cutmix"])
  kinds, seconds = set(), []
  for value in range(8):
    step.assign(value)
    kinds.add(bool(kind()))
    start = time.perf_counter()
    compiled = compiled_mix()
    seconds.append(time.perf_counter() - start)
    for got, expected in zip(compiled, graph_mix()):
      np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-6)
  assert kinds == {False, True}
  # A value that XLA needs at compile time (e.g. a tensor slice index) would recompile per step.
  assert sum(seconds[1:]) < seconds[0]


def test_step_seed_differs_by_step_and_base_seed():
  seeds = {tuple(mixup.step_seed(base, step).numpy()) for base in (0, 1) for step in (0, 1, 2)}
  assert len(seeds) == 6


def test_a_replicas_rows_equal_its_rows_of_the_global_result(two_replica_strategy):
  images, labels = _batch()
  seed = _seed(11)
  mirrored = mixup.mixed_copy(images, labels, NUM_CLASSES, seed)
  grouped = mixup.mixed_copy(images, labels, NUM_CLASSES, seed, num_groups=2)
  half = BATCH // 2

  def replica_rows(local_images, local_labels):
    context = tf.distribute.get_replica_context()
    # Partners on the other replica: mix the gathered global batch, keep its own rows.
    all_images = context.all_gather(local_images, axis=0)
    all_labels = context.all_gather(local_labels, axis=0)
    own = tf.range(half) + context.replica_id_in_sync_group * half
    gathered = [tf.gather(t, own)
                for t in mixup.mixed_copy(all_images, all_labels, NUM_CLASSES, seed)]
    # One group per replica: its rows alone, no gather.
    alone = mixup.mixed_copy(local_images, local_labels, NUM_CLASSES, seed, num_groups=1)
    return gathered + list(alone)

  inputs = two_replica_strategy.experimental_distribute_values_from_function(
      lambda context: (images[context.replica_id_in_sync_group * half:][:half],
                       labels[context.replica_id_in_sync_group * half:][:half]))
  results = two_replica_strategy.run(tf.function(replica_rows), args=inputs)
  for got, expected in zip(results, list(mirrored) + list(grouped)):
    rows = np.concatenate([t.numpy() for t in two_replica_strategy.experimental_local_results(got)])
    np.testing.assert_allclose(rows, expected.numpy(), atol=1e-6)


def test_soft_target_cross_entropy_is_the_mean_of_one_hot_cross_entropies():
  logits = tf.constant([[2.0, 0.5, -1.0, 0.0, 0.3]])
  targets = 0.3 * _one_hot(np.array([1])) + 0.7 * _one_hot(np.array([3]))
  got = losses.soft_target_cross_entropy(logits, targets, label_smoothing=0.1)
  expected = (0.3 * losses.softmax_cross_entropy(logits, [1], NUM_CLASSES, 0.1)
              + 0.7 * losses.softmax_cross_entropy(logits, [3], NUM_CLASSES, 0.1))
  np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6)
