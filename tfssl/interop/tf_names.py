"""TensorFlow checkpoints of google-research/simclr and fnc -> tfssl variable paths.

Two layouts, read with TF's own checkpoint reader (so gs:// paths work):

- TF1 (simclr's and fnc's root code, tf.layers under `base_model/`): variables are named
  by creation order, `conv2d`, `conv2d_1`, ... and `batch_normalization`, `_1`, ...: the
  stem, then every residual unit's projection shortcut (first unit of a stage) before its
  own convolutions. Heads: `head_contrastive/nl_J/...` (fnc: `head_contrastive_instance`)
  and `head_supervised/linear_layer/dense/...`. Optimizer slots (`.../Momentum`),
  `global_step`, fnc's `ema_model/` and `memory/` are not part of the network.
- TF2 (simclr's tf2/ code, Keras layers in attributes): a tf.train.Checkpoint or a
  SavedModel's variables, keyed through the object graph by attribute paths such as
  `model/resnet_model/block_groups/G/layers/U/conv_relu_dropblock_layers/K/conv2d/kernel`.
  A variable may be reachable along several paths (the SavedModel also lists it in
  `trainable_variables_list`); each is matched by the path that names its layer.

Both become {tfssl path: array} for `resnetN_v1` (same strides, the same explicit padding
of strided convolutions; the stem max-pool needs `stem_pool_padding="same"`) and for
tfssl's SimCLR heads (`dense_J`/`bn_J`, `dense`).
"""

import collections
import re

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.core.protobuf import trackable_object_graph_pb2

from tfssl.errors import UserError
from tfssl.interop.torch_names import first_few

_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_VARIABLE_ATTRIBUTE = "VARIABLE_VALUE"
_BLOCKS = {  # depth -> (kind, units per stage): simclr's resnet.py model_params
    18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)), 200: ("bottleneck", (3, 24, 36, 3)),
}
_CONVS_PER_UNIT = {"basic": 2, "bottleneck": 3}
_SELECTIVE_KERNELS = ("selective-kernel (sk1) ResNets are not supported: tfssl has no SK "
                      "convolution nor ResNet-D stem; convert an sk0 model")


class Checkpoint:
  """A checkpoint's network variables by name (TF1) or object path (TF2), with which of
  them have been used. `variables` maps each name to a variable id, so that a TF2
  variable reachable along several paths counts as used once any of them is."""

  def __init__(self, arrays, variable_of, layout, source):
    self.arrays = arrays
    self.variable_of = variable_of
    self.layout = layout  # "tf1" | "tf2"
    self.source = source
    self.used = set()
    # The projection layer head_supervised reads, where the file's graph says (TF1).
    self.head_input = None

  def keys(self):
    return list(self.arrays)

  def take(self, key):
    self.used.add(self.variable_of[key])
    return self.arrays[key]

  def unused(self):
    """The network's variables nothing took (not the optimizer's, the step counter, fnc's
    EMA copy and memory bank), each by its longest (most descriptive) path."""
    paths = {}
    for key in self.arrays:
      variable = self.variable_of[key]
      if variable not in self.used and len(key) > len(paths.get(variable, "")):
        paths[variable] = key
    return sorted(key for key in paths.values() if not _NOT_NETWORK.fullmatch(key))


_NOT_NETWORK = re.compile(r"(global_step|ema_model/.*|memory/.*|optimizer/.*|save_counter|"
                          r"trainable_variables_list/.*)")


