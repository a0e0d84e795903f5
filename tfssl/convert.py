"""Turns a released checkpoint of another codebase into a tfssl hub module.

    python -m tfssl.convert --from=swav --checkpoint=swav_800ep_pretrain.pth.tar \
        --model=resnet50_v1 --out=modules/swav_800ep

The module keeps the export contract (float32 [0, 1] NHWC images in; `default`, the taps
and the method's heads out) and applies the original's input standardisation itself
(`input_normalization`, torchvision's ImageNet mean/std for PyTorch releases), so
`eval_hub` scores it and `--init_from` starts a run from it like any tfssl export (a run
started from it needs the same `--config.input_normalization`). `module_info.json` names
the file it came from, its format and its sha256.

Formats (the layouts the releases were saved in; PyTorch files are read without torch):
  torchvision_resnet  a torchvision ResNet state dict (its `fc` becomes `logits`)
  swav                SwAV's .pth.tar: backbone, projection head and prototypes
  dino                DINO's backbone-only .pth (its teacher) or a full training checkpoint
                      (student, teacher, head and centre)
  paws                suncet's PAWS checkpoints: encoder (ResNet-50, or the CIFAR-10
                      WRN-28-2), projection and prediction heads
  timm_vit            a timm VisionTransformer state dict (its `head` becomes `logits`);
                      --input_normalization says what the weights were trained on
  simclr_tf2          google-research/simclr's TF2 releases: a SavedModel (or the directory
                      holding its saved_model/) or a tf.train.Checkpoint of tf2/run.py
  simclr_tf1          simclr's TF1 checkpoints (model.ckpt-N of the root code, tf.layers)
  fnc                 google-research/fnc's TF1 checkpoints (SimCLR's layout; the
                      projection head is `head_contrastive_instance`)
  tf1_hub             Revisiting's and S4L's TF1 Hub modules (ResNet-50/101/152 v2,
                      Revisiting's v1 ResNets and RevNet-50): the backbone, and S4L's
                      `classes` or Revisiting's `logits` head as `logits`; Revisiting's
                      Jigsaw and relative-patch-location nets with --patch_task
The TF formats become tfssl's `simclr` (or `supervised` / a backbone where the file has no
projection head): ResNet-N v1, its projection head, and `head_supervised` as `logits` on
`--ft_proj_selector` (0, the backbone's output, for the pretrained releases; SimCLRv2's
fine-tuned ones were trained on layer 1). They see raw [0, 1] pixels and pool their stem
with TF's SAME padding (`input_normalization=raw`, `stem_pool_padding=same`).

Every key of the file must find its variable and every variable its key (but DINO's
centre, which starts at zero where a checkpoint lacks `dino_loss`); otherwise one message
names the first keys that did not match and what the file looks like, before anything is
written.
"""

import dataclasses
import hashlib
import os
from typing import Any, Dict, Tuple

import keras
import numpy as np
import tensorflow as tf
from absl import flags

from tfssl import cli
from tfssl import config as config_lib
from tfssl import experiment
from tfssl import export as export_lib
from tfssl import methods
from tfssl import models
from tfssl.errors import UserError
from tfssl.interop import pth
from tfssl.interop import tf_names
from tfssl.interop import torch_names
from tfssl.interop.torch_names import StateDict
from tfssl.methods.base import Method
from tfssl.models import resnet as resnet_lib
from tfssl.models import vit as vit_lib
from tfssl.registry import Registry

