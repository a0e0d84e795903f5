import math

import numpy as np
import pytest
import tensorflow as tf

from tfssl import losses


def test_cross_entropy_hand_computed():
  logits = np.array([[0.0, 0.0], [math.log(3.0), 0.0]], np.float32)
  labels = np.array([0, 0])
  got = losses.softmax_cross_entropy(logits, labels, 2).numpy()
  np.testing.assert_allclose(got, [math.log(2.0), -math.log(0.75)], rtol=1e-6)


def test_label_smoothing_moves_target_towards_uniform():
  logits = np.array([[math.log(3.0), 0.0]], np.float32)
  got = losses.softmax_cross_entropy(logits, np.array([0]), 2, label_smoothing=0.2).numpy()
  expected = -(0.9 * math.log(0.75) + 0.1 * math.log(0.25))
  assert got[0] == pytest.approx(expected, rel=1e-6)


def _embeddings_on_a_line(positions):
  return np.array([[p, 0.0] for p in positions], np.float32)


def test_pairwise_squared_distances():
  x = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]], np.float32)
  got = losses.pairwise_squared_distances(x).numpy()
  np.testing.assert_allclose(got, [[0, 25, 1], [25, 0, 20], [1, 20, 0]], atol=1e-5)


def test_triplet_batch_hard_hand_computed():
  # Labels a a b b at positions 0 1 2 4 (Euclidean distances).
  x = _embeddings_on_a_line([0.0, 1.0, 2.0, 4.0])
  got = losses.triplet_batch_hard(x, np.array([0, 0, 1, 1]), margin=0.5).numpy()
  # anchor 0: farthest positive 1, nearest negative 2 -> relu(1 - 2 + .5) = 0
  # anchor 1: positive 1, negative 1 (point 2) -> 0.5
  # anchor 2: positive 2 (point 4), negative 1 (point 1) -> 1.5
  # anchor 3: positive 2, negative 3 (point 1) -> 0
  np.testing.assert_allclose(got, [0.0, 0.5, 1.5, 0.0], atol=1e-5)
  soft = losses.triplet_batch_hard(x, np.array([0, 0, 1, 1]), margin=None).numpy()
  np.testing.assert_allclose(soft, np.log1p(np.exp([1 - 2, 1 - 1, 2 - 1, 2 - 3])), atol=1e-5)


def test_triplet_batch_hard_pushes_a_collapsed_embedding_apart():
  # Every embedding equal: with squared distances the gradient would be exactly zero.
  x = tf.Variable(np.tile([[1.0, 0.0, 0.0]], [4, 1]).astype(np.float32)
                  + 1e-3 * np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32))
  with tf.GradientTape() as tape:
    loss = tf.reduce_mean(losses.triplet_batch_hard(x, np.array([0, 0, 1, 1]), margin=0.5))
  gradient = tape.gradient(loss, x).numpy()
  assert loss.numpy() == pytest.approx(0.5, abs=0.01)
  assert np.abs(gradient).max() > 0.1


def test_triplet_batch_hard_anchor_without_positive_is_zero():
  x = _embeddings_on_a_line([0.0, 1.0, 5.0])
  got = losses.triplet_batch_hard(x, np.array([0, 0, 1]), margin=1.0).numpy()
  assert got[2] == 0.0 and got[0] == pytest.approx(0.0) and got[1] == pytest.approx(0.0)


def test_triplet_semi_hard_hand_computed():
  # Labels a a b b b at positions 0 1 1.5 3 4 (squared distances).
  x = _embeddings_on_a_line([0.0, 1.0, 1.5, 3.0, 4.0])
  labels = np.array([0, 0, 1, 1, 1])
  got = losses.triplet_semi_hard(x, labels, margin=0.5).numpy()
  # anchor 0, positive 1 (d=1): negatives at 2.25, 9, 16 -> semi-hard 2.25 -> relu(1-2.25+.5)=0
  # anchor 1, positive 0 (d=1): negatives 0.25, 4, 9 -> nearest farther than 1 is 4 -> 0
  # anchor 2 (b), positives 3 (d=2.25) and 4 (d=6.25); negatives 2.25 (pt 0), 0.25 (pt 1):
  #   pair (2,3): none farther than 2.25 -> farthest negative 2.25 -> relu(2.25-2.25+.5)=.5
  #   pair (2,4): none farther than 6.25 -> 2.25 -> relu(6.25-2.25+.5)=4.5 ; mean 2.5
  # anchor 3, positives 2 (2.25), 4 (1); negatives 9, 4 -> (2.25: semi-hard 4 -> 0),
  #   (1: semi-hard 4 -> 0) ; mean 0
  # anchor 4, positives 2 (6.25), 3 (1); negatives 16, 9 -> (6.25: 9 -> 0), (1: 9 -> 0)
  np.testing.assert_allclose(got, [0.0, 0.0, 2.5, 0.0, 0.0], atol=1e-5)


def test_triplet_losses_vanish_for_well_separated_classes():
  x = _embeddings_on_a_line([0.0, 0.1, 10.0, 10.1])
  labels = np.array([0, 0, 1, 1])
  for loss in (losses.triplet_batch_hard, losses.triplet_semi_hard):
    np.testing.assert_allclose(loss(x, labels, margin=0.5).numpy(), 0.0, atol=1e-5)