def checkpoint_prefix(path):
  """The checkpoint prefix `path` stands for: a prefix itself (model.ckpt-N, ckpt-N), a
  directory with a `checkpoint` state file, a SavedModel directory (its variables), or a
  directory holding a `saved_model/` (simclr's tf2 releases)."""
  if tf.io.gfile.exists(path + ".index"):
    return path
  if tf.io.gfile.isdir(path):
    for saved_model in (path, f"{path.rstrip('/')}/saved_model"):
      variables = f"{saved_model.rstrip('/')}/variables/variables"
      if tf.io.gfile.exists(variables + ".index"):
        return variables
    latest = tf.train.latest_checkpoint(path)
    if latest:
      return latest
    raise UserError(f"--checkpoint {path} is a directory without a TF checkpoint (no "
                    "`checkpoint` state file, no SavedModel variables): pass the checkpoint "
                    "prefix (e.g. .../model.ckpt-250228 or .../ckpt-100) or the directory "
                    "of the release.")
  raise UserError(f"--checkpoint {path}: no TF checkpoint there (looked for {path}.index, a "
                  "SavedModel or a checkpoint directory). Check the path.")


def read_checkpoint(path):
  """A `Checkpoint` of the network variables at `path` (see `checkpoint_prefix`)."""
  prefix = checkpoint_prefix(path)
  # A copy cut short fails in the index or only when a tensor's bytes are read (TF's
  # reader then raises IndexError: "Read less bytes than requested").
  try:
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    if _OBJECT_GRAPH_KEY in shapes:
      return _read_object_graph(reader, path)
    names = [name for name in shapes if not _is_slot(name, shapes)]
    arrays = {name: reader.get_tensor(name) for name in names}
  except (tf.errors.OpError, ValueError, IndexError) as e:
    raise UserError(f"--checkpoint {path}: TF cannot read {prefix} ({e.__class__.__name__}: "
                    f"{str(e).splitlines()[0]}). Is the copy complete?") from e
  checkpoint = Checkpoint(arrays, {name: name for name in names}, "tf1", path)
  checkpoint.head_input = _tf1_head_input(prefix)
  return checkpoint


def _tf1_head_input(prefix):
  """The projection layer `head_supervised` reads in the TF1 graph saved beside the
  checkpoint (`PREFIX.meta`): 0 for the backbone's output, J for the J-th projection
  layer's; None where there is no graph or no such head."""
  meta = prefix + ".meta"
  if not tf.io.gfile.exists(meta):
    return None
  graph = meta_graph_pb2.MetaGraphDef()
  try:
    with tf.io.gfile.GFile(meta, "rb") as f:
      graph.ParseFromString(f.read())
  except Exception:  # pylint: disable=broad-except
    return None  # an unreadable graph only loses the check, the weights are the index's
  for node in graph.graph_def.node:
    if node.name.endswith("head_supervised/linear_layer/dense/MatMul"):
      source = node.input[0].split(":")[0]
      if source.startswith("base_model/") or source.endswith("final_avg_pool"):
        return 0
      # simclr's projection_head: hiddens_list[J] of a middle layer is its ReLU's output.
      match = re.search(r"head_contrastive\w*/Relu(?:_(\d+))?$", source)
      if match:
        return int(match.group(1) or 0) + 1
  return None


def _is_slot(name, names):
  """Optimizer slots are stored beside their variable: `VAR/Momentum`, `VAR/Adam_1`..."""
  return name.rpartition("/")[0] in names


# Children that list other objects' variables or functions again (Keras' SavedModel
# additions, run.py's `trainable_variables_list`) rather than name a layer's attribute.
_ALIASES = re.compile(r"variables|trainable_variables|non_trainable_variables|keras_api|"
                      r"trainable_variables_list|regularization_losses|signatures|"
                      r"__call__|call_and_return.*|_default_save_signature|layer(_with_weights)?-\d+")
_PATHS_PER_OBJECT = 4  # a layer shared by several attributes keeps a few of its paths


