"""Optimizers, learning-rate schedules and weight decay (Keras 3 optimizer API only)."""

import functools
import math

import keras
import tensorflow as tf

from tfssl.errors import UserError

OPTIMIZERS = ("sgd", "adam", "adamw", "lars")
_NOT_DECAYED_NAMES = ("bias", "gamma", "beta")


def variable_path(variable):
  """`resnet/conv1/kernel`: a Keras 3 variable's path, or a tf.Variable's name without `:0`."""
  return (getattr(variable, "path", None) or variable.name).split(":")[0]


def variable_short_name(variable):
  """`kernel` for a variable whose path is `resnet/conv1/kernel` (Keras 3 or tf.Variable)."""
  return variable_path(variable).split("/")[-1]


def is_decayed(variable, skip_bias_and_bn=True):
  """Biases and batch-norm scales/offsets are exempt from weight decay (and LARS)."""
  return not (skip_bias_and_bn and variable_short_name(variable) in _NOT_DECAYED_NAMES)


def l2_weight_decay(variables, weight_decay, skip_bias_and_bn=True):
  """wd * sum(w**2) / 2 over decayed variables, the TF1 `l2_regularizer` convention."""
  decayed = [v for v in variables if is_decayed(v, skip_bias_and_bn)]
  if not decayed or not weight_decay:
    return tf.constant(0.0)
  return weight_decay * tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in decayed])


def scaled_learning_rate(config, global_batch_size):
  """Base learning rate scaled with the batch: linear (lr*B/base) or sqrt (lr*sqrt(B))."""
  if config.lr_scaling == "linear":
    return config.learning_rate * global_batch_size / config.lr_base_batch_size
  if config.lr_scaling == "sqrt":
    return config.learning_rate * math.sqrt(global_batch_size)
  if config.lr_scaling == "none":
    return config.learning_rate
  raise UserError(f"Unknown lr_scaling '{config.lr_scaling}'. Known: linear, sqrt, none.")


