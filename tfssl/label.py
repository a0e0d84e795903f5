"""Pseudo-labels every training image with an exported module's classifier.

    python -m tfssl.label --hub_module=RUN/export/hub --out=/tmp/labels.json
    python -m tfssl.trainer --method=pseudo_label --pseudo_labels=/tmp/labels.json ...

Each image of the train split gets the argmax of the module's `logits`; images of the
labelled subset the module was trained on keep their true labels (S4L's pseudo-label
baseline; `--nokeep_true_labels` labels them too). `--average_over=crops_rotations`
averages the logits over 5 crops x 4 rotations first, as S4L's MOAM step 2 does;
`rotations` over the 4 rotations of the centre view. The dataset, its dir, the labelled
subset and its seed default to the module's own (module_info.json).
"""

import os

import numpy as np
import tensorflow as tf
from absl import flags
from absl import logging

from tfssl import cli
from tfssl import datasets
from tfssl import eval_hub
from tfssl import experiment
from tfssl import export as export_lib
from tfssl import preprocess as pp
from tfssl import pseudo_labels
from tfssl.errors import UserError
from tfssl.methods.rotation import rotate_batch

AVERAGE_OVER = ("none", "rotations", "crops_rotations")
# Methods whose classifier is trained on all four rotations of an image.
ROTATION_TRAINED = ("s4l_rotation", "moam")
_CROP_FRACTION = 0.875


def five_crops(image, size):
  """The 4 corner and the centre size x size crops of the image with its short side
  resized to size / 0.875, aspect kept (S4L: resize_small(256), then 224 crops)."""
  image = pp.decode_image(image)
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = round(size / _CROP_FRACTION) / tf.reduce_min(shape)
  height, width = tf.unstack(tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), size))
  image = tf.image.resize(image, [height, width], method="bilinear")
  bottom, right = height - size, width - size
  corners = [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2)]
  crops = tf.stack([tf.image.crop_to_bounding_box(image, y, x, size, size)
                    for y, x in corners])
  return tf.ensure_shape(crops, [5, size, size, 3])


def _views_fn(average_over, size):
  if average_over == "crops_rotations":
    return lambda image: five_crops(image, size)
  return lambda image: pp.eval_crop(image, size)[None]


def predict_train_split(task, average_over, batch_size):
  """(ids, argmax labels, true labels) of every image of the train split, in read order."""
  views_fn = _views_fn(average_over, task.image_size)
  split = task.source.train_split
  dataset = datasets.eval_dataset(
      task.source, split=split, batch_size=batch_size,
      preprocess_fn=lambda f: {"image": views_fn(f["image"]), "label": f["label"],
                               "id": f["id"]})

  @tf.function
  def predict(images):  # [N, V, H, W, 3] -> [N] labels of the logits averaged over views
    flat = tf.reshape(images, [-1] + images.shape[2:].as_list())
    if average_over != "none":
      flat, _ = rotate_batch(flat)
    logits = task.module(flat, training=False)["logits"]
    # rotate_batch stacks its copies in blocks of the batch: [rotations * N * V, C].
    logits = tf.reshape(logits, [-1, tf.shape(images)[0], images.shape[1], logits.shape[-1]])
    return tf.argmax(tf.reduce_mean(logits, axis=[0, 2]), axis=-1)

  ids, predicted, true = [], [], []
  for batch in dataset:
    keep = batch["mask"].numpy() > 0
    predicted.append(predict(batch["image"]).numpy()[keep])
    true.append(batch["label"].numpy()[keep])
    ids.extend(batch["id"].numpy()[keep])
  return ids, np.concatenate(predicted), np.concatenate(true)


