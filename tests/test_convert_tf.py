"""python -m tfssl.convert on google-research/simclr's and fnc's TF checkpoints.

The references are written by TF's own layers and checkpoint writers, in a subprocess
with Keras 2 (tf_keras, as the originals ran): the TF1 graphs with tf.compat.v1.layers in
the originals' call order (so TF itself names the variables `conv2d_17`,
`batch_normalization_17`...), the TF2 model as Keras 2 layers with tf2/resnet.py's and
tf2/model.py's attributes (so TF's object graph gives the paths), saved as run.py saves
them (a SavedModel with `trainable_variables_list`, a tf.train.Checkpoint with an
optimizer). The converted module's outputs must equal what those networks compute on the
same images, batch norm in inference mode.
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfssl import config as config_lib
from tfssl import convert
from tfssl import experiment
from tfssl import export as export_lib
from tfssl import methods
from tfssl import trainer
from tfssl.errors import UserError

_WRITE_RELEASES = r"""
import contextlib, os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
import tensorflow as tf

out = sys.argv[1]
rng = np.random.default_rng(0)
# Even-sized inputs: where TF's SAME max-pool and a symmetric one differ.
images = rng.uniform(size=(2, 64, 64, 3)).astype(np.float32)
ref = {"images": images}
UNITS = {18: ("basic", (2, 2, 2, 2)), 50: ("bottleneck", (3, 4, 6, 3))}


def random_value(name, shape):
  # Inference-mode batch norm must use its statistics; He-scaled kernels keep the
  # activations of a deep random net in range.
  leaf = name.split("/")[-1].split(":")[0]
  if leaf in ("gamma", "moving_variance"):
    return rng.uniform(0.5, 1.5, shape)
  if leaf in ("beta", "moving_mean", "bias"):
    return rng.uniform(-0.2, 0.2, shape)
  fan_in = np.prod(shape[:-1]) if len(shape) > 1 else 1
  return rng.normal(0, np.sqrt(2.0 / fan_in), shape)


# --- TF1: simclr's resnet.py / model_util.py, graph mode ---------------------------------
L = tf.compat.v1.layers


