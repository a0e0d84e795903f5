"""Shared by the tests: tiny configs (a ResNet with a few thousand parameters on 16 px
digits) and checks every backbone must pass."""

import io
import os
import socket
import sys

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from tfssl import config as config_lib
from tfssl import experiment
from tfssl import methods
from tfssl import trainer

TINY = ["model_width=0.0625", "image_size=16", "batch_size=32", "eval_batch_size=64",
        "steps_per_loop=5", "checkpoint_every_steps=10", "warmup_epochs=0",
        "learning_rate=0.1", "lr_base_batch_size=32", "lr_schedule=constant", "weight_decay=1e-4",
        "log_every_seconds=0", "summary_images=4", "crop_area_min=0.5", "shuffle_buffer=256"]


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def trainer_command(workdir, *extra, method="supervised"):
  """The trainer CLI on the tiny config (supervised resnet10_v2 on digits by default)."""
  return ([sys.executable, "-m", "tfssl.trainer", f"--method={method}", "--model=resnet10_v2",
           "--dataset=digits", f"--workdir={workdir}"] + [f"--config.{o}" for o in TINY]
          + list(extra))


def encode_image(pixels, kind):
  """uint8 RGB [H, W, 3] encoded as `kind`: a file as cameras, scanners and the web
  leave them (see IMAGE_KINDS)."""
  image = Image.fromarray(pixels)
  converted = {"gray_jpeg": ("L", "JPEG", {}), "cmyk_jpeg": ("CMYK", "JPEG", {}),
               "progressive_jpeg": ("RGB", "JPEG", {"progressive": True}),
               "jpeg": ("RGB", "JPEG", {}), "png": ("RGB", "PNG", {}),
               "rgba_png": ("RGBA", "PNG", {}), "palette_png": ("P", "PNG", {}),
               "gif": ("P", "GIF", {}), "bmp": ("RGB", "BMP", {}), "webp": ("RGB", "WEBP", {})}
  if kind == "png16":
    return tf.io.encode_png(tf.constant(pixels.astype(np.uint16) * 257)).numpy()
  mode, file_format, options = converted[kind]
  buffer = io.BytesIO()
  image.convert(mode).save(buffer, file_format, **options)
  return buffer.getvalue()


IMAGE_KINDS = {"gray_jpeg": ".jpg", "cmyk_jpeg": ".jpeg", "progressive_jpeg": ".JPG",
               "jpeg": ".jpg", "png": ".png", "rgba_png": ".png", "png16": ".png",
               "palette_png": ".png", "gif": ".gif", "bmp": ".bmp", "webp": ".webp"}


def write_image(path, pixels, kind="png"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(encode_image(pixels, kind))
  return path


def write_digits(root, count=None, labelled=False, split="train"):
  """scikit-learn's digits (the `digits` dataset's images) written as PNG files under root:
  nested two folders deep and unlabelled (root/<a>/<b>/<n>.png), or in class folders
  (root/<split>/<digit>/<n>.png). Returns the paths."""
  from tfssl import datasets  # pylint: disable=g-import-not-at-top
  source = datasets.get_source("digits")
  images, labels, ids = source._arrays[split]  # pylint: disable=protected-access
  paths = []
  for image, label, index in list(zip(images, labels, ids))[:count]:
    index = int(index)
    folder = (os.path.join(root, split, str(label)) if labelled
              else os.path.join(root, f"roll{index % 3}", f"day{index % 7}"))
    paths.append(write_image(os.path.join(folder, f"{index}.png"), image))
  return paths


def free_ports(count):
  """Ports of 127.0.0.1 nothing listens on (for worker processes of one test)."""
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def tiny_config(method="supervised", *overrides, model="resnet10_v2", dataset="digits", **fields):
  return config_lib.build_config(methods.get_method(method), TINY + list(overrides),
                                 method=method, model=model, dataset=dataset, **fields)


def check_sync_batch_norm_on_two_replicas(strategy, build_model, feature_dim):
  """`build_model(sync_bn=True)` made in `strategy`'s scope has only synchronized BN
  layers and runs a training forward pass of 2 images per replica."""
  with strategy.scope():
    model = build_model(sync_bn=True)
  assert all(layer.synchronized for layer in model.layers
             if isinstance(layer, keras.layers.BatchNormalization))

  @tf.function
  def step(images):
    return strategy.run(lambda x: model(x, training=True)["default"], args=(images,))

  dataset = strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(tf.random.uniform([4, 16, 16, 3])))
  per_replica = strategy.experimental_local_results(step(next(iter(dataset))))
  assert [tuple(out.shape) for out in per_replica] == [(2, feature_dim)] * 2


