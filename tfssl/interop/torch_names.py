"""PyTorch state-dict names -> tfssl variable paths, with the layout changes on the way.

Every function takes a `StateDict` (the file's tensors as numpy arrays) and a key prefix
and returns {path: array} keyed by the tfssl variable's path relative to its part (a
backbone's layer/variable without any name prefix, a head's sublayer/variable), taking
the keys it used out of the state dict so that what is left can be reported.

Layout changes: conv kernels [out, in, h, w] -> [h, w, in, out]; linear weights
[out, in] -> [in, out]; batch norm weight/bias/running_mean/running_var -> gamma/beta/
moving_mean/moving_variance (num_batches_tracked is dropped); a ViT's fused qkv [3C, C]
-> Keras MultiHeadAttention's query/key/value [C, heads, C / heads]; weight-normed
layers (weight_g, weight_v) -> tfssl's magnitude and direction.
"""

import re

import numpy as np

from tfssl.errors import UserError

_BN_NAMES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
             "running_var": "moving_variance"}


class StateDict:
  """The arrays of a state dict, with which keys have been used."""

  def __init__(self, arrays, source):
    self.arrays = {key: value for key, value in arrays.items() if isinstance(value, np.ndarray)}
    self.source = source
    self.used = set()

  def keys(self, prefix=""):
    return [key for key in self.arrays if key.startswith(prefix)]

  def has(self, key):
    return key in self.arrays

  def take(self, key):
    if key not in self.arrays:
      raise UserError(f"{self.source} has no tensor {key!r}; it has "
                      f"{first_few(sorted(self.arrays))}.")
    self.used.add(key)
    return self.arrays[key]

  def unused(self, prefix=""):
    return sorted(key for key in self.keys(prefix)
                  if key not in self.used and not key.endswith("num_batches_tracked"))


def strip_module_prefix(arrays):
  """Keys without DistributedDataParallel's `module.` (every key has it, or none is changed)."""
  if arrays and all(key.startswith("module.") for key in arrays):
    return {key[len("module."):]: value for key, value in arrays.items()}
  return arrays


def conv_kernel(weight):
  return np.transpose(weight, (2, 3, 1, 0))


def dense_kernel(weight):
  return np.transpose(weight)


def _batch_norm(state, key_prefix, path_prefix):
  return {f"{path_prefix}/{name}": state.take(f"{key_prefix}.{torch_name}")
          for torch_name, name in _BN_NAMES.items()}


def _dense(state, key_prefix, path_prefix, bias=True):
  arrays = {f"{path_prefix}/kernel": dense_kernel(state.take(f"{key_prefix}.weight"))}
  if bias:
    arrays[f"{path_prefix}/bias"] = state.take(f"{key_prefix}.bias")
  return arrays


def first_few(items, count=8):
  items = list(items)
  shown = ", ".join(items[:count])
  return shown + (f" ... ({len(items)} in all)" if len(items) > count else "") if items else "none"


# --- ResNets (torchvision's layout: SwAV, DINO, PAWS and torchvision itself) -----------

_RESNET_UNIT = re.compile(r"layer(\d)\.(\d+)\.(.+)")
_RESNET_DEPTHS = {("basic", (2, 2, 2, 2)): 18, ("basic", (3, 4, 6, 3)): 34,
                  ("bottleneck", (3, 4, 6, 3)): 50, ("bottleneck", (3, 4, 23, 3)): 101,
                  ("bottleneck", (3, 8, 36, 3)): 152, ("basic", (1, 1, 1, 1)): 10}


