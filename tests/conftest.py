"""Test set-up: two logical CPU devices so MirroredStrategy can simulate two replicas.

The logical devices must be configured before TensorFlow initialises its runtime,
so this happens at import time of the test session.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TF 2.20/2.21's oneDNN kernels segfault on this machine's CPUs (AVX512-FP16 / AMX) in the
# backward pass of a loaded SavedModel's function (test_export, eval_hub fine-tuning);
# TensorFlow's own kernels do not.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


@pytest.fixture
def two_replica_strategy():
  # Reduction through one device instead of collective ops: every strategy made in this
  # process starts its collective instance keys at the same number, so collectives of an
  # earlier test's strategy can collide with a later one's.
  return tf.distribute.MirroredStrategy(
      ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