class WarmupThenDecay(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warmup from `peak * start_factor` to `peak` over `warmup_steps`, then cosine
  (to `peak * end_factor`), piecewise or constant."""

  def __init__(self, peak, total_steps, warmup_steps=0, kind="cosine", boundaries=(),
               decay_factor=0.1, end_factor=0.0, start_factor=0.0):
    if kind not in ("cosine", "piecewise", "constant"):
      raise UserError(f"Unknown lr_schedule '{kind}'. Known: cosine, piecewise, constant.")
    self.peak = float(peak)
    self.total_steps = int(total_steps)
    self.warmup_steps = int(warmup_steps)
    self.kind = kind
    self.boundaries = tuple(int(b) for b in boundaries)
    self.decay_factor = float(decay_factor)
    self.end_factor = float(end_factor)
    self.start_factor = float(start_factor)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    if self.kind == "cosine":
      decay_steps = max(self.total_steps - self.warmup_steps, 1)
      progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
      cosine = 0.5 * (1.0 + tf.cos(math.pi * progress))
      decayed = self.peak * (self.end_factor + (1.0 - self.end_factor) * cosine)
    elif self.kind == "piecewise":
      num_passed = tf.add_n([tf.cast(step >= b, tf.float32) for b in self.boundaries]
                            or [tf.constant(0.0)])
      decayed = self.peak * tf.pow(self.decay_factor, num_passed)
    else:
      decayed = tf.constant(self.peak)
    if self.warmup_steps > 0:
      start = self.peak * self.start_factor
      warmup = start + (self.peak - start) * step / self.warmup_steps
      return tf.where(step < self.warmup_steps, warmup, decayed)
    return decayed

  def get_config(self):
    return dict(peak=self.peak, total_steps=self.total_steps, warmup_steps=self.warmup_steps,
                kind=self.kind, boundaries=self.boundaries, decay_factor=self.decay_factor,
                end_factor=self.end_factor, start_factor=self.start_factor)


def build_schedule(config, global_batch_size, steps_per_epoch, total_steps):
  return WarmupThenDecay(
      peak=scaled_learning_rate(config, global_batch_size),
      total_steps=total_steps,
      warmup_steps=round(config.warmup_epochs * steps_per_epoch),
      kind=config.lr_schedule,
      boundaries=[round(e * steps_per_epoch) for e in config.decay_epochs],
      decay_factor=config.decay_factor,
      end_factor=config.end_lr_factor,
      start_factor=config.warmup_start_factor)


class LARS(keras.optimizers.Optimizer):
  """Layer-wise adaptive rate scaling (You et al. 2017) with momentum, as SimCLR uses it.

  Weight decay is added to the gradient before the trust ratio; biases and batch-norm
  parameters, and variables whose path contains one of `exclude_paths` (SimCLR: its
  linear head), get neither weight decay nor the trust ratio.
  """

  def __init__(self, learning_rate, momentum=0.9, weight_decay_rate=0.0, eta=0.001,
               nesterov=False, skip_bias_and_bn=True, exclude_paths=(), name="lars", **kwargs):
    super().__init__(learning_rate=learning_rate, name=name, **kwargs)
    self.momentum = momentum
    self.weight_decay_rate = weight_decay_rate
    self.eta = eta
    self.nesterov = nesterov
    self.skip_bias_and_bn = skip_bias_and_bn
    self.exclude_paths = tuple(exclude_paths)

  def _adapted(self, variable):
    return (is_decayed(variable, self.skip_bias_and_bn)
            and not any(part in variable_path(variable) for part in self.exclude_paths))

  def build(self, variables):
    if self.built:
      return
    super().build(variables)
    self._velocities = [self.add_variable_from_reference(v, "velocity") for v in variables]

  def update_step(self, gradient, variable, learning_rate):
    learning_rate = tf.cast(learning_rate, variable.dtype)
    velocity = self._velocities[self._get_variable_index(variable)]
    if self._adapted(variable):
      gradient = gradient + self.weight_decay_rate * variable
      weight_norm = tf.norm(variable)
      grad_norm = tf.norm(gradient)
      trust_ratio = tf.where(
          (weight_norm > 0) & (grad_norm > 0), self.eta * weight_norm / grad_norm, 1.0)
      learning_rate = learning_rate * trust_ratio
    new_velocity = self.momentum * velocity + learning_rate * gradient
    self.assign(velocity, new_velocity)
    if self.nesterov:
      update = self.momentum * new_velocity + learning_rate * gradient
    else:
      update = new_velocity
    self.assign_sub(variable, update)

  def get_config(self):
    config = super().get_config()
    config.update(momentum=self.momentum, weight_decay_rate=self.weight_decay_rate,
                  eta=self.eta, nesterov=self.nesterov, skip_bias_and_bn=self.skip_bias_and_bn,
                  exclude_paths=self.exclude_paths)
    return config


def cosine_between(start, end, step, total_steps):
  """`start` at step 0 to `end` at `total_steps` along a half cosine (DINO's schedules)."""
  progress = tf.clip_by_value(tf.cast(step, tf.float32) / max(total_steps, 1), 0.0, 1.0)
  return end + (start - end) * 0.5 * (1.0 + tf.cos(math.pi * progress))


class AdamWCosineDecay(keras.optimizers.AdamW):
  """AdamW whose decoupled weight decay follows a cosine from `weight_decay` to
  `weight_decay_end` over `total_steps` (DINO's wd_schedule: 0.04 -> 0.4)."""

  def __init__(self, learning_rate, weight_decay_end, total_steps, **kwargs):
    super().__init__(learning_rate, **kwargs)
    self.weight_decay_end = float(weight_decay_end)
    self.total_steps = int(total_steps)

  # Keras reads `self.weight_decay` when it applies the decay; a property makes it a
  # function of the step counter inside the compiled update.
  @property
  def weight_decay(self):
    if self._weight_decay_start is None or not hasattr(self, "total_steps"):
      return self._weight_decay_start
    return cosine_between(self._weight_decay_start, self.weight_decay_end, self.iterations,
                          self.total_steps)

  @weight_decay.setter
  def weight_decay(self, value):
    self._weight_decay_start = value

  def get_config(self):
    config = super().get_config()
    config.update(weight_decay=self._weight_decay_start, weight_decay_end=self.weight_decay_end,
                  total_steps=self.total_steps)
    return config


def build_optimizer(config, learning_rate, total_steps=1):
  """The configured Keras 3 optimizer; decoupled weight decay lives here, L2 in the loss
  (`total_steps`: the length of a weight-decay schedule)."""
  decoupled_wd = config.weight_decay if config.weight_decay_mode == "decoupled" else 0.0
  if config.weight_decay_mode not in ("l2", "decoupled"):
    raise UserError(f"Unknown weight_decay_mode '{config.weight_decay_mode}'. Known: l2, decoupled.")
  name = config.optimizer
  if config.weight_decay_end >= 0 and name != "adamw":
    raise UserError(f"weight_decay_end={config.weight_decay_end} (a weight-decay schedule) "
                    "needs optimizer=adamw; set weight_decay_end=-1 for a constant decay.")
  if name == "sgd":
    optimizer = keras.optimizers.SGD(learning_rate, momentum=config.momentum,
                                     nesterov=config.nesterov,
                                     weight_decay=decoupled_wd or None)
  elif name in ("adam", "adamw"):
    cls = keras.optimizers.AdamW if name == "adamw" else keras.optimizers.Adam
    kwargs = dict(beta_1=config.adam_beta1, beta_2=config.adam_beta2, epsilon=config.adam_epsilon)
    if name == "adamw":
      # AdamW's decay is decoupled by definition, whatever weight_decay_mode says.
      kwargs["weight_decay"] = config.weight_decay
      if config.weight_decay_end >= 0:
        cls = functools.partial(AdamWCosineDecay, weight_decay_end=config.weight_decay_end,
                                total_steps=total_steps)
    elif decoupled_wd:
      kwargs["weight_decay"] = decoupled_wd
    optimizer = cls(learning_rate, **kwargs)
  elif name == "lars":
    return LARS(learning_rate, momentum=config.momentum, weight_decay_rate=decoupled_wd,
                eta=config.lars_eta, nesterov=config.nesterov,
                skip_bias_and_bn=config.weight_decay_skip_bias_and_bn,
                exclude_paths=config.lars_exclude)
  else:
    raise UserError(f"Unknown optimizer '{name}'. Known optimizers: {', '.join(OPTIMIZERS)}.")
  # A scheduled decay may start at 0 and grow: the exclusions must hold from the start.
  if config.weight_decay_skip_bias_and_bn and (optimizer.weight_decay is not None and (
      config.weight_decay or config.weight_decay_end > 0)):
    optimizer.exclude_from_weight_decay(var_names=list(_NOT_DECAYED_NAMES))
  return optimizer


def decay_in_loss(config):
  """Whether weight decay is an L2 term of the loss (else the optimizer applies it)."""
  return config.weight_decay_mode == "l2" and config.optimizer != "adamw"


def loss_weight_decay(config, variables, weight_decay=None):
  """The L2 term to add to the loss (zero when decay is decoupled into the optimizer);
  `weight_decay` overrides config.weight_decay for layers with their own decay."""
  if not decay_in_loss(config):
    return tf.constant(0.0)
  rate = config.weight_decay if weight_decay is None else weight_decay
  return l2_weight_decay(variables, rate, config.weight_decay_skip_bias_and_bn)