def _read_object_graph(reader, source):
  """{attribute path: array} of every variable: breadth-first along attribute edges from
  the root (each object expanded along at most a few paths, as the graph shares objects
  and loops); a variable reachable only through an alias keeps that path."""
  graph = trackable_object_graph_pb2.TrackableObjectGraph()
  graph.ParseFromString(reader.get_tensor(_OBJECT_GRAPH_KEY))
  arrays, variable_of = {}, {}

  def walk(follow_aliases):
    seen = collections.Counter()
    queue = collections.deque([(0, ())])
    while queue:
      node_id, path = queue.popleft()
      if seen[node_id] >= _PATHS_PER_OBJECT:
        continue
      seen[node_id] += 1
      for attribute in graph.nodes[node_id].attributes:
        if attribute.name == _VARIABLE_ATTRIBUTE and path:
          yield "/".join(path), attribute.checkpoint_key
      for child in graph.nodes[node_id].children:
        if follow_aliases or not _ALIASES.fullmatch(child.local_name):
          queue.append((child.node_id, path + (child.local_name,)))

  for key, checkpoint_key in walk(follow_aliases=False):
    variable_of[key] = checkpoint_key
  reached = set(variable_of.values())
  for key, checkpoint_key in walk(follow_aliases=True):
    if checkpoint_key not in reached:
      reached.add(checkpoint_key)
      variable_of[key] = checkpoint_key
  for key, checkpoint_key in variable_of.items():
    arrays[key] = reader.get_tensor(checkpoint_key)
  return Checkpoint(arrays, variable_of, "tf2", source)


# --- the ResNet --------------------------------------------------------------------

def _layer_order(depth):
  """tfssl's (conv layer names, batch-norm layer names), each in the order simclr's TF1
  code creates them."""
  kind, units = _BLOCKS[depth]
  convs, norms = ["stem_conv"], ["stem_bn"]
  for stage, count in enumerate(units, start=1):
    for unit in range(1, count + 1):
      name = f"block{stage}_unit{unit}"
      if unit == 1:
        convs.append(f"{name}_proj")
        norms.append(f"{name}_proj_bn")
      for index in range(1, _CONVS_PER_UNIT[kind] + 1):
        convs.append(f"{name}_conv{index}")
        norms.append(f"{name}_bn{index}")
  return convs, norms


_TF1_LAYER = re.compile(r"base_model/(conv2d|batch_normalization)(?:_(\d+))?/(\w+)")
# TF2 attribute paths (simclr tf2/resnet.py): the stem list, then per unit the shortcut and
# the main branch lists, whose entries hold `conv2d` (Conv2dFixedPadding) or `bn`
# (BatchNormRelu); DropBlock and identity layers sit between them without variables.
_TF2_STEM = re.compile(r"(?:.*/)?resnet_model/initial_conv_relu_max_pool/(\d+)/(conv2d|bn)/(\w+)")
_TF2_UNIT = re.compile(r"(?:.*/)?resnet_model/block_groups/(\d+)/layers/(\d+)/"
                       r"(projection_layers|shortcut_layers|conv_relu_dropblock_layers|"
                       r"conv2d_bn_layers)/(\d+)/(conv2d|bn)/(\w+)")
# Positions of each conv / BN in the main-branch lists.
_TF2_BRANCH = {"conv_relu_dropblock_layers": {"conv2d": (0, 3, 6), "bn": (1, 4, 7)},
               "conv2d_bn_layers": {"conv2d": (0, 2), "bn": (1, 3)}}