FORMATS = Registry("checkpoint format")
# The ImageNet releases: 224 px, torchvision's mean/std (timm's ViTs vary: their planner
# asks; PAWS's CIFAR-10 WRN standardises its input itself).
_TORCH_RELEASE = dict(dataset="imagenet", image_size=224, input_normalization="imagenet")
_IMAGENET_CLASSES = 1000
# --input_normalization (timm's names of the two standardisations PyTorch releases use) ->
# tfssl's input_normalization values ("": the models' own [-1, 1]).
NORMALIZATION_FLAG_VALUES = {"imagenet": "imagenet", "inception": ""}
# Formats whose files do not say which standardisation their weights were trained with.
_NORMALIZATION_REQUIRED = ("timm_vit",)
BACKBONE_ONLY = "backbone"  # module_info's method of a module that holds only a backbone
_PAWS_WRN = "wide_resnet28_2_suncet"
# PAWS's CIFAR-10 WRN standardises its input itself (suncet's data_manager's Normalize).
_PAWS_CIFAR = dict(dataset="cifar10", image_size=32, input_normalization="")


@dataclasses.dataclass
class Plan:
  """What a file becomes: a method's config and, per trackable of that method, the values
  of its variables by path (see `torch_names`)."""
  method: str  # a registered method, or BACKBONE_ONLY
  fields: Dict[str, Any]
  num_classes: int
  arrays: Dict[str, Dict[str, np.ndarray]]
  description: str  # what the file looks like, for messages and module_info
  state: Any  # a StateDict or tf_names.Checkpoint: to report the keys left unused
  optional: Tuple[str, ...] = ()  # trackables that may stay as built where the file lacks them
  leave_out: Tuple[str, ...] = ()  # untrained trackables the module does not hold


def describe_backbone(state, prefix):
  """(what the backbone under `prefix` looks like, the tfssl model it converts to or None,
  that model's width multiplier)."""
  depth, widen, text = torch_names.describe_wide_resnet(state, prefix)
  if depth is not None:
    return text, _PAWS_WRN if (depth, widen) == (28, 2) else None, 1.0
  depth, width, text = torch_names.describe_resnet(state, prefix)
  if text is not None:
    return text, f"resnet{depth}_v1" if depth else None, width
  width, depth, patch, text = torch_names.describe_vit(state, prefix)
  if text is not None:
    fits = [name for name, (dim, blocks, _, size) in vit_lib.REGISTERED.items()
            if (dim, blocks, size) == (width, depth, patch)]
    return text, fits[0] if fits else None, 1.0
  keys = state.keys(prefix)
  return (f"no backbone tfssl knows under {prefix!r} (keys: {torch_names.first_few(keys)})",
          None, None)


def _backbone_arrays(state, prefix, model):
  """({path: array}, model width, description) of the backbone under `prefix`, checked
  against the architecture `model` names."""
  text, fits, width = describe_backbone(state, prefix)
  if fits is None or fits.split("_v")[0] != model.split("_v")[0]:
    hint = f": use --model={fits}" if fits else ", which no tfssl model is"
    raise UserError(f"{state.source} does not fit --model={model}: it holds {text}{hint}. "
                    "Nothing was written.")
  if fits != model:
    raise UserError(f"{state.source} does not fit --model={model}: it holds {text}, "
                    f"torchvision-layout ResNets are post-activation: use --model={fits}. "
                    "Nothing was written.")
  if model in resnet_lib.MODEL_NAMES:
    return torch_names.resnet_arrays(state, prefix), width, text
  if model in vit_lib.MODEL_NAMES:
    heads = vit_lib.REGISTERED[model][2]
    return torch_names.vit_arrays(state, heads, prefix), width, text
  return torch_names.wide_resnet_arrays(state, prefix), width, text


def _state_dict(obj, source, *candidates):
  """The state dict inside a loaded file: the file itself, or under one of `candidates`
  (a training checkpoint's "state_dict", ...), without DDP's `module.` prefix."""
  for key in candidates:
    if isinstance(obj, dict) and isinstance(obj.get(key), dict):
      obj = obj[key]
      break
  if not isinstance(obj, dict) or not any(isinstance(v, np.ndarray) for v in obj.values()):
    keys = ", ".join(map(str, list(obj)[:8])) if isinstance(obj, dict) else type(obj).__name__
    raise UserError(f"{source} holds no state dict of tensors (top level: {keys}). Pass the "
                    "released weights file of the format --from names.")
  return StateDict(torch_names.strip_module_prefix(obj), source)


