import math

import numpy as np
import pytest

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