def describe_resnet(checkpoint):
  """(depth, width multiplier, cifar stem, text) of the SimCLR ResNet in `checkpoint`, or
  a UserError saying what the file holds."""
  if checkpoint.layout == "tf1":
    convs = sorted((int(m.group(2) or 0), k) for k in checkpoint.keys()
                   if (m := _TF1_LAYER.fullmatch(k)) and m.group(1) == "conv2d")
    if not convs:
      raise UserError(f"{checkpoint.source} has no `base_model/conv2d*` variables: not a "
                      "SimCLR / FNC TF1 checkpoint (its variables: "
                      f"{first_few(sorted(checkpoint.keys()))}). Check --from.")
    stem = checkpoint.arrays[convs[0][1]]
    fits = [depth for depth in _BLOCKS if len(_layer_order(depth)[0]) == len(convs)]
    depth = fits[0] if fits else None
    units = _BLOCKS[depth][1] if depth else None
  else:
    stem_keys = [k for k in checkpoint.keys() if _TF2_STEM.fullmatch(k)]
    if not stem_keys:
      raise UserError(f"{checkpoint.source} has no `resnet_model/initial_conv_relu_max_pool` "
                      "variables: not a SimCLR TF2 checkpoint or SavedModel (it has "
                      f"{first_few(sorted(checkpoint.keys()))}). Check --from.")
    stem_convs = sorted(k for k in stem_keys if _TF2_STEM.fullmatch(k).group(2) == "conv2d")
    if len(stem_convs) > 1 or any("conv2d_0" in k for k in checkpoint.keys()):
      raise UserError(f"{checkpoint.source}: {_SELECTIVE_KERNELS}. Nothing was written.")
    stem = checkpoint.arrays[stem_convs[0]]
    counts = {}
    for key in checkpoint.keys():
      if m := _TF2_UNIT.fullmatch(key):
        group, unit = int(m.group(1)), int(m.group(2))
        counts[group] = max(counts.get(group, 0), unit + 1)
    units = tuple(counts.get(group, 0) for group in range(4))
    bottleneck = any("conv_relu_dropblock_layers" in k for k in checkpoint.keys())
    fits = [d for d, blocks in _BLOCKS.items()
            if blocks == ("bottleneck" if bottleneck else "basic", units)]
    depth = fits[0] if fits else None
  kernel, _, channels = stem.shape[0], stem.shape[2], stem.shape[3]
  if kernel == 3 and checkpoint.layout == "tf1" and depth is None:
    raise UserError(f"{checkpoint.source}: {_SELECTIVE_KERNELS}. Nothing was written.")
  if depth is None:
    raise UserError(f"{checkpoint.source} holds a ResNet of no depth simclr builds "
                    f"({len(convs) if checkpoint.layout == 'tf1' else units} "
                    f"{'convolutions' if checkpoint.layout == 'tf1' else 'units per stage'}).")
  width = channels / 64
  cifar_stem = kernel == 3
  kind = _BLOCKS[depth][0]
  text = (f"SimCLR ResNet-{depth} x{width:g} ({kind} blocks {'-'.join(map(str, units))}, "
          f"{channels}-channel {kernel}x{kernel} {'CIFAR ' if cifar_stem else ''}stem)")
  if kind == "basic":
    raise UserError(f"{checkpoint.source} holds {text}: simclr's basic-block ResNets project "
                    "the shortcut of stage 1's first unit too, which tfssl's ResNets (as "
                    "torchvision's) do not; only the bottleneck depths (50, 101, 152: every "
                    "release) convert. Nothing was written.")
  return depth, width, cifar_stem, text


_BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")


def resnet_arrays(checkpoint, depth):
  """{tfssl path: array} of the SimCLR ResNet of `depth` in `checkpoint`, for resnetN_v1."""
  convs, norms = _layer_order(depth)
  arrays = {}

  def put(layer, variable, key):
    if variable == "kernel" or variable in _BN_VARIABLES:
      arrays[f"{layer}/{variable}"] = checkpoint.take(key)

  for key in checkpoint.keys():
    if checkpoint.layout == "tf1":
      match = _TF1_LAYER.fullmatch(key)
      if match:
        names = convs if match.group(1) == "conv2d" else norms
        index = int(match.group(2) or 0)
        if index < len(names):
          put(names[index], match.group(3), key)
      continue
    if match := _TF2_STEM.fullmatch(key):
      put("stem_conv" if match.group(2) == "conv2d" else "stem_bn", match.group(3), key)
    elif match := _TF2_UNIT.fullmatch(key):
      group, unit, branch, position, kind, variable = match.groups()
      name = f"block{int(group) + 1}_unit{int(unit) + 1}"
      if branch in ("projection_layers", "shortcut_layers"):
        layer = f"{name}_proj" if kind == "conv2d" else f"{name}_proj_bn"
      else:
        positions = _TF2_BRANCH[branch][kind]
        if int(position) not in positions:
          continue
        index = positions.index(int(position)) + 1
        layer = f"{name}_conv{index}" if kind == "conv2d" else f"{name}_bn{index}"
      put(layer, variable, key)
  return arrays