def _classifier_or_backbone(state, model, head_key):
  """A supervised module (`head_key`'s linear layer as `logits`) or, without that layer, a
  backbone-only one."""
  arrays, width, text = _backbone_arrays(state, "", model)
  fields = dict(_TORCH_RELEASE, model=model, model_width=width)
  if not state.has(f"{head_key}.weight"):
    return Plan(BACKBONE_ONLY, fields, _IMAGENET_CLASSES, {"backbone": arrays}, text, state)
  head = torch_names.classifier_arrays(state, head_key)
  return Plan("supervised", fields, head["dense/kernel"].shape[1],
              {"backbone": arrays, "head": head},
              f"{text} with a {head['dense/bias'].size}-class {head_key}", state)


@FORMATS.register("torchvision_resnet")
def plan_torchvision_resnet(obj, source, model):
  return _classifier_or_backbone(_state_dict(obj, source, "state_dict", "model"), model, "fc")


@FORMATS.register("swav")
def plan_swav(obj, source, model):
  state = _state_dict(obj, source, "state_dict")
  arrays, width, text = _backbone_arrays(state, "", model)
  fields = dict(_TORCH_RELEASE, model=model, model_width=width)
  if not state.has("prototypes.weight"):
    if state.keys("prototypes"):
      raise UserError(f"{source} has several sets of prototypes (SwAV's MultiPrototypes): "
                      "tfssl's swav has one. Nothing was written.")
    return Plan(BACKBONE_ONLY, fields, _IMAGENET_CLASSES, {"backbone": arrays}, text, state)
  projection, prototypes = torch_names.swav_head_arrays(state)
  hidden, out = projection["fc1/kernel"].shape[1], projection["fc2/kernel"].shape[1]
  fields.update(num_prototypes=prototypes["kernel"].shape[1], proj_hidden_dim=hidden,
                proj_out_dim=out, queue_length=0)
  return Plan("swav", fields, _IMAGENET_CLASSES,
              {"backbone": arrays, "projection": projection, "prototypes": prototypes},
              f"{text} with SwAV's {hidden}-{out} projection and "
              f"{fields['num_prototypes']} prototypes", state)


@FORMATS.register("dino")
def plan_dino(obj, source, model):
  if not (isinstance(obj, dict) and "teacher" in obj and "student" in obj):
    state = _state_dict(obj, source, "state_dict", "model")
    arrays, width, text = _backbone_arrays(state, "", model)
    return Plan(BACKBONE_ONLY, dict(_TORCH_RELEASE, model=model, model_width=width),
                _IMAGENET_CLASSES, {"backbone": arrays}, text, state)
  # A training checkpoint (main_dino.py's save_dict): both networks are
  # MultiCropWrapper(backbone, head), the student always and the teacher of ResNets in DDP.
  merged = {}
  for part in ("teacher", "student"):
    if not isinstance(obj[part], dict):
      raise UserError(f"{source}: its {part!r} is a {type(obj[part]).__name__}, not the state "
                      "dict main_dino.py saves. Nothing was written.")
    for key, value in torch_names.strip_module_prefix(obj[part]).items():
      merged[f"{part}.{key}"] = value
  loss_state = obj.get("dino_loss")
  center = loss_state.get("center") if isinstance(loss_state, dict) else None
  state = StateDict(merged, source)
  arrays = {}
  for part, prefix in (("teacher", ""), ("student", "student_")):
    backbone, width, text = _backbone_arrays(state, f"{part}.backbone.", model)
    projection, prototypes, batch_norm = torch_names.dino_head_arrays(state, f"{part}.head.")
    arrays.update({prefix + "backbone": backbone, prefix + "projection": projection,
                   prefix + "prototypes": prototypes})
  num_prototypes = prototypes["magnitude"].size
  if center is not None:
    arrays["center"] = {"value": np.asarray(center, np.float32)}
  args = obj.get("args")
  fields = dict(_TORCH_RELEASE, model=model, model_width=width, num_prototypes=num_prototypes,
                proj_hidden_dim=projection["fc1/kernel"].shape[1],
                proj_out_dim=projection["fc3/kernel"].shape[1], head_batch_norm=batch_norm,
                norm_last_layer=bool(getattr(args, "norm_last_layer", True)), drop_path_rate=0.0)
  return Plan("dino", fields, _IMAGENET_CLASSES, arrays,
              f"DINO training checkpoint of {text} (epoch {obj.get('epoch', '?')}) with a "
              f"{num_prototypes}-output head", state, optional=("center",))