def check_name_prefix_separates_two_backbones(build_model, prefix):
  """Two copies of a backbone, one built with `name_prefix=prefix`, share no variable
  path and compute the same features from the same weights. Returns the prefixed one."""
  online = build_model()
  target = build_model(name_prefix=prefix)
  assert target.name == f"{prefix}_{online.name}"
  assert all(layer.name.startswith(f"{prefix}_") for layer in target.layers)
  assert not {v.path for v in online.weights} & {v.path for v in target.weights}
  target.set_weights(online.get_weights())
  images = tf.random.uniform([2, 16, 16, 3])
  np.testing.assert_allclose(online(images)["default"], target(images)["default"], rtol=1e-5)
  return target


def on_split_batch(strategy, fn, batch):
  """`fn` run by each replica of `strategy` on its contiguous share of every tensor of
  `batch`; each output summed over the replicas, as numpy."""

  def share(context):
    index, count = context.replica_id_in_sync_group, context.num_replicas_in_sync
    return tf.nest.map_structure(
        lambda x: x[index * (x.shape[0] // count):(index + 1) * (x.shape[0] // count)], batch)

  split = strategy.experimental_distribute_values_from_function(share)
  outputs = tf.function(lambda b: strategy.run(fn, args=(b,)))(split)
  return tf.nest.map_structure(
      lambda x: sum(v.numpy() for v in strategy.experimental_local_results(x)), outputs)


# Keras' synchronized BN, like the originals' cross-replica BN, takes the variance as
# E[x^2] - E[x]^2 of cross-replica sums. Where a channel's mean is large against its spread
# (the stem conv of images in [0, 1]) that cancellation alone moves the summed 2-replica
# gradient of the first layers by up to 0.4% of its norm from the 1-replica one (Suave, six
# initialisations), so element-wise tolerances fail at random. A two-pass variance gives
# 0.002%; BN that is not synchronized 86% (median over variables).
SPLIT_GRADIENT_TOLERANCE = 2e-2


def assert_gradients_match(variables, got, want, tolerance=SPLIT_GRADIENT_TOLERANCE):
  """Each variable's gradient in `got` is within `tolerance` of its norm in `want`
  (+1e-5 absolute, for gradients that are zero up to rounding, such as a bias under BN)."""
  for variable, got_grad, want_grad in zip(variables, got, want, strict=True):
    want_grad = np.asarray(want_grad)
    error = np.linalg.norm(np.asarray(got_grad) - want_grad)
    scale = np.linalg.norm(want_grad)
    assert error <= tolerance * scale + 1e-5, (
        f"{variable.path}: gradient differs by {error:.3g}, {error / max(scale, 1e-12):.2%} "
        f"of its norm {scale:.3g}")


def fixed_batch_losses(config, strategy, steps):
  """Losses of `steps` updates on one fixed batch of the real input pipeline."""
  exp = experiment.resolve(config)
  run = trainer.Trainer(exp, "/tmp/unused", strategy)
  dataset = strategy.distribute_datasets_from_function(
      trainer.make_train_dataset_fn(exp, run.method))
  batch = next(iter(dataset))

  @tf.function
  def step():
    metrics = strategy.run(run.method.train_step, args=(batch, run.optimizer))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, metrics["loss"], axis=None)

  return [float(step()) for _ in range(steps)]