def describe_resnet(state, prefix=""):
  """(depth or None, width multiplier, text) of a torchvision-layout ResNet under `prefix`,
  e.g. (50, 2.0, "ResNet-50 x2 (bottleneck blocks 3-4-6-3, 128-channel stem)")."""
  units = {}
  for key in state.keys(prefix):
    match = _RESNET_UNIT.fullmatch(key[len(prefix):])
    if match:
      stage, unit = int(match.group(1)), int(match.group(2))
      units[stage] = max(units.get(stage, 0), unit + 1)
  stem = state.arrays.get(prefix + "conv1.weight")
  if stem is None or not units:
    return None, None, None
  kind = "bottleneck" if state.has(prefix + "layer1.0.conv3.weight") else "basic"
  blocks = tuple(units.get(stage, 0) for stage in (1, 2, 3, 4))
  depth = _RESNET_DEPTHS.get((kind, blocks))
  width = stem.shape[0] / 64
  name = f"ResNet-{depth}" if depth else "a ResNet"
  text = (f"{name} x{width:g} ({kind} blocks {'-'.join(map(str, blocks))}, "
          f"{stem.shape[0]}-channel {stem.shape[2]}x{stem.shape[3]} stem)")
  return depth, width, text


def _unit_arrays(state, prefix, renames):
  """{tfssl path: array} of every residual unit's layers under `prefix`: layerS.U.LAYER.VAR
  -> blockS_unit(U+1)_LAYER/VAR (units count from 1), LAYER renamed by `renames`; batch
  norms (bnK, proj_bn) get Keras' names, convs a kernel and a bias."""
  arrays = {}
  for key in state.keys(prefix):
    match = _RESNET_UNIT.fullmatch(key[len(prefix):])
    if not match:
      continue
    layer, _, variable = match.group(3).rpartition(".")
    layer = renames.get(layer, layer)
    path = f"block{match.group(1)}_unit{int(match.group(2)) + 1}_{layer}"
    if re.fullmatch(r"(proj_)?bn\d*", layer):
      if variable in _BN_NAMES:
        arrays[f"{path}/{_BN_NAMES[variable]}"] = state.take(key)
    elif variable == "weight":
      arrays[f"{path}/kernel"] = conv_kernel(state.take(key))
    else:
      arrays[f"{path}/{variable}"] = state.take(key)
  return arrays


def resnet_arrays(state, prefix=""):
  """{tfssl path: array} of a torchvision-layout ResNet (conv1/bn1, layerS.U.convK/bnK,
  layerS.U.downsample.0/1) under `prefix`, for tfssl's resnetN_v1 (the same network: v1.5
  strides, symmetric padding, zero-padded max-pool after the ReLU)."""
  arrays = {"stem_conv/kernel": conv_kernel(state.take(prefix + "conv1.weight"))}
  arrays.update(_batch_norm(state, prefix + "bn1", "stem_bn"))
  arrays.update(_unit_arrays(state, prefix, {"downsample.0": "proj", "downsample.1": "proj_bn"}))
  return arrays


# --- Wide ResNets (suncet's src/wide_resnet.py, PAWS's CIFAR-10 network) ---------------

def describe_wide_resnet(state, prefix=""):
  """(depth, widen factor, text) of a suncet-layout WRN under `prefix`, or Nones: a biased
  stem conv, three stages of pre-activation units, the final BN at the top level."""
  stem = state.arrays.get(prefix + "conv1.bias")
  first = state.arrays.get(prefix + "layer1.0.conv1.weight")
  if stem is None or first is None or state.keys(prefix + "layer4."):
    return None, None, None
  units = {int(key[len(prefix):].split(".")[1]) for key in state.keys(prefix + "layer1.")}
  depth, widen = 6 * len(units) + 4, first.shape[0] // 16
  return depth, widen, f"WRN-{depth}-{widen} ({len(units)} units per stage, biased convs)"


def wide_resnet_arrays(state, prefix=""):
  """{tfssl path: array} of suncet's WideResNet (conv1, layerS.U.{bn1, conv1, bn2, conv2,
  shortcut.0}, bn1) under `prefix`, for tfssl's wide_resnet28_2_suncet."""
  arrays = {"stem_conv/kernel": conv_kernel(state.take(prefix + "conv1.weight")),
            "stem_conv/bias": state.take(prefix + "conv1.bias")}
  arrays.update(_batch_norm(state, prefix + "bn1", "final_bn"))
  arrays.update(_unit_arrays(state, prefix, {"shortcut.0": "proj"}))
  return arrays


