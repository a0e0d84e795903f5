"""Virtual adversarial training (Miyato et al. 2018) and VAT + entropy minimisation, as
S4L runs them on ImageNet.

loss = CE(labelled) + vat_weight * KL(p(x + r_adv) || p(x)) + entmin_weight * H(p(x)),
with the KL and the entropy over the labelled and unlabelled images (S4L's
`apply_vat_to_labeled`). r_adv has L2 norm `vat_epsilon` per image and points where one
power iteration (finite difference `vat_xi`) finds the KL growing fastest; it is a
constant for the update, and the clean prediction p(x) is a constant target (both
stop-gradient, as in the paper). The KL is taken with the perturbed prediction first,
as S4L's code does (Miyato's paper writes KL(p(x) || p(x + r))).

`vat_epsilon` is in S4L's units: the L2 norm over the [-1, 1] pixels the network sees.
Our images are in [0, 1] (the backbone rescales them), so r on them has norm epsilon / 2.

`vat_xi` defaults to 1e-2, not S4L's 1e-6: spread over 224 x 224 x 3 pixels a 1e-6 step
is about 1e-9 per pixel, below float32's spacing near 0.5 (6e-8), so x + probe == x and
the power iteration sees only rounding (measured on a ResNet at 224 px: one image in four
got a zero perturbation, the others a direction far from the converged one). Steps from
5e-3 to 5e-2 all give the same direction (cosine > 0.998), as the finite difference should.
"""

import tensorflow as tf

from tfssl import losses
from tfssl.errors import UserError
from tfssl.methods.base import METHODS, global_mean
from tfssl.methods.semi_supervised import SemiSupervised

# Our [0, 1] images are (x + 1) / 2 of the [-1, 1] pixels that S4L's epsilon measures.
_PIXEL_SCALE = 0.5


def _unit_per_example(vectors):
  """Each example scaled to L2 norm 1. Dividing by the largest entry first keeps this exact
  for the tiny gradients a finite difference of step xi gives (Miyato's normalisation);
  l2_normalize alone returns them nearly unscaled once their squared norm is below its
  epsilon."""
  axes = list(range(1, vectors.shape.rank))
  vectors = vectors / (1e-12 + tf.reduce_max(tf.abs(vectors), axis=axes, keepdims=True))
  return tf.math.l2_normalize(vectors, axis=axes, epsilon=1e-12)


def virtual_adversarial_perturbation(images, clean_logits, logits_fn, epsilon, xi=5e-3,
                                     power_iterations=1):
  """r of L2 norm `epsilon` per example that approximately maximises
  KL(p(images + r) || p(images)), by power iteration on the KL's Hessian.

  Args:
    images: [N, ...] inputs.
    clean_logits: logits_fn(images) (passed in to save a forward pass; not differentiated).
    logits_fn: the network, images -> logits.
    epsilon: norm of the returned perturbation.
    xi: step of the finite difference that approximates Hessian-vector products.
    power_iterations: each costs one forward and one backward pass.

  Returns:
    The perturbation, a constant (stop-gradient) of the shape of `images`.
  """
  clean_logits = tf.stop_gradient(clean_logits)
  direction = tf.random.normal(tf.shape(images), dtype=images.dtype)
  for _ in range(power_iterations):
    probe = xi * _unit_per_example(direction)
    with tf.GradientTape() as tape:
      tape.watch(probe)
      divergence = tf.reduce_sum(
          losses.kl_divergence_from_logits(logits_fn(images + probe), clean_logits))
    direction = tf.stop_gradient(tape.gradient(divergence, probe))
  return tf.stop_gradient(epsilon * _unit_per_example(direction))


def check_vat_config(config):
  if config.vat_epsilon <= 0 or config.vat_xi <= 0:
    raise UserError(f"vat_epsilon={config.vat_epsilon} and vat_xi={config.vat_xi} must be "
                    "positive (S4L's epsilon: 40; our xi: 1e-2).")
  if config.vat_power_iterations < 1:
    raise UserError(f"vat_power_iterations={config.vat_power_iterations}: VAT needs at "
                    "least one power iteration to find its direction (S4L: 1).")


class VATLosses:
  """The VAT and entropy terms on a batch whose clean logits are known (a mixin)."""

  def vat_terms(self, images, clean_logits, global_count, training=True):
    """(KL share, entropy share) over `images`, each this replica's share of the mean."""
    config = self.config
    perturbation = virtual_adversarial_perturbation(
        images, clean_logits, lambda x: self.perturbed_logits(x, training=training),
        epsilon=config.vat_epsilon * _PIXEL_SCALE, xi=config.vat_xi * _PIXEL_SCALE,
        power_iterations=config.vat_power_iterations)
    adversarial_logits = self.perturbed_logits(images + perturbation, training=training)
    divergence = losses.kl_divergence_from_logits(adversarial_logits,
                                                  tf.stop_gradient(clean_logits))
    entropy = losses.entropy_from_logits(clean_logits)
    return global_mean(divergence, global_count), global_mean(entropy, global_count)


def vat_defaults(vat_weight, vat_epsilon, entmin_weight):
  return {
      "vat_weight": vat_weight,
      "vat_epsilon": vat_epsilon,  # L2 norm on [-1, 1] pixels (S4L's units)
      "vat_xi": 1e-2,  # finite-difference step, same units (see the module docstring)
      "vat_power_iterations": 1,
      "entmin_weight": entmin_weight,
  }


@METHODS.register("vat")
class VAT(VATLosses, SemiSupervised):
  """S4L's VAT baseline: supervised CE + VAT on labelled and unlabelled images."""

  @classmethod
  def default_config(cls):
    return dict(super().default_config(), vat_on_labelled=True,
                **vat_defaults(vat_weight=0.5, vat_epsilon=40.0, entmin_weight=0.0))

  @classmethod
  def check_config(cls, config, image_size):
    super().check_config(config, image_size)
    check_vat_config(config)

  def compute_loss(self, batch, training=True):
    sup, unsup = batch["sup"], batch["unsup"]
    sup_features, unsup_features = self.joint_features(sup["image"], unsup["image"],
                                                       training=training)
    sup_logits = self.head(sup_features)
    unsup_logits = self.head(unsup_features)
    class_loss, top1 = self.class_loss(sup_logits, sup["label"], self.config.batch_size)
    if self.config.vat_on_labelled:
      images = tf.concat([sup["image"], unsup["image"]], axis=0)
      clean_logits = tf.concat([sup_logits, unsup_logits], axis=0)
      count = self.config.batch_size + self.unsup_batch_size
    else:
      images, clean_logits, count = unsup["image"], unsup_logits, self.unsup_batch_size
    vat_loss, entmin_loss = self.vat_terms(images, clean_logits, count, training=training)
    loss = (class_loss + self.config.vat_weight * vat_loss +
            self.config.entmin_weight * entmin_loss)
    return loss, dict(
        self.diagnostic_metrics(tf.concat([sup_features, unsup_features], 0),
                                tf.nn.softmax(unsup_logits)),
        class_loss=class_loss, vat_loss=vat_loss, entmin_loss=entmin_loss, top1=top1)


@METHODS.register("vat_entmin")
class VATEntMin(VAT):
  """VAT + entropy minimisation with weight 1 (S4L's `vat_entmin`)."""

  @classmethod
  def default_config(cls):
    return dict(super().default_config(), entmin_weight=1.0)