@FORMATS.register("paws")
def plan_paws(obj, source, model):
  """suncet's checkpoints ({"encoder": the DDP state dict, "opt", "epoch", ...}): the
  encoder's backbone, projection head (encoder.fc) and prediction head (encoder.pred)."""
  state = _state_dict(obj, source, "encoder")
  arrays, width, text = _backbone_arrays(state, "", model)
  projection, prediction = torch_names.paws_head_arrays(state)
  release = _PAWS_CIFAR if model == _PAWS_WRN else _TORCH_RELEASE
  fields = dict(release, model=model, model_width=width,
                proj_hidden_dim=projection["fc1/kernel"].shape[1],
                proj_out_dim=projection["fc3/kernel"].shape[1],
                use_pred_head=prediction is not None)
  arrays = {"backbone": arrays, "projection": projection}
  if prediction is not None:
    arrays["prediction"] = prediction
  num_classes = 10 if model == _PAWS_WRN else _IMAGENET_CLASSES
  return Plan("paws", fields, num_classes, arrays, f"PAWS encoder: {text} with a "
              f"{fields['proj_hidden_dim']}-{fields['proj_out_dim']} projection"
              f"{' and a prediction head' if prediction is not None else ''}", state)


@FORMATS.register("timm_vit")
def plan_timm_vit(obj, source, model):
  """A timm VisionTransformer state dict (class-token pooling): the ViT and, where it has
  one, its classifier `head` as `logits`."""
  state = _state_dict(obj, source, "state_dict", "model", "state_dict_ema")
  return _classifier_or_backbone(state, model, "head")


# The TF releases: raw [0, 1] pixels in, TF's SAME padding in the stem max-pool.
_TF_RELEASE = dict(dataset="imagenet", image_size=224, input_normalization="raw",
                   stem_pool_padding="same")
_TF_CIFAR = dict(dataset="cifar10", image_size=32, input_normalization="raw")
_TF_LAYOUTS = {"simclr_tf2": "tf2", "simclr_tf1": "tf1", "fnc": "tf1", "tf1_hub": "tf1"}
_SIMCLR_FORMATS = ("simclr_tf2", "simclr_tf1", "fnc")
_PROJECTION_SCOPES = {"simclr_tf1": "head_contrastive", "fnc": "head_contrastive_instance"}