# --- Vision Transformers (DINO's vision_transformer.py and timm's layout) ---------------

def describe_vit(state, prefix=""):
  """(width, depth, patch size, text) of a ViT under `prefix`, or Nones."""
  patch = state.arrays.get(prefix + "patch_embed.proj.weight")
  if patch is None:
    return None, None, None, None
  blocks = {int(key[len(prefix):].split(".")[1]) for key in state.keys(prefix + "blocks.")}
  width, depth, size = patch.shape[0], len(blocks), patch.shape[-1]
  names = {384: "ViT-S", 768: "ViT-B", 192: "ViT-Ti", 1024: "ViT-L"}
  text = f"{names.get(width, 'a ViT')}/{size} (width {width}, {depth} blocks)"
  return width, depth, size, text


def vit_arrays(state, heads, prefix=""):
  """{tfssl path: array} of a ViT (cls_token, pos_embed, patch_embed.proj,
  blocks.I.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}, norm) under `prefix`."""
  arrays = {
      "stem_patch_embedding/kernel": conv_kernel(state.take(prefix + "patch_embed.proj.weight")),
      "stem_patch_embedding/bias": state.take(prefix + "patch_embed.proj.bias"),
      "stem_tokens/class_token": state.take(prefix + "cls_token"),
      "stem_tokens/positions": state.take(prefix + "pos_embed"),
      "norm/gamma": state.take(prefix + "norm.weight"),
      "norm/beta": state.take(prefix + "norm.bias"),
  }
  blocks = sorted({int(key[len(prefix):].split(".")[1])
                   for key in state.keys(prefix + "blocks.")})
  for index in blocks:
    key, name = f"{prefix}blocks.{index}.", f"block{index + 1}"
    for norm in ("norm1", "norm2"):
      arrays[f"{name}_{norm}/gamma"] = state.take(f"{key}{norm}.weight")
      arrays[f"{name}_{norm}/beta"] = state.take(f"{key}{norm}.bias")
    qkv_weight, qkv_bias = state.take(f"{key}attn.qkv.weight"), state.take(f"{key}attn.qkv.bias")
    width = qkv_weight.shape[1]
    # Rows of the fused projection are (q, k, v) x heads x head width, as DINO's
    # reshape(B, N, 3, heads, C // heads) reads them.
    for part, (weight, bias) in zip(("query", "key", "value"),
                                    zip(np.split(qkv_weight, 3), np.split(qkv_bias, 3))):
      arrays[f"{name}_attention/{part}/kernel"] = weight.T.reshape(width, heads, -1)
      arrays[f"{name}_attention/{part}/bias"] = bias.reshape(heads, -1)
    arrays[f"{name}_attention/attention_output/kernel"] = (
        state.take(f"{key}attn.proj.weight").T.reshape(heads, -1, width))
    arrays[f"{name}_attention/attention_output/bias"] = state.take(f"{key}attn.proj.bias")
    for fc in ("fc1", "fc2"):
      arrays.update(_dense(state, f"{key}mlp.{fc}", f"{name}_mlp_{fc}"))
  return arrays


# --- heads -----------------------------------------------------------------------------

def classifier_arrays(state, key_prefix):
  """A linear classifier (torchvision's `fc`, timm's `head`) as tfssl's ClassifierHead."""
  return _dense(state, key_prefix, "dense")