# --- heads ---------------------------------------------------------------------------

_TF1_PROJECTION = re.compile(r"(head_contrastive(?:_instance)?)/nl_(\d+)/(dense|batch_normalization)/(\w+)")
_TF2_PROJECTION = re.compile(r"(?:.*/)?_projection_head/linear_layers/(\d+)/(dense|bn_relu/bn)/(\w+)")
_TF1_SUPERVISED = re.compile(r"head_supervised/linear_layer/dense/(kernel|bias)")
_TF2_SUPERVISED = re.compile(r"(?:.*/)?supervised_head/linear_layer/dense/(kernel|bias)")


def projection_arrays(checkpoint, head_scope=None):
  """{tfssl path: array} of SimCLR's nonlinear projection head (`nl_J`: dense, then BN
  without offset in the last layer) as tfssl's ProjectionHead (`dense_J`, `bn_J`), or
  None where the checkpoint has none. `head_scope`: the TF1 scope (fnc's
  `head_contrastive_instance`); None takes whichever there is."""
  arrays = {}
  for key in checkpoint.keys():
    if checkpoint.layout == "tf1":
      match = _TF1_PROJECTION.fullmatch(key)
      if not match or (head_scope and match.group(1) != head_scope):
        continue
      _, index, kind, variable = match.groups()
    else:
      match = _TF2_PROJECTION.fullmatch(key)
      if not match:
        continue
      index, kind, variable = match.groups()
    layer = f"dense_{index}" if kind == "dense" else f"bn_{index}"
    if kind == "dense" and variable != "kernel":
      continue
    arrays[f"{layer}/{variable}"] = checkpoint.take(key)
  norms = [path for path in arrays if path.startswith("bn_") and path.endswith("/moving_variance")]
  if norms and all(np.all(arrays[path] == 1) and np.all(arrays[path.replace(
      "moving_variance", "moving_mean")] == 0) for path in norms):
    # tf2/model.py builds a projection head even for releases that have none (SimCLR v1):
    # batch-norm statistics never moved from their start mean the head never trained.
    return None
  if not arrays and checkpoint.layout == "tf1" and any(
      k.startswith("head_contrastive") and "/l_0/" in k for k in checkpoint.keys()):
    raise UserError(f"{checkpoint.source} has a linear projection head (proj_head_mode="
                    "linear); tfssl's simclr builds the nonlinear one only.")
  return arrays or None


def supervised_arrays(checkpoint):
  """{tfssl path: array} of `head_supervised`'s linear layer as tfssl's ClassifierHead,
  or None where the checkpoint has none."""
  pattern = _TF1_SUPERVISED if checkpoint.layout == "tf1" else _TF2_SUPERVISED
  arrays = {}
  for key in checkpoint.keys():
    if match := pattern.fullmatch(key):
      arrays[f"dense/{match.group(1)}"] = checkpoint.take(key)
  return arrays or None


def num_projection_layers(arrays):
  return len({path.split("/")[0] for path in arrays if path.startswith("dense_")})


def as_float32(arrays):
  return {path: np.asarray(value, np.float32) for path, value in arrays.items()}


# --- Revisiting's and S4L's TF1 Hub modules ---------------------------------------------
#
# Revisiting's models/resnet.py builds v2 (pre-activation) ResNets, the RevNet, and v1
# ResNets (its Exemplar, Jigsaw and relative-patch-location configs: `--mode v1`), whose
# creation order is simclr's (stem conv + BN; per unit the shortcut conv + BN, then three
# conv + BN), so `_layer_order` names them.
#
# A module's variables/ is a TF1 checkpoint named as the module's graph made them, without
# the training graph's `module/` scope. Revisiting's models/resnet.py leaves tf.layers to
# name everything in creation order (`conv2d_N`, `batch_normalization_N`); S4L's scopes it
# (`root_block/conv2d`, `blockS/unitU/{batch_normalization, proj/conv2d, a/conv2d,
# b/batch_normalization, b/conv2d, c/...}`, the final `batch_normalization`) and names its
# linear heads after their outputs (`classes/kernel`, `rotations/kernel`, ...).