def _plan_simclr_tf(source_format, checkpoint, model, ft_proj_selector=None):
  layout = _TF_LAYOUTS[source_format]
  if checkpoint.layout != layout:
    other = [name for name in _SIMCLR_FORMATS if _TF_LAYOUTS[name] == checkpoint.layout]
    raise UserError(f"{checkpoint.source} is a {checkpoint.layout.upper()} checkpoint, not "
                    f"the {layout.upper()} layout of --from={source_format}: use --from="
                    f"{' or --from='.join(other)}. Nothing was written.")
  for name, scope in _PROJECTION_SCOPES.items():
    if name != source_format and source_format in _PROJECTION_SCOPES and any(
        key.startswith(scope + "/") for key in checkpoint.keys()):
      raise UserError(f"{checkpoint.source} has its projection head in `{scope}`, "
                      f"{name}'s layout: use --from={name}. Nothing was written.")
  depth, width, cifar_stem, text = tf_names.describe_resnet(checkpoint)
  fits = f"resnet{depth}_v1"
  if fits not in models.MODELS.names():
    raise UserError(f"{checkpoint.source} holds {text}; tfssl has no ResNet-{depth}. Nothing "
                    "was written.")
  if model != fits:
    raise UserError(f"{checkpoint.source} does not fit --model={model}: it holds {text}: use "
                    f"--model={fits}. Nothing was written.")
  selector_note = ""
  if checkpoint.head_input is not None:
    if ft_proj_selector not in (None, checkpoint.head_input):
      raise UserError(f"{checkpoint.source}: its graph feeds head_supervised from layer "
                      f"{checkpoint.head_input}, not --ft_proj_selector={ft_proj_selector}: "
                      "drop the flag. Nothing was written.")
    ft_proj_selector = checkpoint.head_input
  elif ft_proj_selector is None:
    ft_proj_selector = 0
    selector_note = (" (read on the backbone's output: the file does not say which layer; "
                     "SimCLRv2's and FNC's fine-tuned releases read layer 1: "
                     "--ft_proj_selector=1)")
  arrays = {"backbone": tf_names.resnet_arrays(checkpoint, depth)}
  projection = tf_names.projection_arrays(checkpoint, _PROJECTION_SCOPES.get(source_format))
  head = tf_names.supervised_arrays(checkpoint)
  fields = dict(_TF_CIFAR if cifar_stem else _TF_RELEASE, model=model, model_width=width)
  num_classes = head["dense/kernel"].shape[1] if head else (10 if cifar_stem else
                                                            _IMAGENET_CLASSES)
  head_text = f" and a {num_classes}-class head_supervised{selector_note}" if head else ""
  if head:
    arrays["head"] = head
  if projection is None:
    if ft_proj_selector:
      raise UserError(f"{checkpoint.source} has no projection head, so no layer "
                      f"{ft_proj_selector} for --ft_proj_selector: leave it at 0.")
    method = "supervised" if head else BACKBONE_ONLY
    return Plan(method, fields, num_classes, arrays, text + head_text, checkpoint)
  layers = tf_names.num_projection_layers(projection)
  out_dim = projection[f"dense_{layers - 1}/kernel"].shape[1]
  fields.update(num_proj_layers=layers, proj_out_dim=out_dim,
                ft_proj_selector=ft_proj_selector, online_linear_head=head is not None)
  arrays["projection"] = projection
  return Plan("simclr", fields, num_classes, arrays,
              f"{text} with a {layers}-layer projection head (to {out_dim}){head_text}",
              checkpoint, optional=() if head else ("head",))


for _format in _SIMCLR_FORMATS:
  FORMATS.register(_format)(
      lambda obj, source, model, _format=_format, **options:
      _plan_simclr_tf(_format, obj, model, **options))

# The class heads of the Hub modules, first found first taken: S4L's `classes` (its
# published numbers), Revisiting's `logits` (its task's outputs: 4 rotations, ...).
_HUB_CLASS_HEADS = ("classes", "logits")


# Revisiting's patch tasks: their nets (root conv stride 1, last stage stride 1) saw
# per-patch standardised 64-px patches (`--serving_input_shape None,64,64,3`); its linear
# evaluation cut a 192-px centre crop into 3 x 3 of them and averaged each tap over them.
PATCH_TASKS = ("jigsaw", "relative_patch_location")
_REVISITING_PATCH = dict(image_size=192, patch_size=64, patch_net=True,
                         input_normalization="raw")