def tf1_conv(x, filters, kernel, strides):
  if strides > 1:  # fixed_padding
    total = kernel - 1
    x = tf.pad(x, [[0, 0], [total // 2, total - total // 2], [total // 2, total - total // 2], [0, 0]])
  return L.conv2d(x, filters, kernel, strides, padding="SAME" if strides == 1 else "VALID",
                  use_bias=False)


def tf1_bn(x, relu=True, center=True):
  x = L.batch_normalization(x, momentum=0.9, epsilon=1e-5, center=center, training=False,
                            fused=x.shape.ndims == 4)
  return tf.nn.relu(x) if relu else x


def tf1_resnet(x, depth, width):
  kind, units = UNITS[depth]
  x = tf1_conv(x, 64 * width, 7, 2)
  x = tf1_bn(x)
  x = L.max_pooling2d(x, 3, 2, padding="SAME")
  for stage, (count, strides) in enumerate(zip(units, (1, 2, 2, 2))):
    filters = 64 * width * 2 ** stage
    for unit in range(count):
      s = strides if unit == 0 else 1
      shortcut = x
      if unit == 0:
        out_filters = filters * (4 if kind == "bottleneck" else 1)
        shortcut = tf1_bn(tf1_conv(x, out_filters, 1, s), relu=False)
      if kind == "bottleneck":
        y = tf1_bn(tf1_conv(x, filters, 1, 1))
        y = tf1_bn(tf1_conv(y, filters, 3, s))
        y = tf1_bn(tf1_conv(y, 4 * filters, 1, 1), relu=False)
      else:
        y = tf1_bn(tf1_conv(x, filters, 3, s))
        y = tf1_bn(tf1_conv(y, filters, 3, 1), relu=False)
      x = tf.nn.relu(y + shortcut)
  return tf.reduce_mean(x, [1, 2])


def tf1_heads(hiddens, scope, num_layers, out_dim, num_classes, head_on):
  outputs = [hiddens]
  with tf.compat.v1.variable_scope(scope, reuse=tf.compat.v1.AUTO_REUSE):
    for j in range(num_layers):
      last = j == num_layers - 1
      with tf.compat.v1.variable_scope(f"nl_{j}", reuse=tf.compat.v1.AUTO_REUSE):
        h = L.dense(outputs[-1], out_dim if last else int(hiddens.shape[-1]), use_bias=False)
        h = tf1_bn(h, relu=False, center=not last)
      outputs.append(h if last else tf.nn.relu(h))
  with tf.compat.v1.variable_scope("head_supervised"):
    with tf.compat.v1.variable_scope("linear_layer", reuse=tf.compat.v1.AUTO_REUSE):
      logits = L.dense(outputs[head_on], num_classes)
  return outputs, logits


def write_tf1(name, depth, scope, num_layers, fnc_extras=False, optimizer=True, head_on=0):
  with tf.Graph().as_default():
    x = tf.compat.v1.placeholder(tf.float32, [None, 64, 64, 3])
    with tf.compat.v1.variable_scope("base_model"):
      hiddens = tf1_resnet(x, depth, 1)
    outputs, logits = tf1_heads(hiddens, scope, num_layers, 32, 10, head_on)
    if fnc_extras:  # (the stem of) fnc's EMA network and its memory bank: not converted
      with tf.compat.v1.variable_scope("ema_model"):
        with tf.compat.v1.variable_scope("base_model"):
          tf1_bn(tf1_conv(x, 64, 7, 2))
      with tf.compat.v1.variable_scope("memory"):
        tf.compat.v1.get_variable("memory", [64, 32])
    if optimizer:
      step = tf.compat.v1.train.get_or_create_global_step()
      tf.compat.v1.train.MomentumOptimizer(0.1, 0.9).minimize(
          tf.reduce_sum(logits) + tf.reduce_sum(outputs[-1]), global_step=step)
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      for variable in tf.compat.v1.global_variables():
        if variable.dtype.base_dtype == tf.float32:
          variable.load(random_value(variable.name, variable.shape.as_list()), session)
      got = session.run([hiddens, logits] + outputs[1:], {x: images})
      os.makedirs(f"{out}/{name}")
      tf.compat.v1.train.Saver().save(session, f"{out}/{name}/model.ckpt", global_step=100)
  ref[f"{name}_default"], ref[f"{name}_logits"] = got[:2]
  for j, value in enumerate(got[2:], start=1):
    ref[f"{name}_proj_{j}"] = value


write_tf1("simclr_tf1", 50, "head_contrastive", 3)
# As FNC's (and SimCLRv2's) fine-tuned releases: the linear head on projection layer 1.
write_tf1("fnc", 50, "head_contrastive_instance", 2, fnc_extras=True, optimizer=False, head_on=1)
# Basic blocks: simclr projects the shortcut of every stage's first unit, stage 1's too.
write_tf1("simclr_tf1_r18", 18, "head_contrastive", 2, optimizer=False)

# Selective kernels (sk1): the ResNet-D stem of three 3x3 convs, SK convs in the units
# (only the start of such a net: enough to be refused).
with tf.Graph().as_default():
  x = tf.compat.v1.placeholder(tf.float32, [None, 64, 64, 3])
  with tf.compat.v1.variable_scope("base_model"):
    y = tf1_bn(tf1_conv(x, 32, 3, 2))
    y = tf1_bn(tf1_conv(y, 32, 3, 1))
    tf1_conv(y, 64, 3, 1)
  with tf.compat.v1.Session() as session:
    session.run(tf.compat.v1.global_variables_initializer())
    tf.compat.v1.train.Saver().save(session, f"{out}/simclr_tf1_sk1/model.ckpt", global_step=1)


# --- TF2: tf2/resnet.py and tf2/model.py's layers, their attribute names -----------------
K = tf.keras.layers


class BatchNormRelu(K.Layer):
  def __init__(self, relu=True, center=True, **kwargs):
    super().__init__(**kwargs)
    self.relu = relu
    self.bn = K.BatchNormalization(momentum=0.9, epsilon=1e-5, center=center, fused=False)

  def call(self, x, training):
    x = self.bn(x, training=training)
    return tf.nn.relu(x) if self.relu else x


class FixedPadding(K.Layer):
  def __init__(self, kernel, **kwargs):
    super().__init__(**kwargs)
    self.kernel = kernel

  def call(self, x, training):
    total = self.kernel - 1
    return tf.pad(x, [[0, 0], [total // 2, total - total // 2],
                      [total // 2, total - total // 2], [0, 0]])


class Conv2dFixedPadding(K.Layer):
  def __init__(self, filters, kernel, strides, **kwargs):
    super().__init__(**kwargs)
    self.fixed_padding = FixedPadding(kernel) if strides > 1 else None
    self.conv2d = K.Conv2D(filters, kernel, strides, use_bias=False,
                           padding="SAME" if strides == 1 else "VALID")

  def call(self, x, training):
    if self.fixed_padding:
      x = self.fixed_padding(x, training=training)
    return self.conv2d(x, training=training)


class IdentityLayer(K.Layer):
  def call(self, x, training):
    return tf.identity(x)


class DropBlock(K.Layer):  # keep_prob None: the identity, as the released configs
  def call(self, x, training):
    return x


class BottleneckBlock(K.Layer):
  def __init__(self, filters, strides, use_projection=False, **kwargs):
    super().__init__(**kwargs)
    self.projection_layers = []
    if use_projection:
      self.projection_layers.append(Conv2dFixedPadding(4 * filters, 1, strides))
      self.projection_layers.append(BatchNormRelu(relu=False))
    self.shortcut_dropblock = DropBlock()
    self.conv_relu_dropblock_layers = [
        Conv2dFixedPadding(filters, 1, 1), BatchNormRelu(), DropBlock(),
        Conv2dFixedPadding(filters, 3, strides), BatchNormRelu(), DropBlock(),
        Conv2dFixedPadding(4 * filters, 1, 1), BatchNormRelu(relu=False), DropBlock()]

  def call(self, x, training):
    shortcut = x
    for layer in self.projection_layers:
      shortcut = layer(shortcut, training=training)
    shortcut = self.shortcut_dropblock(shortcut, training=training)
    for layer in self.conv_relu_dropblock_layers:
      x = layer(x, training=training)
    return tf.nn.relu(x + shortcut)


class BlockGroup(K.Layer):
  def __init__(self, filters, blocks, strides, **kwargs):
    super().__init__(**kwargs)
    self.layers = [BottleneckBlock(filters, strides, use_projection=True)]
    self.layers += [BottleneckBlock(filters, 1) for _ in range(1, blocks)]

  def call(self, x, training):
    for layer in self.layers:
      x = layer(x, training=training)
    return x


class Resnet(K.Layer):
  def __init__(self, units, width, **kwargs):
    super().__init__(**kwargs)
    self.initial_conv_relu_max_pool = [
        Conv2dFixedPadding(64 * width, 7, 2), IdentityLayer(name="initial_conv"),
        BatchNormRelu(), K.MaxPooling2D(3, 2, padding="SAME"),
        IdentityLayer(name="initial_max_pool")]
    self.block_groups = [BlockGroup(64 * width * 2 ** i, count, 1 if i == 0 else 2,
                                    name=f"block_group{i + 1}")
                         for i, count in enumerate(units)]

  def call(self, x, training):
    for layer in self.initial_conv_relu_max_pool:
      x = layer(x, training=training)
    for layer in self.block_groups:
      x = layer(x, training=training)
    return tf.reduce_mean(x, [1, 2])


class LinearLayer(K.Layer):
  def __init__(self, num_classes, use_bias=True, use_bn=False, **kwargs):
    super().__init__(**kwargs)
    self.num_classes, self.use_bias, self.use_bn = num_classes, use_bias, use_bn
    if use_bn:
      self.bn_relu = BatchNormRelu(relu=False, center=use_bias)

  def build(self, input_shape):
    units = self.num_classes(input_shape) if callable(self.num_classes) else self.num_classes
    self.dense = K.Dense(units, use_bias=self.use_bias and not self.use_bn)
    super().build(input_shape)

  def call(self, x, training):
    x = self.dense(x)
    return self.bn_relu(x, training=training) if self.use_bn else x


class ProjectionHead(K.Layer):
  def __init__(self, num_layers, out_dim, **kwargs):
    self.linear_layers = [
        LinearLayer(lambda shape: int(shape[-1]), use_bias=True, use_bn=True, name=f"nl_{j}")
        if j != num_layers - 1 else
        LinearLayer(out_dim, use_bias=False, use_bn=True, name=f"nl_{j}")
        for j in range(num_layers)]
    super().__init__(**kwargs)

  def call(self, x, training):
    outputs = [x]
    for j, layer in enumerate(self.linear_layers):
      h = layer(outputs[-1], training)
      outputs.append(h if j == len(self.linear_layers) - 1 else tf.nn.relu(h))
    return outputs


class SupervisedHead(K.Layer):
  def __init__(self, num_classes, **kwargs):
    super().__init__(name="head_supervised", **kwargs)
    self.linear_layer = LinearLayer(num_classes)

  def call(self, x, training):
    return self.linear_layer(x, training)


class Model(tf.keras.models.Model):
  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.resnet_model = Resnet((3, 4, 6, 3), 1)
    self._projection_head = ProjectionHead(3, 32)
    self.supervised_head = SupervisedHead(10)

  def call(self, x, training):
    hiddens = self.resnet_model(x, training=training)
    projections = self._projection_head(hiddens, training)
    return hiddens, projections, self.supervised_head(hiddens, training)


model = Model()
model(tf.constant(images), training=False)
for variable in model.variables:
  variable.assign(random_value(variable.name, variable.shape.as_list()))
hiddens, projections, logits = model(tf.constant(images), training=False)
ref["simclr_tf2_default"], ref["simclr_tf2_logits"] = hiddens.numpy(), logits.numpy()
for j, value in enumerate(projections[1:], start=1):
  ref[f"simclr_tf2_proj_{j}"] = value.numpy()


class SimCLRModel(tf.Module):  # run.py's build_saved_model
  def __init__(self, model):
    self.model = model
    self.trainable_variables_list = model.trainable_variables

  @tf.function
  def __call__(self, inputs, trainable):
    hiddens, _, logits = self.model(inputs, training=trainable)
    return {"final_avg_pool": hiddens, "logits_sup": logits}


module = SimCLRModel(model)
spec = tf.TensorSpec([None, None, None, 3], tf.float32)
module.__call__.get_concrete_function(spec, trainable=True)
module.__call__.get_concrete_function(spec, trainable=False)
tf.saved_model.save(module, f"{out}/simclr_tf2/saved_model")
optimizer = tf.keras.optimizers.SGD(0.1, momentum=0.9)
optimizer.build(model.trainable_variables)
checkpoint = tf.train.Checkpoint(model=model, global_step=tf.Variable(100, dtype=tf.int64),
                                 optimizer=optimizer)
tf.train.CheckpointManager(checkpoint, f"{out}/simclr_tf2_ckpt", max_to_keep=1).save()


class SelectiveKernelStem(tf.Module):  # tf2/resnet.py's paths of an sk1 model's first layers
  def __init__(self):
    conv = lambda: tf.Module()
    self.initial_conv_relu_max_pool = [conv(), IdentityLayer(), conv(), IdentityLayer(), conv()]
    for layer in self.initial_conv_relu_max_pool[::2]:
      layer.conv2d = tf.Module()
      layer.conv2d.kernel = tf.Variable(tf.zeros([3, 3, 3, 32]))


sk_model = tf.Module()
sk_model.resnet_model = SelectiveKernelStem()
tf.train.Checkpoint(model=sk_model).save(f"{out}/simclr_tf2_sk1/ckpt")


# --- TF1 Hub modules: Revisiting's and S4L's models/resnet.py (v2, bottleneck) -----------
# filters_factor 1 (a 16-channel stem: both codebases build any factor) keeps them small;
# their batch norms are tf.layers' defaults (epsilon 1e-3).
def v2_bn(x):
  return L.batch_normalization(x, fused=True, training=False)


def pad(x, kernel):
  total = kernel - 1
  return tf.pad(x, [[0, 0], [total // 2, total - total // 2], [total // 2, total - total // 2], [0, 0]])


def v2_unit(x, filters, strides, scoped, no_shortcut=False):
  scope = tf.compat.v1.variable_scope if scoped else (lambda name: contextlib.nullcontext())
  shortcut = x
  x = tf.nn.relu(v2_bn(x))
  with scope("proj"):
    if strides > 1 or filters != x.shape[-1]:
      shortcut = L.conv2d(x, filters, 1, strides, padding="VALID", use_bias=False)
  with scope("a"):
    x = L.conv2d(x, filters // 4, 1, padding="SAME", use_bias=False)
  with scope("b"):
    x = pad(tf.nn.relu(v2_bn(x)), 3)
    x = L.conv2d(x, filters // 4, 3, strides, padding="VALID", use_bias=False)
  with scope("c"):
    x = tf.nn.relu(v2_bn(x))
    x = L.conv2d(x, filters, 1, padding="SAME", use_bias=False)
  return x if no_shortcut else x + shortcut


def revnet(x, filters_factor=1):
  # Revisiting's revnet: a root conv to 4 x filters channels, units [x1, x2] ->
  # [x2, x1 + F(x2)] with F a shortcut-free bottleneck_v2, pool and zero channels between
  # stages, a final BN + ReLU (--last_relu True).
  x = L.conv2d(pad(x, 7), 64 * filters_factor, 7, 2, padding="VALID", use_bias=False)
  x = L.max_pooling2d(pad(x, 3), 3, 2, padding="VALID")
  for stage, count in enumerate((3, 4, 6, 3)):
    if stage:
      x = L.average_pooling2d(x, 2, 2, padding="SAME")
      x = tf.pad(x, [[0, 0], [0, 0], [0, 0], [x.shape[3] // 2, x.shape[3] // 2]])
    for _ in range(count):
      x1, x2 = tf.split(x, 2, 3)
      x = tf.concat([x2, x1 + v2_unit(x2, x2.shape[-1], 1, False, no_shortcut=True)], 3)
  x = tf.nn.relu(v2_bn(x))
  return tf.reduce_mean(x, [1, 2], keepdims=True)


def v2_resnet(x, scoped, filters_factor=1):
  filters = 16 * filters_factor
  with (tf.compat.v1.variable_scope("root_block") if scoped else contextlib.nullcontext()):
    x = L.conv2d(pad(x, 7), filters, 7, 2, padding="VALID", use_bias=False)
    x = L.max_pooling2d(pad(x, 3), 3, 2, padding="VALID")
  for stage, (count, strides) in enumerate(zip((3, 4, 6, 3), (1, 2, 2, 2)), start=1):
    filters = filters * 4 if stage == 1 else filters * 2
    with (tf.compat.v1.variable_scope(f"block{stage}") if scoped else contextlib.nullcontext()):
      for unit in range(1, count + 1):
        with (tf.compat.v1.variable_scope(f"unit{unit}") if scoped else contextlib.nullcontext()):
          x = v2_unit(x, filters, strides if unit == 1 else 1, scoped)
  x = tf.nn.relu(v2_bn(x))
  return tf.reduce_mean(x, [1, 2], keepdims=True)


def write_hub_module(name, scoped, heads, net=v2_resnet):
  with tf.Graph().as_default():
    x = tf.compat.v1.placeholder(tf.float32, [None, None, None, 3])
    pre_logits = net(x, scoped) if net is v2_resnet else net(x)
    outputs = {"pre_logits": tf.squeeze(pre_logits, [1, 2])}
    for head, classes in heads.items():  # Revisiting: the net's own logits; S4L: linear()
      outputs[head] = tf.squeeze(L.conv2d(pre_logits, classes, 1, name=None if head ==
                                          "logits" else head), [1, 2])
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      for variable in tf.compat.v1.global_variables():
        variable.load(random_value(variable.name, variable.shape.as_list()), session)
      # Revisiting's and S4L's input pipelines feed the module [-1, 1] images.
      got = session.run(outputs, {x: images * 2 - 1})
      builder = tf.compat.v1.saved_model.Builder(f"{out}/{name}")
      builder.add_meta_graph_and_variables(session, [tf.compat.v1.saved_model.SERVING])
      builder.save()
  for key, value in got.items():
    ref[f"{name}_{key}"] = value


def v1_unit(x, filters, strides):
  # Revisiting's bottleneck_v1: the shortcut conv + BN first, then conv-BN(-ReLU) x 3.
  shortcut = x
  if strides > 1 or filters != x.shape[-1]:
    shortcut = v2_bn(L.conv2d(x, filters, 1, strides, padding="SAME", use_bias=False))
  x = tf.nn.relu(v2_bn(L.conv2d(x, filters // 4, 1, padding="SAME", use_bias=False)))
  x = L.conv2d(pad(x, 3), filters // 4, 3, strides, padding="VALID", use_bias=False)
  x = tf.nn.relu(v2_bn(x))
  x = v2_bn(L.conv2d(x, filters, 1, padding="SAME", use_bias=False))
  return tf.nn.relu(x + shortcut)


def v1_resnet(x, root_conv_stride=2, strides=(2, 2, 2), filters_factor=1):
  # Revisiting's resnet(mode="v1"); its patch tasks: root_conv_stride=1, strides=(2, 2, 1).
  filters = 16 * filters_factor
  x = L.conv2d(pad(x, 7), filters, 7, root_conv_stride, padding="VALID", use_bias=False)
  x = L.max_pooling2d(pad(tf.nn.relu(v2_bn(x)), 3), 3, 2, padding="VALID")
  for stage, (count, stage_strides) in enumerate(zip((3, 4, 6, 3), (1,) + strides), start=1):
    filters = filters * 4 if stage == 1 else filters * 2
    for unit in range(1, count + 1):
      x = v1_unit(x, filters, stage_strides if unit == 1 else 1)
  return tf.reduce_mean(x, [1, 2], keepdims=True)


def patch_net(x):
  return v1_resnet(x, root_conv_stride=1, strides=(2, 2, 1))


def write_patch_module(name, embed_dim):
  # The module maps 64-px patches to the net's outputs (patch_utils.apply_model); the
  # reference is Revisiting's linear evaluation of it: a 192-px image cut into 3 x 3
  # patches (patch_jitter 0), each standardised (per_image_standardization), every output
  # averaged over the nine (combine_patches=avg_pool).
  with tf.Graph().as_default():
    x = tf.compat.v1.placeholder(tf.float32, [None, 64, 64, 3])
    pre_logits = patch_net(x)
    embedding = L.conv2d(pre_logits, embed_dim, 1)
    whole = tf.compat.v1.placeholder(tf.float32, [None, 192, 192, 3])
    patches = tf.reshape(tf.transpose(tf.reshape(whole, [-1, 3, 64, 3, 64, 3]),
                                      [0, 1, 3, 2, 4, 5]), [-1, 64, 64, 3])
    standardized = tf.map_fn(tf.image.per_image_standardization, patches)
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      for variable in tf.compat.v1.global_variables():
        variable.load(random_value(variable.name, variable.shape.as_list()), session)
      images192 = rng.uniform(size=(2, 192, 192, 3)).astype(np.float32)
      feed = session.run(standardized, {whole: images192})
      per_patch = session.run(tf.squeeze(pre_logits, [1, 2]), {x: feed})
      builder = tf.compat.v1.saved_model.Builder(f"{out}/{name}")
      builder.add_meta_graph_and_variables(session, [tf.compat.v1.saved_model.SERVING])
      builder.save()
  ref[f"{name}_images"] = images192
  ref[f"{name}_pre_logits"] = per_patch.reshape(2, 9, -1).mean(axis=1)


write_hub_module("revisiting_hub", scoped=False, heads={"logits": 4})
write_hub_module("revisiting_v1_hub", scoped=False, heads={"logits": 8}, net=v1_resnet)
write_patch_module("jigsaw_hub", embed_dim=8)
write_hub_module("s4l_hub", scoped=True, heads={"rotations": 4, "classes": 10})
write_hub_module("revnet_hub", scoped=False, heads={"logits": 4}, net=revnet)
np.savez(f"{out}/reference.npz", **ref)
"""


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
  if importlib.util.find_spec("tf_keras") is None:
    pytest.skip("tf_keras not installed (a dependency of tfssl: pip install -e '.[test]'); "
                "the references are Keras 2 / tf.compat.v1.layers networks")
  out = tmp_path_factory.mktemp("tf_releases")
  subprocess.run([sys.executable, "-c", _WRITE_RELEASES, str(out)], check=True,
                 env=dict(os.environ, TF_USE_LEGACY_KERAS="1"))
  return out, dict(np.load(out / "reference.npz"))


@pytest.fixture(scope="module")
def converted(releases, tmp_path_factory):
  out, _ = releases
  dirs = tmp_path_factory.mktemp("tf_modules")
  jobs = {"simclr_tf1": ("simclr_tf1", "simclr_tf1/model.ckpt-100", "resnet50_v1"),
          "fnc": ("fnc", "fnc", "resnet50_v1"),
          "simclr_tf2": ("simclr_tf2", "simclr_tf2", "resnet50_v1")}
  return {name: convert.convert(fmt, str(out / path), model, str(dirs / name))
          for name, (fmt, path, model) in jobs.items()}


def assert_relative_close(got, want, tolerance=1e-4):
  error = np.max(np.abs(got - want)) / np.max(np.abs(want))
  assert error < tolerance, f"max error {error:.2e} of the largest value"


def outputs(module_dir, images):
  return {k: v.numpy() for k, v in tf.saved_model.load(module_dir)(
      tf.constant(images), training=False).items()}


@pytest.mark.parametrize("name,reference,layers", [
    ("simclr_tf1", "simclr_tf1", 3), ("fnc", "fnc", 2), ("simclr_tf2", "simclr_tf2", 3)])
def test_features_projections_and_logits_match_the_original(releases, converted, name,
                                                            reference, layers):
  _, ref = releases
  got = outputs(converted[name], ref["images"])
  assert_relative_close(got["default"], ref[f"{reference}_default"])
  assert_relative_close(got["logits"], ref[f"{reference}_logits"])
  for j in range(1, layers + 1):
    assert_relative_close(got[f"proj_{j}"], ref[f"{reference}_proj_{j}"])
  info = export_lib.read_module_info(converted[name])
  assert info["method"] == "simclr" and info["num_classes"] == 10
  assert info["config"]["input_normalization"] == "raw"
  assert info["config"]["stem_pool_padding"] == "same"
  assert info["converted_from"]["format"] == name
  assert len(info["converted_from"]["sha256"]) == 64


def test_the_linear_heads_input_layer_is_read_from_the_tf1_graph(releases, converted, tmp_path):
  """fnc's reference feeds head_supervised from projection layer 1 (the fine-tuned
  releases' layout): the .meta graph says so, a contradicting flag is refused."""
  out, _ = releases
  info = export_lib.read_module_info(converted["fnc"])
  assert info["config"]["ft_proj_selector"] == 1
  with pytest.raises(UserError, match="from layer 1, not --ft_proj_selector=0"):
    convert.convert("fnc", str(out / "fnc"), "resnet50_v1", str(tmp_path / "m"),
                    ft_proj_selector=0)


def test_a_truncated_checkpoint_says_the_copy_is_incomplete(releases, tmp_path):
  out, _ = releases
  for file in (out / "simclr_tf1_r18").glob("model.ckpt-100.*"):
    data = file.read_bytes()
    (tmp_path / file.name).write_bytes(data[:len(data) // 2] if ".data" in file.name else data)
  with pytest.raises(UserError, match="Is the copy complete"):
    convert.convert("simclr_tf1", str(tmp_path / "model.ckpt-100"), "resnet18_v1",
                    str(tmp_path / "m"))


def test_tf_formats_refuse_an_input_normalization_flag(releases, tmp_path):
  out, _ = releases
  with pytest.raises(UserError, match="--input_normalization is for the PyTorch formats"):
    convert.convert("simclr_tf2", str(out / "simclr_tf2"), "resnet50_v1", str(tmp_path / "m"),
                    input_normalization="imagenet")


def test_a_training_checkpoint_reads_as_its_saved_model(releases):
  """tf2/run.py's tf.train.Checkpoint (model, optimizer, global_step) holds the network
  along the same attribute paths as the SavedModel that run.py exports."""
  out, _ = releases
  plans = [convert.FORMATS.get("simclr_tf2")(
      convert.read_checkpoint(str(out / path), "simclr_tf2"), str(out / path), "resnet50_v1")
      for path in ("simclr_tf2", "simclr_tf2_ckpt")]
  saved, trained = (plan.arrays for plan in plans)
  assert saved.keys() == trained.keys()
  for part in saved:
    assert saved[part].keys() == trained[part].keys()
    for path, value in saved[part].items():
      np.testing.assert_array_equal(trained[part][path], value)
  assert plans[1].state.unused() == []


def test_the_stem_pool_padding_is_what_makes_them_match(releases, converted):
  """Built with torchvision's symmetric stem pool, the same weights compute other
  features: the option is not decoration."""
  _, ref = releases
  method_cls = methods.get_method("simclr")
  fields = dict(export_lib.read_module_info(converted["fnc"])["config"], stem_pool_padding="")
  config = config_lib.build_config(method_cls, **{k: v for k, v in fields.items()
                                                   if k in method_cls.default_config()
                                                   or k in config_lib.base_config()})
  method = method_cls(config, 10, config.image_size)
  method.build()
  loaded = tf.saved_model.load(converted["fnc"])
  values = {v.name: v for v in loaded.variables}
  for variable in method.backbone.weights:
    variable.assign(values[variable.path + ":0"].numpy())
  features = method.backbone(ref["images"], training=False)["default"].numpy()
  error = np.max(np.abs(features - ref["fnc_default"])) / np.max(np.abs(ref["fnc_default"]))
  assert error > 1e-2


def test_init_from_a_converted_simclr_module_needs_its_backbone_options(converted):
  config = config_lib.build_config(methods.get_method("simclr"), model="resnet50_v1",
                                   init_from=converted["fnc"], input_normalization="raw")
  with pytest.raises(UserError, match="--config.stem_pool_padding=same"):
    experiment.resolve(config)
  config = config_lib.build_config(methods.get_method("simclr"), model="resnet50_v1",
                                   init_from=converted["fnc"], input_normalization="raw",
                                   stem_pool_padding="same", image_size=224)
  assert experiment.resolve(config).init_checkpoint.startswith(converted["fnc"])


def test_simclr_fine_tuning_starts_from_the_converted_release(releases, converted):
  """SimCLRv2's fine-tuning from projection layer 1, --init_from the converted TF2 release:
  the backbone and that layer start as the release's, the new linear head at zero."""
  _, ref = releases
  method_cls = methods.get_method("simclr")
  config = config_lib.build_config(
      method_cls, model="resnet50_v1", image_size=224, input_normalization="raw",
      stem_pool_padding="same", train_mode="finetune", ft_proj_selector=1, proj_out_dim=32)
  method = method_cls(config, 10, 224)
  method.build()
  trainer.initialize_from(method, os.path.join(converted["simclr_tf2"],
                                               export_lib.MODULE_VARIABLES),
                          tf.distribute.get_strategy())
  reps = method.representations(ref["images"], training=False)
  assert_relative_close(reps["default"].numpy(), ref["simclr_tf2_default"])
  assert_relative_close(reps["proj_1"].numpy(), ref["simclr_tf2_proj_1"])
  assert not np.any(reps["logits"].numpy())


@pytest.fixture(scope="module")
def converted_hub_modules(releases, tmp_path_factory):
  out, _ = releases
  dirs = tmp_path_factory.mktemp("hub_modules")
  models_of = {"revisiting_hub": "resnet50_v2", "s4l_hub": "resnet50_v2",
               "revnet_hub": "revnet50", "revisiting_v1_hub": "resnet50_v1"}
  return {name: convert.convert("tf1_hub", str(out / name), model, str(dirs / name))
          for name, model in models_of.items()}


@pytest.mark.parametrize("name,head", [("revisiting_hub", "logits"), ("s4l_hub", "classes"),
                                       ("revnet_hub", "logits"),
                                       ("revisiting_v1_hub", "logits")])
def test_tf1_hub_module_backbone_and_class_head(releases, converted_hub_modules, name, head):
  _, ref = releases
  got = outputs(converted_hub_modules[name], ref["images"])
  assert_relative_close(got["default"], ref[f"{name}_pre_logits"])
  assert_relative_close(got["logits"], ref[f"{name}_{head}"])
  info = export_lib.read_module_info(converted_hub_modules[name])
  assert (info["method"], info["config"]["model_width"]) == ("supervised", 0.25)
  assert info["config"]["input_normalization"] == ""
  if name == "s4l_hub":
    assert "task heads left out: rotations" in info["converted_from"]["description"]


def test_a_revisiting_patch_task_module_scores_as_its_evaluation_did(releases, tmp_path):
  out, ref = releases
  module = convert.convert("tf1_hub", str(out / "jigsaw_hub"), "resnet50_v1",
                           str(tmp_path / "jigsaw"), patch_task="jigsaw")
  got = outputs(module, ref["jigsaw_hub_images"])
  assert_relative_close(got["default"], ref["jigsaw_hub_pre_logits"])
  info = export_lib.read_module_info(module)
  assert (info["method"], info["config"]["patch_net"], info["config"]["embed_dim"]) == (
      "jigsaw", True, 8)
  # The untrained task head is left out of the module.
  held = getattr(tf.saved_model.load(module), export_lib.TRACKABLES_ATTRIBUTE)
  assert sorted(held.keys()) == ["backbone", "embedding"]
  # The same file read as a whole-image net: its strides are not in the file.
  plain = convert.convert("tf1_hub", str(out / "jigsaw_hub"), "resnet50_v1",
                          str(tmp_path / "plain"))
  assert not np.allclose(outputs(plain, ref["jigsaw_hub_images"])["default"], got["default"],
                         rtol=1e-2)


@pytest.mark.parametrize("fmt,path,patch_task,expected", [
    ("simclr_tf1", "simclr_tf1/model.ckpt-100", "jigsaw", "applies to Revisiting's Hub"),
    ("tf1_hub", "jigsaw_hub", "rotation", "not one of jigsaw, relative_patch_location"),
    ("tf1_hub", "s4l_hub", "jigsaw", "not a Revisiting patch-task module.*classes, rotations"),
])
def test_a_wrong_patch_task_says_why(releases, tmp_path, fmt, path, patch_task, expected):
  out, _ = releases
  with pytest.raises(UserError, match=expected):
    convert.convert(fmt, str(out / path), "resnet50_v2" if path == "s4l_hub" else
                    "resnet50_v1", str(tmp_path / "module"), patch_task=patch_task)
  assert not (tmp_path / "module").exists()


@pytest.mark.parametrize("fmt,path,model,expected", [
    ("simclr_tf1", "simclr_tf1/model.ckpt-100", "resnet18_v1",
     "SimCLR ResNet-50 x1.*use --model=resnet50_v1"),
    ("simclr_tf1", "simclr_tf1_r18", "resnet18_v1", "stage 1.*bottleneck"),
    ("simclr_tf1", "simclr_tf2", "resnet50_v1", "TF2 checkpoint.*--from=simclr_tf2"),
    ("simclr_tf2", "fnc", "resnet50_v1", "TF1 checkpoint.*--from=simclr_tf1 or --from=fnc"),
    ("simclr_tf1", "fnc", "resnet50_v1", "head_contrastive_instance`, fnc.s layout: use --from=fnc"),
    ("simclr_tf1", "no_such_dir", "resnet50_v1", "no TF checkpoint there"),
    ("simclr_tf1", "simclr_tf1_sk1", "resnet50_v1", "selective-kernel \\(sk1\\).*not supported"),
    ("simclr_tf2", "simclr_tf2_sk1", "resnet50_v1", "selective-kernel \\(sk1\\).*not supported"),
    ("fnc", "simclr_tf1/model.ckpt-100", "resnet50_v1", "head_contrastive`.*--from=simclr_tf1"),
    ("tf1_hub", "s4l_hub", "resnet50_v1", "S4L ResNet-50 v2 x0.25.*use --model=resnet50_v2"),
    ("tf1_hub", "revnet_hub", "resnet50_v2", "Revisiting RevNet-50 x0.25.*use --model=revnet50"),
    ("tf1_hub", "simclr_tf1", "resnet50_v2", "neither S4L.*nor Revisiting"),
    ("tf1_hub", "revisiting_v1_hub", "resnet50_v2",
     "Revisiting ResNet-50 v1 x0.25.*use --model=resnet50_v1"),
])
def test_a_tf_checkpoint_that_does_not_fit_says_what_it_is(releases, tmp_path, fmt, path,
                                                           model, expected):
  out, _ = releases
  with pytest.raises(UserError, match=expected):
    convert.convert(fmt, str(out / path), model, str(tmp_path / "module"))
  assert not (tmp_path / "module").exists()