def swav_head_arrays(state, prefix=""):
  """({projection path: array}, {prototypes path: array}) of SwAV's projection_head
  (Linear, BatchNorm1d, ReLU, Linear) and prototypes (a bias-free Linear)."""
  if not state.has(prefix + "projection_head.3.weight"):
    raise UserError(
        f"{state.source} has a SwAV projection head without a hidden layer (or another "
        "one than Linear-BN-ReLU-Linear): tfssl's swav has hidden_mlp > 0 only, as every "
        "released SwAV model.")
  projection = _dense(state, prefix + "projection_head.0", "fc1")
  projection.update(_batch_norm(state, prefix + "projection_head.1", "bn1"))
  projection.update(_dense(state, prefix + "projection_head.3", "fc2"))
  prototypes = {"kernel": dense_kernel(state.take(prefix + "prototypes.weight"))}
  return projection, prototypes


def paws_head_arrays(state, prefix=""):
  """({projection path: array}, {prediction path: array} or None) of suncet's encoder.fc
  (fc1-bn1-relu1-fc2-bn2-relu2-fc3) and encoder.pred (bn1-fc1-bn2-relu-fc2)."""
  if not state.has(prefix + "fc.fc3.weight"):
    if state.has(prefix + "fc.fc2.weight"):
      raise UserError(
          f"{state.source} is a fine-tuned PAWS model (fc.fc1-bn1-fc2, a class per output), "
          "which is not converted yet: only the pretrained checkpoints "
          "(paws_imgnt_*percent_*ep.pth.tar). Nothing was written.")
    raise UserError(f"{state.source} has no PAWS projection head (encoder.fc.fc1..fc3): is it "
                    "a PAWS checkpoint? Check --from. Nothing was written.")
  projection = {}
  for layer in ("fc1", "fc2", "fc3"):
    projection.update(_dense(state, f"{prefix}fc.{layer}", layer))
  for layer in ("bn1", "bn2"):
    projection.update(_batch_norm(state, f"{prefix}fc.{layer}", layer))
  if not state.has(prefix + "pred.fc1.weight"):
    return projection, None
  prediction = {}
  for layer in ("fc1", "fc2"):
    prediction.update(_dense(state, f"{prefix}pred.{layer}", layer))
  for layer in ("bn1", "bn2"):
    prediction.update(_batch_norm(state, f"{prefix}pred.{layer}", layer))
  return projection, prediction


def dino_head_arrays(state, prefix):
  """({projection path: array}, {prototypes path: array}, batch norm in the head) of a
  DINOHead (mlp: Linear[-BN]-GELU-Linear[-BN]-GELU-Linear; last_layer: weight-normed)."""
  batch_norm = state.has(prefix + "mlp.1.running_mean")
  linears = (0, 3, 6) if batch_norm else (0, 2, 4)
  indices = {int(key[len(prefix + "mlp."):].split(".")[0]) for key in state.keys(prefix + "mlp.")}
  if not state.has(f"{prefix}mlp.{linears[2]}.weight") or max(indices) > linears[2]:
    raise UserError(f"{state.source}: the DINO head under {prefix!r} is not the default "
                    "3-layer MLP (nlayers=3), the only one tfssl's dino builds.")
  projection = {}
  for fc, index in zip(("fc1", "fc2", "fc3"), linears):
    projection.update(_dense(state, f"{prefix}mlp.{index}", fc))
  if batch_norm:
    projection.update(_batch_norm(state, f"{prefix}mlp.1", "bn1"))
    projection.update(_batch_norm(state, f"{prefix}mlp.4", "bn2"))
  # Old torch weight_norm keys (DINO's releases) or its parametrization's.
  names = (("last_layer.weight_g", "last_layer.weight_v") if state.has(
      prefix + "last_layer.weight_g") else ("last_layer.parametrizations.weight.original0",
                                            "last_layer.parametrizations.weight.original1"))
  magnitude, direction = (state.take(prefix + name) for name in names)
  prototypes = {"direction": dense_kernel(direction), "magnitude": magnitude.reshape(-1)}
  return projection, prototypes, batch_norm