@FORMATS.register("tf1_hub")
def plan_tf1_hub(checkpoint, source, model, patch_task=None):
  """Revisiting's and S4L's TF1 Hub modules: the ResNet and its class head as `logits`,
  the way their own eval scored them ([-1, 1] inputs: tfssl's own). `patch_task`: the
  module is a Revisiting Jigsaw / relative-patch-location net (which its file does not
  show): that method's module, its `logits` (the patch embedding) as `embedding`."""
  if checkpoint.layout != "tf1":
    raise UserError(f"{source} is an object-based TF2 checkpoint, not a TF1 Hub module's "
                    "variables: check --from. Nothing was written.")
  fits, width, backbone, heads, text = tf_names.hub_module_arrays(checkpoint)
  if model != fits:
    raise UserError(f"{source} does not fit --model={model}: it holds {text}: use "
                    f"--model={fits}. Nothing was written.")
  # tf.layers' batch norm default, which both codebases kept.
  fields = dict(dataset="imagenet", image_size=224, model=model, model_width=width,
                bn_epsilon=1e-3)
  if patch_task:
    return _plan_revisiting_patch_task(patch_task, checkpoint, source, fields, backbone,
                                       heads, text)
  class_head = next((name for name in _HUB_CLASS_HEADS if name in heads), None)
  left_out = sorted(set(heads) - {class_head})
  text += f"; task heads left out: {', '.join(left_out)}" if left_out else ""
  if class_head is None:
    return Plan(BACKBONE_ONLY, fields, _IMAGENET_CLASSES, {"backbone": backbone}, text,
                checkpoint)
  head = heads[class_head]
  return Plan("supervised", fields, head["dense/kernel"].shape[1],
              {"backbone": backbone, "head": head},
              f"{text}, its {head['dense/bias'].size}-output `{class_head}` as logits",
              checkpoint)


def _plan_revisiting_patch_task(patch_task, checkpoint, source, fields, backbone, heads, text):
  if "logits" not in heads or set(heads) != {"logits"}:
    raise UserError(f"{source} ({text}) is not a Revisiting patch-task module: those hold "
                    "the net and its patch embedding (`logits`) only, this one has "
                    f"{', '.join(sorted(heads)) or 'no head'}. Drop --patch_task. Nothing "
                    "was written.")
  embedding = heads["logits"]
  fields.update(_REVISITING_PATCH, embed_dim=embedding["dense/bias"].size)
  return Plan(patch_task, fields, _IMAGENET_CLASSES,
              {"backbone": backbone,
               "embedding": {"kernel": embedding["dense/kernel"],
                             "bias": embedding["dense/bias"]}},
              f"{text} as Revisiting's {patch_task} patch net, its "
              f"{embedding['dense/bias'].size}-d patch embedding",
              checkpoint, optional=("task_head",), leave_out=("task_head",))


def read_checkpoint(path, source_format):
  """What the file at `path` holds: a PyTorch file's object with numpy arrays, or a TF
  format's `tf_names.Checkpoint`."""
  if source_format in _TF_LAYOUTS:
    return tf_names.read_checkpoint(path)
  if "://" in path:
    raise UserError(f"--checkpoint {path}: the PyTorch formats read local files; copy it "
                    "here first (gsutil cp, or download the release).")
  return pth.load_pth(path)


def _relative_path(trackable, variable, model_name):
  """A variable's path inside its part, as `torch_names` keys them."""
  path = getattr(variable, "path", None) or variable.name.split(":")[0]
  if isinstance(trackable, keras.Model):
    prefix = trackable.name[:len(trackable.name) - len(model_name)]
  elif isinstance(trackable, keras.layers.Layer):
    prefix = trackable.name + "/"
  else:
    prefix = trackable.name + "/" if path.startswith(trackable.name + "/") else ""
  return path[len(prefix):] if path.startswith(prefix) else path


def _variables(trackable):
  return trackable.weights if isinstance(trackable, keras.layers.Layer) else trackable.variables