_S4L_STEM = "root_block/conv2d/kernel"
_S4L_UNIT = re.compile(r"block(\d)/unit(\d+)/(?:(proj|a|b|c)/)?(conv2d|batch_normalization)/(\w+)")
_S4L_LAYERS = {("proj", "conv2d"): "proj", (None, "batch_normalization"): "preact_bn",
               ("a", "conv2d"): "conv1", ("b", "batch_normalization"): "bn1",
               ("b", "conv2d"): "conv2", ("c", "batch_normalization"): "bn2",
               ("c", "conv2d"): "conv3"}
_S4L_HEAD = re.compile(r"(\w+)/(kernel|bias)")
_V2_BOTTLENECK = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def _v2_layer_order(units):
  """tfssl's (conv names, BN names) of a pre-activation bottleneck ResNet in the order
  Revisiting's models/resnet.py creates them: per unit the pre-activation BN, the
  projection (first unit of a stage), then conv1, BN, conv2, BN, conv3; the final BN."""
  convs, norms = ["stem_conv"], []
  for stage, count in enumerate(units, start=1):
    for unit in range(1, count + 1):
      name = f"block{stage}_unit{unit}"
      norms.append(f"{name}_preact_bn")
      if unit == 1:
        convs.append(f"{name}_proj")
      convs += [f"{name}_conv1", f"{name}_conv2", f"{name}_conv3"]
      norms += [f"{name}_bn1", f"{name}_bn2"]
  return convs, norms + ["final_bn"]


_REVNET_UNITS = (3, 4, 6, 3)


def _revnet_layer_order(units):
  """tfssl's (conv names, BN names) of Revisiting's RevNet in its creation order: the root
  conv, then per unit F's BN-conv three times (bottleneck_v2 without a shortcut); the
  final BN."""
  convs, norms = ["stem_conv"], []
  for stage, count in enumerate(units, start=1):
    for unit in range(1, count + 1):
      for index in range(1, 4):
        norms.append(f"block{stage}_unit{unit}_bn{index}")
        convs.append(f"block{stage}_unit{unit}_conv{index}")
  return convs, norms + ["final_bn"]


