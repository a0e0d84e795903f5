"""Pseudo-label (Lee 2013) as S4L runs it: plain supervised training on every training
image, labelled by a model trained on the labelled subset (`python -m tfssl.label`),
with the labelled images keeping their true labels. The trainer swaps the dataset's
labels for the file's (`--pseudo_labels=PATH`, usable by any method); this method only
insists on having such a file, so an epoch is a pass over the whole pseudo-labelled split.
"""

from tfssl.errors import UserError
from tfssl.methods.base import METHODS
from tfssl.methods.supervised import Supervised


@METHODS.register("pseudo_label")
class PseudoLabel(Supervised):

  @classmethod
  def default_config(cls):
    return dict(super().default_config(), crop_area_min=0.05)  # S4L's inception_crop

  @classmethod
  def check_config(cls, config, image_size):
    del image_size
    if not config.pseudo_labels:
      raise UserError(
          "Method pseudo_label trains on pseudo-labels: make them with a trained model, "
          "python -m tfssl.label --hub_module=RUN/export/hub --out=LABELS.json, then pass "
          "--pseudo_labels=LABELS.json.")
    if config.labels != "all":
      raise UserError(f"pseudo_label trains on every image of the pseudo-label file, so "
                      f"--labels={config.labels} has no effect here; the labelled subset "
                      "was chosen when the labels were made (python -m tfssl.label "
                      "--labels=...). Drop --labels.")
