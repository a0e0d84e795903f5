"""Writes a method's representations as a TF-Hub "Reusable SavedModel".

The module takes float32 NHWC images in [0, 1] of any batch size and returns a dict of
representations. It loads with `hub.load`, `hub.KerasLayer` (tf_keras), Keras 3's
`keras.layers.TFSMLayer` and `tf.saved_model.load`; `module_info.json` next to it says
what produced it so evaluation needs no repeated flags.
"""

import os

import tensorflow as tf

from tfssl import records
from tfssl.errors import UserError

MODULE_INFO = "module_info.json"
# Where a module keeps its variables, readable as a checkpoint, and the attribute under
# which that checkpoint holds the method's trackables (`backbone`, `head`...).
MODULE_VARIABLES = os.path.join("variables", "variables")
TRACKABLES_ATTRIBUTE = "_trackables"
_IMAGES_SPEC = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")


class HubModule(tf.Module):
  """The Reusable-SavedModel object: `__call__`, variables, regularization_losses."""

  # The Reusable SavedModel API wants these as saved attributes, not tf.Module's
  # computed properties, so the class attributes shadow those properties.
  variables = None
  trainable_variables = None

  def __init__(self, method, leave_out=()):
    super().__init__(name="tfssl_module")
    self._method = method
    trackables = {name: trackable for name, trackable in method.exported_trackables().items()
                  if name not in leave_out}
    setattr(self, TRACKABLES_ATTRIBUTE, trackables)
    self.variables = [v for trackable in trackables.values() for v in trackable.variables]
    kept = {id(v) for v in self.variables}
    self.trainable_variables = [v for v in method.exported_trainable_variables()
                                if id(v) in kept]
    self.regularization_losses = []
    self.__call__ = tf.function(self._represent)
    self.serving_default = tf.function(
        lambda images: self._represent(images, training=False), input_signature=[_IMAGES_SPEC])

  def _represent(self, images, training=False):
    reps = self._method.representations(images, training=training)
    return {name: tf.cast(value, tf.float32) for name, value in reps.items()}

  def trace(self):
    for training in (False, True):
      self.__call__.get_concrete_function(_IMAGES_SPEC, training)
    return self.serving_default.get_concrete_function()


def export_hub_module(method, export_dir, info, leave_out=()):
  """Saves the module to `export_dir` (any TF filesystem path) with `module_info.json`.
  `leave_out`: trackables the module does not hold (parts `representations` never uses
  that a converted file had no values for)."""
  module = HubModule(method, leave_out)
  serving = module.trace()
  tf.io.gfile.makedirs(export_dir)
  tf.saved_model.save(module, export_dir, signatures={"serving_default": serving},
                      options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
  outputs = {name: spec.shape.as_list() for name, spec in serving.structured_outputs.items()}
  # Written last and whole: a module whose info reads is a finished export.
  records.write_json(os.path.join(export_dir, MODULE_INFO), dict(info, outputs=outputs))
  return export_dir


def _is_module_dir(path):
  return tf.io.gfile.exists(os.path.join(path, "saved_model.pb"))


def resolve_module_dir(path):
  """A module dir itself, or the newest numbered export under an `export/hub` dir."""
  if not path:
    raise UserError("No --hub_module given: pass a module dir or a run's export/hub dir.")
  if _is_module_dir(path):
    return path
  if not tf.io.gfile.isdir(path):
    raise UserError(f"--hub_module '{path}' does not exist. Pass a module dir or a run's "
                    "WORKDIR/export/hub dir (the newest step is taken).")
  for candidate in (path, os.path.join(path, "export", "hub")):
    if not tf.io.gfile.isdir(candidate):
      continue
    steps = sorted((int(name.strip("/")) for name in tf.io.gfile.listdir(candidate)
                    if name.strip("/").isdigit()), reverse=True)
    for step in steps:
      module_dir = os.path.join(candidate, str(step))
      if _is_module_dir(module_dir):
        return module_dir
  raise UserError(f"--hub_module '{path}' holds no SavedModel (no saved_model.pb, and no "
                  "numbered export dirs with one). Train a run first; its modules are in "
                  "WORKDIR/export/hub/<step>/.")


def read_module_info(module_dir):
  """The module's `module_info.json` ({} if it has none)."""
  path = os.path.join(module_dir, MODULE_INFO)
  if not tf.io.gfile.exists(path):
    return {}
  return records.read_json_record(
      path, "the export was cut short or the file damaged. If it is a run's final export, "
      "rerun the training command of its workdir, which exports that step again; or move "
      "the file aside and pass --dataset (and --config.image_size) to evaluate the module "
      "without it.")


def has_module_info(module_dir):
  """Whether the module's export finished: its `module_info.json` (written last) reads."""
  try:
    return bool(read_module_info(module_dir))
  except UserError:
    return False
