"""SwAV's Sinkhorn-Knopp and swapped prediction, DINO's centred teacher and loss: the
plain functions Suave and Daino are built from."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfssl import losses
from tfssl.methods.base import cross_replica_sum


def _cosine_scores(rng, n, k):
  x = rng.normal(size=(n, 8))
  prototypes = rng.normal(size=(k, 8))
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  prototypes /= np.linalg.norm(prototypes, axis=1, keepdims=True)
  return (x @ prototypes.T).astype(np.float32)


def test_sinkhorn_knopp_is_doubly_stochastic():
  scores = _cosine_scores(np.random.default_rng(0), 16, 4)
  q = losses.sinkhorn_knopp(scores, epsilon=0.05, iterations=50).numpy()
  np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-5)  # every sample: one unit
  np.testing.assert_allclose(q.sum(axis=0), 16 / 4, rtol=1e-3)  # every prototype: n / K
  # SwAV's 3 iterations end on the per-sample step: rows are targets summing to 1.
  three = losses.sinkhorn_knopp(scores, epsilon=0.05, iterations=3).numpy()
  np.testing.assert_allclose(three.sum(axis=1), 1.0, rtol=1e-5)


def test_masked_rows_take_no_part_in_sinkhorn_knopp():
  scores = _cosine_scores(np.random.default_rng(2), 10, 4)
  alone = losses.sinkhorn_knopp(scores[4:], 0.05, 3).numpy()
  masked = losses.sinkhorn_knopp(scores, 0.05, 3, mask=[0.0] * 4 + [1.0] * 6).numpy()
  np.testing.assert_array_equal(masked[:4], 0.0)
  np.testing.assert_allclose(masked[4:], alone, rtol=1e-5, atol=1e-7)


def test_sinkhorn_knopp_on_two_replicas_equals_one_replica_on_the_global_batch(
    two_replica_strategy):
  scores = _cosine_scores(np.random.default_rng(1), 12, 5)
  single = losses.sinkhorn_knopp(scores, 0.05, 3).numpy()
  halves = two_replica_strategy.experimental_distribute_values_from_function(
      lambda context: tf.constant(scores[6 * context.replica_id_in_sync_group:
                                         6 * (context.replica_id_in_sync_group + 1)]))
  per_replica = tf.function(lambda s: two_replica_strategy.run(
      lambda x: losses.sinkhorn_knopp(x, 0.05, 3, global_sum=cross_replica_sum),
      args=(s,)))(halves)
  gathered = np.concatenate(
      [q.numpy() for q in two_replica_strategy.experimental_local_results(per_replica)])
  np.testing.assert_allclose(gathered, single, rtol=1e-5, atol=1e-7)


def test_swapped_prediction_hand_computed():
  logits = np.array([[[math.log(3.0), 0.0]], [[0.0, 0.0]]], np.float32)  # 2 views, 1 image
  assignments = np.array([[[1.0, 0.0]], [[0.5, 0.5]]], np.float32)
  got = losses.cross_view_cross_entropy(logits, assignments, temperature=1.0).numpy()
  # View 0's target predicted by view 1 (uniform): log 2; view 1's by view 0 (0.75/0.25).
  expected = 0.5 * (math.log(2.0) + -(0.5 * math.log(0.75) + 0.5 * math.log(0.25)))
  np.testing.assert_allclose(got, [expected], rtol=1e-6)


def test_dino_teacher_is_centred_and_sharpened():
  logits = np.array([[2.0, 0.0]], np.float32)
  center = np.array([1.0, 0.0], np.float32)
  got = losses.dino_teacher_probs(logits, center, temperature=0.5).numpy()
  # (2 - 1, 0 - 0) / 0.5 = (2, 0)
  np.testing.assert_allclose(got, [[math.exp(2) / (math.exp(2) + 1), 1 / (math.exp(2) + 1)]],
                             rtol=1e-6)


def test_dino_cross_entropy_skips_a_views_own_target():
  teacher = np.array([[[1.0, 0.0]], [[0.0, 1.0]]], np.float32)  # 2 global views, 1 image
  student = np.zeros([3, 1, 2], np.float32)  # 2 global + 1 local, uniform predictions
  student[0, 0] = [math.log(3.0), 0.0]  # view 0 predicts (0.75, 0.25)
  got = losses.cross_view_cross_entropy(student, teacher, temperature=1.0).numpy()
  # Pairs: (t0, s1) log 2, (t0, s2) log 2, (t1, s0) -log 0.25, (t1, s2) log 2.
  expected = (3 * math.log(2.0) - math.log(0.25)) / 4
  np.testing.assert_allclose(got, [expected], rtol=1e-6)


def test_center_is_a_moving_average_of_the_teacher_means():
  center = losses.updated_center(np.array([1.0, 0.0], np.float32),
                                 np.array([0.0, 2.0], np.float32), momentum=0.9).numpy()
  np.testing.assert_allclose(center, [0.9, 0.2], rtol=1e-6)


@pytest.mark.parametrize("iterations", [1, 3])
def test_sinkhorn_knopp_compiles_with_xla(iterations):
  scores = _cosine_scores(np.random.default_rng(2), 8, 3)
  compiled = tf.function(lambda s: losses.sinkhorn_knopp(s, 0.05, iterations), jit_compile=True)
  np.testing.assert_allclose(compiled(scores).numpy(),
                             losses.sinkhorn_knopp(scores, 0.05, iterations).numpy(), rtol=1e-5)