def assign(method, plan, model_name):
  """Gives every variable of `method`'s trackables its value from `plan`, or raises one
  UserError naming everything that does not fit (and changes nothing)."""
  trackables = method.trackables()
  unplanned = sorted(set(trackables) - set(plan.arrays))
  assignments, missing, wrong_shape = [], [], []
  unexpected = []
  for name, arrays in plan.arrays.items():
    variables = {_relative_path(trackables[name], v, model_name): v
                 for v in _variables(trackables[name])}
    for path, variable in variables.items():
      if path not in arrays:
        missing.append(f"{name}/{path}")
      elif tuple(arrays[path].shape) != tuple(variable.shape):
        wrong_shape.append(f"{name}/{path}: file {tuple(arrays[path].shape)}, model "
                           f"{tuple(variable.shape)}")
      else:
        assignments.append((variable, arrays[path]))
    unexpected.extend(f"{name}/{path}" for path in arrays if path not in variables)
  leftover = plan.state.unused()
  problems = []
  if leftover:
    problems.append(f"keys of the file that match no variable: {torch_names.first_few(leftover)}")
  if wrong_shape:
    problems.append(f"shapes that differ: {torch_names.first_few(wrong_shape, 4)}")
  if missing:
    problems.append(f"variables that got no value: {torch_names.first_few(missing)}")
  if unexpected:
    problems.append(f"values with no variable: {torch_names.first_few(unexpected)}")
  if set(unplanned) - set(plan.optional):
    problems.append(f"parts that got no values: {', '.join(unplanned)}")
  if problems:
    raise UserError(f"{plan.state.source} ({plan.description}) does not fit --model="
                    f"{model_name}: {'; '.join(problems)}. Nothing was written.")
  for variable, value in assignments:
    variable.assign(np.asarray(value, keras.backend.standardize_dtype(variable.dtype)))


def build_method(plan):
  method_cls = Method if plan.method == BACKBONE_ONLY else methods.get_method(plan.method)
  config_cls = methods.get_method("supervised") if plan.method == BACKBONE_ONLY else method_cls
  config = config_lib.build_config(config_cls, **plan.fields)
  method = method_cls(config, plan.num_classes, config.image_size)
  method.build()
  return method, config


def checkpoint_files(path, source_format):
  """The files `path` names: itself, or a TF checkpoint's index and data shards."""
  if source_format not in _TF_LAYOUTS:
    return [path]
  prefix = tf_names.checkpoint_prefix(path)
  return sorted(tf.io.gfile.glob(prefix + ".index") + tf.io.gfile.glob(prefix + ".data-*"))


def sha256(paths):
  """The sha256 of the files `paths`, one after the other."""
  digest = hashlib.sha256()
  for path in paths:
    with tf.io.gfile.GFile(path, "rb") as f:
      for chunk in iter(lambda: f.read(1 << 20), b""):
        digest.update(chunk)
  return digest.hexdigest()


