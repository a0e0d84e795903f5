"""Mix Of All Models (S4L section 5), step 1: S4L-Rotation + VAT + entropy minimisation.

loss = (1 - w_sup - w_vat) * rotation + w_sup * CE + w_vat * VAT + w_ent * H, with the
rotation loss the mean over both streams and VAT and the entropy on every rotation of the
unlabelled images (S4L's `rotation_vat`). Weights 0.3 / 0.3 / 0.3 in the paper.

Steps 2 and 3 are runs of this trainer too (config/moam/): step 2 trains `moam` again,
initialised from step 1 (`--init_from`), on step 1's pseudo-labels of every training
image (`python -m tfssl.label`, then `--pseudo_labels`); step 3 fine-tunes step 2's
network with `supervised` on the labelled subset.
"""

from tfssl.errors import UserError
from tfssl.methods.base import METHODS
from tfssl.methods.rotation import NUM_ROTATIONS
from tfssl.methods.s4l import S4LRotation
from tfssl.methods.vat import VATLosses, check_vat_config, vat_defaults


@METHODS.register("moam")
class MOAM(VATLosses, S4LRotation):
  """S4L-Rotation's two heads and rotated streams, with VAT and EntMin on unlabelled."""

  @classmethod
  def default_config(cls):
    return dict(super().default_config(), sup_weight=0.3, polyak_averaging=True,
                **vat_defaults(vat_weight=0.3, vat_epsilon=32.0, entmin_weight=0.3))

  @classmethod
  def check_config(cls, config, image_size):
    super().check_config(config, image_size)
    check_vat_config(config)
    weights = (config.sup_weight, config.vat_weight)
    if min(weights) < 0 or sum(weights) > 1:
      raise UserError(f"sup_weight={config.sup_weight} and vat_weight={config.vat_weight} "
                      "must be >= 0 with a sum <= 1: the rotation loss gets 1 minus both.")

  def compute_loss(self, batch, training=True):
    config = self.config
    streams = self.rotated_streams(batch, training)
    class_loss, top1 = self.rotated_class_loss(streams)
    rotation_loss, rotation_top1 = self.rotation_loss(streams)
    unsup_logits = self.head(streams["unsup_features"])
    vat_loss, entmin_loss = self.vat_terms(
        streams["unsup_images"], unsup_logits, self.unsup_batch_size * NUM_ROTATIONS,
        training=training)
    rotation_weight = 1.0 - config.sup_weight - config.vat_weight
    loss = (rotation_weight * rotation_loss + config.sup_weight * class_loss +
            config.vat_weight * vat_loss + config.entmin_weight * entmin_loss)
    return loss, dict(self.rotated_diagnostics(streams, unsup_logits), class_loss=class_loss,
                      rotation_loss=rotation_loss, vat_loss=vat_loss, entmin_loss=entmin_loss,
                      top1=top1, rotation_top1=rotation_top1)