def label(hub_module, out, *, dataset=None, dataset_dir=None, labels=None, seed=None,
          average_over="none", keep_true_labels=True, batch_size=256):
  """Writes the pseudo-label file `out`; returns its record (without the id/label lists)."""
  if average_over not in AVERAGE_OVER:
    raise UserError(f"Unknown --average_over '{average_over}'. Known: {', '.join(AVERAGE_OVER)}.")
  if not out:
    raise UserError("--out is required: the pseudo-label file to write (e.g. labels.json).")
  experiment.check_paths([(hub_module, "--hub_module"), (out, "--out")])
  module_dir = export_lib.resolve_module_dir(hub_module)
  config = eval_hub.default_config()
  task = eval_hub.Task(module_dir, dataset, dataset_dir, config)
  if "logits" not in task.output_shapes():
    raise UserError(f"Module {module_dir} has no classifier output 'logits' (it was exported by "
                    f"method '{task.info.get('method')}'). Pseudo-labels need a module of a "
                    "method with a classifier: supervised, s4l_rotation, s4l_exemplar, vat, "
                    "vat_entmin, moam, pseudo_label.")
  num_classes = task.output_shapes()["logits"][-1]
  if num_classes != task.source.num_classes:
    raise UserError(f"Module {module_dir} classifies {num_classes} classes but dataset "
                    f"'{task.dataset_name}' has {task.source.num_classes}. Label the dataset "
                    "the module was trained on.")
  if average_over != "none" and task.info.get("method") not in ROTATION_TRAINED:
    logging.warning("--average_over=%s averages predictions over rotated images, but module "
                    "%s was trained by '%s', which never saw rotated images: its labels will "
                    "be poor. Use --average_over=none for it.", average_over, module_dir,
                    task.info.get("method"))
  same_dataset = task.dataset_name == task.info.get("dataset")
  module_config = task.info.get("config", {})
  labels = labels or (task.info.get("labels") if same_dataset else None) or "all"
  seed = seed if seed is not None else module_config.get("seed", 0)

  out_dir = os.path.dirname(out)
  if out_dir:
    tf.io.gfile.makedirs(out_dir)  # before the long pass over the data, not after it
  ids, predicted, true = predict_train_split(task, average_over, batch_size)
  kept = 0
  if keep_true_labels and labels != "all":
    all_ids, all_labels = task.source.labels_and_ids(task.source.train_split)
    labelled = datasets.select_labelled_ids(
        labels, all_ids, all_labels, task.source.num_classes, seed=seed,
        dataset_name=task.dataset_name, dataset_dir=task.dataset_dir or None)
    is_labelled = np.isin(datasets.ids_as_text(ids), datasets.ids_as_text(labelled))
    predicted = np.where(is_labelled, true, predicted)
    kept = int(is_labelled.sum())
  else:
    is_labelled = np.zeros(len(ids), bool)
  unlabelled = ~is_labelled
  accuracy = float(np.mean(predicted[unlabelled] == true[unlabelled])) if unlabelled.any() else None
  details = dict(hub_module=module_dir, module_method=task.info.get("method"),
                 module_step=task.info.get("step"), average_over=average_over,
                 labelled_subset=labels, labelled_subset_seed=seed,
                 kept_true_labels=kept, accuracy_on_the_rest=accuracy)
  pseudo_labels.write(out, ids=ids, labels=predicted, dataset=task.dataset_name,
                      split=task.source.train_split, num_classes=num_classes, **details)
  logging.info("Wrote %d pseudo-labels to %s (%d true labels kept; accuracy on the others "
               "%s).", len(ids), out, kept, "n/a" if accuracy is None else f"{accuracy:.4f}")
  return dict(details, out=out, num_examples=len(ids))


FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("hub_module", None, "Module dir, or a run's export/hub dir (newest taken).")
  flags.DEFINE_string("out", None, "Pseudo-label file to write (local or gs://).")
  flags.DEFINE_string("dataset", None, "Dataset to label (default: the module's).")
  flags.DEFINE_string("dataset_dir", None, "Dataset files (default: the module's).")
  flags.DEFINE_string("labels", None, "Labelled subset that keeps its true labels "
                      "(default: the one the module was trained on).")
  flags.DEFINE_integer("seed", None, "Seed of that subset's draw (default: the module's).")
  flags.DEFINE_enum("average_over", "none", AVERAGE_OVER, "Views whose logits are averaged.")
  flags.DEFINE_bool("keep_true_labels", True, "Labelled images keep their true labels.")
  flags.DEFINE_integer("batch_size", 256, "Images per forward pass.")


def main(argv, overrides):
  del argv
  if overrides:
    raise UserError(f"python -m tfssl.label takes no --config.* overrides (got {overrides}).")
  result = label(FLAGS.hub_module, FLAGS.out, dataset=FLAGS.dataset,
                 dataset_dir=FLAGS.dataset_dir, labels=FLAGS.labels, seed=FLAGS.seed,
                 average_over=FLAGS.average_over, keep_true_labels=FLAGS.keep_true_labels,
                 batch_size=FLAGS.batch_size)
  print("\n".join(f"{key}: {value}" for key, value in sorted(result.items())))


if __name__ == "__main__":
  define_flags()
  cli.run(main)