def convert(source_format, checkpoint, model, out, input_normalization=None,
            ft_proj_selector=None, patch_task=None):
  """Writes the module of `checkpoint` (a release in `source_format`) to `out`.

  `input_normalization`: the standardisation the weights were trained with, a key of
  NORMALIZATION_FLAG_VALUES; None: the format's (torchvision's ImageNet mean/std for the
  ImageNet releases), which timm_vit does not have. `ft_proj_selector` (TF formats): the
  projection layer `head_supervised` was trained on (None: 0, the backbone's output).
  `patch_task` (tf1_hub): one of PATCH_TASKS for Revisiting's patch-task modules.
  """
  planner = FORMATS.get(source_format)
  models.MODELS.get(model)
  choices = ", ".join(NORMALIZATION_FLAG_VALUES)
  if input_normalization is not None and input_normalization not in NORMALIZATION_FLAG_VALUES:
    raise UserError(f"--input_normalization={input_normalization} is not one of {choices}.")
  if input_normalization is not None and source_format in _TF_LAYOUTS:
    raise UserError(f"--input_normalization is for the PyTorch formats: --from={source_format}'s "
                    "networks took raw [0, 1] pixels (SimCLR, FNC) or [-1, 1] (the Hub "
                    "modules), which the module keeps. Drop the flag.")
  if input_normalization is None and source_format in _NORMALIZATION_REQUIRED:
    raise UserError(f"--from={source_format}: the file does not say how its weights' inputs "
                    f"were standardised; pass --input_normalization ({choices}: timm's "
                    "IMAGENET_DEFAULT (DeiT...) or IMAGENET_INCEPTION mean/std (the original "
                    "ViTs), as the model's pretrained_cfg says).")
  experiment.check_paths([(out, "--out")])
  if tf.io.gfile.exists(os.path.join(out, "saved_model.pb")):
    raise UserError(f"--out {out} already holds a module; pass a new directory (nothing was "
                    "overwritten).")
  options = {}
  if ft_proj_selector is not None:
    if source_format not in _SIMCLR_FORMATS:
      raise UserError(f"--ft_proj_selector applies to the SimCLR / FNC formats "
                      f"({', '.join(_SIMCLR_FORMATS)}), not --from={source_format}.")
    options["ft_proj_selector"] = ft_proj_selector
  if patch_task is not None:
    if source_format != "tf1_hub":
      raise UserError(f"--patch_task applies to Revisiting's Hub modules (--from=tf1_hub), "
                      f"not --from={source_format}.")
    if patch_task not in PATCH_TASKS:
      raise UserError(f"--patch_task={patch_task} is not one of {', '.join(PATCH_TASKS)}.")
    options["patch_task"] = patch_task
  plan = planner(read_checkpoint(checkpoint, source_format), checkpoint, model, **options)
  if input_normalization is not None:
    plan.fields["input_normalization"] = NORMALIZATION_FLAG_VALUES[input_normalization]
  method, config = build_method(plan)
  assign(method, plan, model)
  info = dict(method=plan.method, model=model, dataset=config.dataset, dataset_dir="",
              labels="all", image_size=config.image_size, num_classes=plan.num_classes,
              step=0, config=dict(config.to_dict(), method=plan.method),
              converted_from=dict(
                  file=checkpoint if "://" in checkpoint else os.path.abspath(checkpoint),
                  format=source_format, sha256=sha256(checkpoint_files(checkpoint, source_format)),
                  description=plan.description))
  return export_lib.export_hub_module(method, out, info, leave_out=plan.leave_out)


def main(argv, overrides):
  del argv
  if overrides:
    raise UserError("tfssl.convert takes no --config overrides: the file decides the model.")
  for name in ("from", "checkpoint", "model", "out"):
    if not getattr(FLAGS, name):
      raise UserError(f"--{name} is required: python -m tfssl.convert --from=FORMAT "
                      f"--checkpoint=PATH --model=MODEL --out=DIR (formats: "
                      f"{', '.join(FORMATS.names())}).")
  out = convert(getattr(FLAGS, "from"), FLAGS.checkpoint, FLAGS.model, FLAGS.out,
                input_normalization=FLAGS.input_normalization,
                ft_proj_selector=FLAGS.ft_proj_selector, patch_task=FLAGS.patch_task)
  print(f"Wrote {out}")


FLAGS = flags.FLAGS
if __name__ == "__main__":
  flags.DEFINE_string("from", None, f"Format of the file: {', '.join(FORMATS.names())}.")
  flags.DEFINE_string("checkpoint", None, "The released checkpoint file.")
  flags.DEFINE_string("model", None, "The tfssl model it becomes, e.g. resnet50_v1, vit_s16.")
  flags.DEFINE_string("out", None, "Directory of the module to write (local or gs://).")
  flags.DEFINE_string("input_normalization", None,
                      "What the weights were trained on: imagenet (torchvision's mean/std) or "
                      "inception ([-1, 1]); default: the format's (imagenet for PyTorch).")
  flags.DEFINE_integer("ft_proj_selector", None,
                       "SimCLR / FNC formats: the projection layer head_supervised was trained "
                       "on (default 0, the backbone's output; SimCLRv2's fine-tuned releases: 1).")
  flags.DEFINE_string("patch_task", None,
                       "tf1_hub: the module is one of Revisiting's patch-task nets (jigsaw, "
                       "relative_patch_location; root conv and last stage of stride 1, which "
                       "the file does not show): convert it as that method's module.")
  cli.run(main)