def hub_module_arrays(checkpoint):
  """(tfssl model, width, {backbone path: array}, {head name: {"dense/kernel",
  "dense/bias"}}, text) of a Revisiting or S4L Hub module's bottleneck ResNet-N (v2;
  Revisiting's also v1) or Revisiting's RevNet-50, or a UserError saying what it holds."""
  keys = checkpoint.keys()
  arrays, heads = {}, {}

  def put(layer, variable, key):
    if variable == "kernel" or variable in _BN_VARIABLES:
      arrays[f"{layer}/{variable}"] = checkpoint.take(key)

  def head(name, kernel_key, bias_key):
    kernel = checkpoint.take(kernel_key)
    heads[name] = {"dense/kernel": kernel.reshape(kernel.shape[-2:]),
                   "dense/bias": checkpoint.take(bias_key)}

  if _S4L_STEM in keys:
    layout, version = "S4L", "v2"
    units = {}
    for key in keys:
      if match := _S4L_UNIT.fullmatch(key):
        stage, unit, scope, kind, variable = match.groups()
        units[int(stage)] = max(units.get(int(stage), 0), int(unit))
        layer = _S4L_LAYERS.get((scope, kind))
        if layer:
          put(f"block{stage}_unit{unit}_{layer}", variable, key)
    units = tuple(units.get(stage, 0) for stage in (1, 2, 3, 4))
    put("stem_conv", "kernel", _S4L_STEM)
    for variable in _BN_VARIABLES:
      if f"batch_normalization/{variable}" in keys:
        put("final_bn", variable, f"batch_normalization/{variable}")
    for key in keys:
      match = _S4L_HEAD.fullmatch(key)
      if match and match.group(2) == "kernel" and f"{match.group(1)}/bias" in keys:
        head(match.group(1), key, f"{match.group(1)}/bias")
    stem = checkpoint.arrays[_S4L_STEM]
    if not any(k.endswith("/c/conv2d/kernel") for k in keys):
      raise UserError(f"{checkpoint.source} is an S4L module of basic-block ResNets (S4L's "
                      "resblock strides its second conv, tfssl's its first): only the "
                      "bottleneck ResNets (50, 101, 152) convert. Nothing was written.")
  elif "conv2d/kernel" in keys and "batch_normalization/gamma" in keys:
    layout = "Revisiting"
    convs = sorted((int(m.group(1) or 0), k) for k in keys
                   if (m := re.fullmatch(r"conv2d(?:_(\d+))?/kernel", k)))
    norms = sorted((int(m.group(1) or 0), m.group(2), k) for k in keys
                   if (m := re.fullmatch(r"batch_normalization(?:_(\d+))?/(\w+)", k)))
    logits = convs[-1][1] if convs[-1][1].replace("kernel", "bias") in keys else None
    body = convs[:-1] if logits else convs
    num_norms = len({index for index, _, _ in norms})
    orders = [("v2", units, _v2_layer_order(units)) for units in _V2_BOTTLENECK.values()]
    orders += [("v1", units, _layer_order(depth)) for depth, units in _V2_BOTTLENECK.items()]
    orders.append(("revnet", _REVNET_UNITS, _revnet_layer_order(_REVNET_UNITS)))
    fits = [fit for fit in orders
            if (len(fit[2][0]), len(fit[2][1])) == (len(body), num_norms)]
    if not fits:
      raise UserError(f"{checkpoint.source} holds {len(body)} convolutions and "
                      f"{num_norms} batch norms: neither a v1 or v2 bottleneck ResNet "
                      "(50, 101, 152) nor the RevNet-50 of Revisiting's models/resnet.py "
                      "(VGGs are not converted). Nothing was written.")
    kind, units, (conv_names, norm_names) = fits[0]
    version = "v1" if kind == "v1" else "v2"
    if kind == "revnet":
      layout = "Revisiting RevNet"
    for (_, key), layer in zip(body, conv_names):
      put(layer, "kernel", key)
    bn_index = {index: position for position, index in
                enumerate(sorted({index for index, _, _ in norms}))}
    for index, variable, key in norms:
      put(norm_names[bn_index[index]], variable, key)
    if logits:
      head("logits", logits, logits.replace("kernel", "bias"))
    stem = checkpoint.arrays[convs[0][1]]
  else:
    raise UserError(f"{checkpoint.source} has neither S4L's `root_block/conv2d` nor "
                    "Revisiting's `conv2d`/`batch_normalization` variables: not a ResNet "
                    f"module of theirs (it has {first_few(sorted(keys))}). Nothing was "
                    "written.")
  if layout == "Revisiting RevNet":
    # Its root conv projects straight to stage 1's 4 x 16 x filters_factor channels.
    width = stem.shape[-1] / 256
    text = (f"Revisiting RevNet-50 x{width:g} (filters_factor {4 * width:g}, "
            f"{stem.shape[-1]}-channel {stem.shape[0]}x{stem.shape[1]} stem)")
    return "revnet50", width, arrays, heads, text
  depths = {blocks: depth for depth, blocks in _V2_BOTTLENECK.items()}
  depth = depths.get(units)
  if depth is None:
    raise UserError(f"{checkpoint.source}: an {layout} ResNet with units {units} per stage, "
                    "which is no ResNet-50/101/152. Nothing was written.")
  width = stem.shape[-1] / 64
  text = (f"{layout} ResNet-{depth} {version} x{width:g} (filters_factor {4 * width:g}, "
          f"{stem.shape[-1]}-channel {stem.shape[0]}x{stem.shape[1]} stem)")
  return f"resnet{depth}_{version}", width, arrays, heads, text
