"""Daino: semi-supervised DINO (Fini et al. 2023; pietroastolfi/suave-daino, main_daino.py).

A student and a teacher of the same architecture, each a backbone and DINO's head: an MLP
(fc-GELU-fc-GELU-fc to `proj_out_dim`), L2 normalisation, and a weight-normalised,
bias-free layer with one unit per class (the prototypes; its magnitudes are learnt, as
the recipe's norm_last_layer false). The teacher sees the two global crops of each
unlabelled image; its outputs, centred (an EMA of their mean over all replicas,
`center_momentum`) and sharpened (teacher temperature, warmed up linearly per epoch from
`warmup_teacher_temperature` over `warmup_teacher_temperature_epochs`), are the targets
every other crop of the student predicts; labelled images predict their class (see
`multicrop`). Only the student learns (AdamW; weight decay follows a cosine from
`weight_decay` to `weight_decay_end`, the prototype magnitudes decayed too, as DINO's
[K, 1] weight_g); after each update the teacher's parameters move to
m * teacher + (1 - m) * student, m following a cosine from `teacher_momentum` to 1; its
batch-norm statistics (ResNets) are those of its own training-mode passes, as DINO's.

Evaluation and export use the teacher, as DINO evaluates: `default`, the taps, `proj` and
`logits` (teacher scores / temperature); fine-tuning a module trains the teacher's weights.
Its trackables name the teacher's parts `backbone`, `projection`, `prototypes` (what
`--init_from` another run loads) and the student's `student_*`. `--init_from` loads another
run's `backbone` (and, with init_projection, its `projection`: of a Daino run, the
teacher's) into the student and copies it into the teacher, as main_daino.py; of a run
with a student (DINO's, Daino's), its student's, as main_daino.py loads DINO's.

`dino` is the same code without the labelled stream: DINO (main_dino.py), with its
per-parameter gradient clipping (`clip_grad`), the last layer frozen for the first
`freeze_last_layer_epochs` and stochastic depth in the student (`drop_path_rate`).
"""

import keras
import tensorflow as tf

from tfssl import losses
from tfssl import models
from tfssl import optim
from tfssl import preprocess as pp
from tfssl.errors import UserError
from tfssl.models import vit
from tfssl.methods.base import METHODS, cross_replica_sum, moving_average_update, num_replicas
from tfssl.methods.base import views_major
from tfssl.methods.multicrop import CROP_SAMPLER, NUM_GLOBAL_VIEWS, LabelFree
from tfssl.methods.multicrop import MultiCropSemiSupervised
from tfssl.methods.multicrop import local_crop_size


def _trunc_normal():
  return keras.initializers.TruncatedNormal(stddev=0.02)


class DinoProjection(keras.layers.Layer):
  """DINO head's MLP, fc-GELU-fc-GELU-fc (with `batch_norm`, DINO's use_bn_in_head, a
  batch norm after each hidden fc), in float32; outputs the L2-normalised bottleneck."""

  def __init__(self, in_dim, hidden_dim, bottleneck_dim, config, batch_norm=False, **kwargs):
    super().__init__(**kwargs)
    self.in_dim = in_dim
    dense = lambda units, name: keras.layers.Dense(
        units, kernel_initializer=_trunc_normal(), name=name, dtype="float32")
    self.fc1, self.fc2, self.fc3 = (dense(hidden_dim, "fc1"), dense(hidden_dim, "fc2"),
                                    dense(bottleneck_dim, "fc3"))
    self.norms = None
    if batch_norm:
      self.bn1, self.bn2 = [keras.layers.BatchNormalization(
          momentum=config.bn_momentum, epsilon=config.bn_epsilon, synchronized=config.sync_bn,
          name=name, dtype="float32") for name in ("bn1", "bn2")]
      self.norms = (self.bn1, self.bn2)

  def build(self, input_shape):
    del input_shape
    self.fc1.build((None, self.in_dim))
    self.fc2.build((None, self.fc1.units))
    self.fc3.build((None, self.fc2.units))
    if self.norms:
      for norm in self.norms:
        norm.build((None, self.fc1.units))
    self.built = True

  def call(self, features, training=False):
    x = tf.cast(features, tf.float32)
    for i, fc in enumerate((self.fc1, self.fc2)):
      x = fc(x)
      if self.norms:
        x = self.norms[i](x, training=training)
      x = keras.ops.gelu(x, approximate=False)
    return tf.math.l2_normalize(self.fc3(x), axis=-1)


class WeightNormPrototypes(keras.layers.Layer):
  """Bias-free linear layer with weight normalisation: unit k's weights are
  magnitude_k * direction_k / |direction_k| (torch weight_norm, magnitudes start at 1;
  with `learn_magnitude` false they stay 1, DINO's norm_last_layer)."""

  def __init__(self, units, learn_magnitude=True, **kwargs):
    super().__init__(dtype="float32", **kwargs)
    self.units = units
    self.learn_magnitude = learn_magnitude

  def build(self, input_shape):
    self.direction = self.add_weight(
        name="direction", shape=(input_shape[-1], self.units),
        initializer=keras.initializers.GlorotUniform())
    self.magnitude = self.add_weight(name="magnitude", shape=(self.units,), initializer="ones",
                                     trainable=self.learn_magnitude)
    self.built = True

  def call(self, x):
    kernel = tf.math.l2_normalize(self.direction, axis=0) * self.magnitude
    return tf.matmul(tf.cast(x, tf.float32), kernel)


class Center(tf.Module):
  def __init__(self, num_classes):
    super().__init__(name="center")
    # Every replica writes the same value (an all-reduced mean).
    self.value = tf.Variable(tf.zeros([1, num_classes]), trainable=False, name="value",
                             aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


def clip_each_gradient(grads, max_norm):
  """DINO's clip_gradients: each parameter's gradient of the global batch scaled to norm
  at most `max_norm` (by max_norm / (norm + 1e-6)). Per replica, the norm is that of the sum
  over replicas, and each replica's share is scaled alike, so the summed update is clipped."""
  clipped = []
  for grad in grads:
    if grad is None:
      clipped.append(grad)
      continue
    norm = tf.norm(cross_replica_sum(grad))
    clipped.append(grad * tf.minimum(max_norm / (norm + 1e-6), 1.0))
  return clipped


def teacher_temperature(epoch, warmup, final, warmup_epochs):
  """DINO's per-epoch schedule: linspace(warmup, final, warmup_epochs)[epoch], then final."""
  if warmup_epochs <= 1:
    return tf.where(epoch < warmup_epochs, warmup, final)
  progress = tf.minimum(tf.cast(epoch, tf.float32) / (warmup_epochs - 1), 1.0)
  return warmup + (final - warmup) * progress


def teacher_momentum(step, total_steps, start):
  """DINO's momentum schedule: a cosine from `start` at step 0 to 1 at `total_steps`."""
  return optim.cosine_between(start, 1.0, step, total_steps)


@METHODS.register("daino")
class Daino(MultiCropSemiSupervised):
  """DINO's self-distillation on unlabelled crops + class one-hots on labelled ones."""

  gathers_across_replicas = True  # the centre's mean is all-reduced
  stall_causes = ("for DINO/Daino, a teacher_temperature (or its warmup) too high for the "
                  "number of prototypes, a center_momentum that lets centring flatten the "
                  "targets, or a teacher_momentum too low")

  @classmethod
  def default_config(cls):
    # daino/scripts/train_10perc.sh (= train_1perc.sh but the subset), global batches of
    # its 16 GPUs: 32 x 16 labelled, 64 x 16 unlabelled images.
    return dict(super().default_config(), **{
        "batch_size": 512,
        "unsup_batch_size": 1024,
        "train_epochs": 60.0,
        "global_crop_area": (0.25, 1.0),
        "local_crop_area": (0.05, 0.25),
        "proj_hidden_dim": 2048,
        "proj_out_dim": 256,
        # DINO's use_bn_in_head (false for ViTs); ResNets' pre-logits share a large
        # common component, which without it leaves every image's output nearly alike.
        "head_batch_norm": False,
        "teacher_momentum": 0.990,
        "teacher_temperature": 0.07,
        "warmup_teacher_temperature": 0.04,
        "warmup_teacher_temperature_epochs": 10,
        "center_momentum": 0.9,
        "optimizer": "adamw",
        "learning_rate": 9.6e-4,  # 2.4e-4 per 256 unlabelled images x 1024 / 256
        "lr_scaling": "none",
        "lr_schedule": "cosine",
        "warmup_epochs": 4.0,
        "end_lr_factor": 1e-5 / 9.6e-4,  # min_lr 1e-5
        "weight_decay": 0.04,
        "weight_decay_end": 0.4,
        "sync_bn": True,
        "mixup_lab_group_size": 32,
        "norm_last_layer": False,
        # DINO's clip_grad: each parameter's gradient scaled to at most this norm (0: off).
        "clip_grad": 0.0,
        "freeze_last_layer_epochs": 0.0,  # DINO's freeze_last_layer
        # Stochastic depth of the student (ViTs). main_daino.py sets 0.1 but never puts its
        # student in training mode after the first validation, so it is never active.
        "drop_path_rate": 0.0,
    })

  @classmethod
  def check_config(cls, config, image_size):
    super().check_config(config, image_size)
    for key in ("teacher_temperature", "warmup_teacher_temperature"):
      if config[key] <= 0:
        raise UserError(f"{key}={config[key]} must be positive.")
    if config.polyak_averaging:
      raise UserError("polyak_averaging would average the student, but Daino evaluates and "
                      "exports its teacher (itself an average): set polyak_averaging=false.")
    for key in ("teacher_momentum", "center_momentum"):
      if not 0 <= config[key] <= 1:
        raise UserError(f"{key}={config[key]} must be in [0, 1].")
    for key in ("clip_grad", "freeze_last_layer_epochs", "drop_path_rate"):
      if config[key] < 0:
        raise UserError(f"{key}={config[key]} must be >= 0.")
    patch = models.patch_size(config.model, image_size)
    if patch:
      local_size = local_crop_size(config, image_size)
      for key, size in (("image_size", image_size), ("local_crop_size", local_size)):
        if size % patch:
          raise UserError(
              f"{config.model} cuts crops into {patch}x{patch} patches, which do not tile "
              f"the {size}-px crops ({key}={size}): use a crop size divisible by {patch} "
              f"(DINO: 224 and 96 for patch 16).")

  def backbone_options(self):
    # main_dino.py builds its ResNets (torchvision's) without stochastic depth whatever
    # drop_path_rate says: only ViTs get it.
    rate = self.config.drop_path_rate
    return {"drop_path_rate": rate} if rate and self.config.model in vit.MODEL_NAMES else {}

  def view(self, image, seed, size, area_range, index):
    """DINO's crops: the first global crop always blurred, the second rarely and sometimes
    solarized, the local ones blurred half the time."""
    if not self.config.color_jitter_unlabelled:
      return pp.supervised_train(image, seed, size, area_range=area_range, sampler=CROP_SAMPLER)
    blur_p, solarize_p = {0: (1.0, 0.0), 1: (0.1, 0.2)}.get(index, (0.5, 0.0))
    if not self.config.use_blur:
      blur_p = solarize_p = 0.0
    return pp.dino_view(image, seed, size, area_range, blur_p=blur_p, solarize_p=solarize_p,
                        jitter_strength=self.config.color_jitter_strength)

  # --- models ---------------------------------------------------------------

  def build(self):
    super().build()
    config = self.config
    self.student = self.backbone
    # DINO's teacher has no stochastic depth.
    self.teacher = self.new_backbone(name_prefix="teacher",
                                     **{key: 0.0 for key in self.backbone_options()})
    self.student_projection, self.projection = [
        DinoProjection(self.feature_dim, config.proj_hidden_dim, config.proj_out_dim, config,
                       batch_norm=config.head_batch_norm, name=name, dtype="float32")
        for name in ("projection", "teacher_projection")]
    self.student_prototypes, self.prototypes = [
        WeightNormPrototypes(self.num_prototypes, learn_magnitude=not config.norm_last_layer,
                             name=name)
        for name in ("prototypes", "teacher_prototypes")]
    for layer in (self.student_projection, self.projection):
      layer.build((None, self.feature_dim))
    for layer in (self.student_prototypes, self.prototypes):
      layer.build((None, config.proj_out_dim))
    self.center = Center(self.num_prototypes)
    self.copy_student_to_teacher()

  def _pairs(self):
    """(teacher variable, student variable) of every part, in the same order."""
    for teacher, student in ((self.teacher, self.student),
                             (self.projection, self.student_projection),
                             (self.prototypes, self.student_prototypes)):
      yield from zip(teacher.weights, student.weights)

  def _float_pairs(self):
    return [(t, s) for t, s in self._pairs() if "float" in str(t.dtype)]

  def _trainable_pairs(self):
    """The pairs DINO's EMA covers: parameters, not batch-norm statistics, which the
    teacher keeps of its own forward passes (in training mode, as DINO's teacher)."""
    return [(t, s) for t, s in self._pairs() if s.trainable]

  def copy_student_to_teacher(self):
    for t, s in self._float_pairs():
      t.assign(s)

  def update_teacher(self, momentum):
    """teacher <- momentum * teacher + (1 - momentum) * student."""
    return moving_average_update(self._trainable_pairs(), momentum)

  def after_initialize(self):
    """`--init_from` loaded the student; the teacher starts as its copy (main_daino.py)."""
    self.copy_student_to_teacher()

  def trackables(self):
    return {"backbone": self.teacher, "projection": self.projection,
            "prototypes": self.prototypes, "student_backbone": self.student,
            "student_projection": self.student_projection,
            "student_prototypes": self.student_prototypes, "center": self.center}

  def trackables_to_initialize(self, saved=()):
    """Another run's `backbone` (and `projection`) into the student: matched by variable
    path too (Polyak averages), which the teacher's prefixed layers do not share. Of a run
    with a student (DINO, Daino), its student's, as main_daino.py loads DINO's."""
    prefix = "student_" if "student_backbone" in saved else ""
    trackables = {prefix + "backbone": self.student}
    if self.config.init_projection:
      trackables[prefix + "projection"] = self.student_projection
    return trackables

  @property
  def trainable_variables(self):
    return [v for part in (self.student, self.student_projection, self.student_prototypes)
            for v in part.trainable_variables]

  def exported_trainable_variables(self):
    return [t for t, _ in self._trainable_pairs()]

  def head(self, features, training, teacher=False):
    projection, prototypes = ((self.projection, self.prototypes) if teacher else
                              (self.student_projection, self.student_prototypes))
    embeddings = projection(features, training=training)
    return embeddings, prototypes(embeddings)

  def head_outputs(self, images, training, teacher=False):
    outputs = (self.teacher if teacher else self.student)(images, training=training)
    return (outputs,) + self.head(outputs["default"], training, teacher)

  def representations(self, images, training=False):
    return self.exported_outputs(*self.head_outputs(images, training, teacher=True))

  # --- training -------------------------------------------------------------

  def frozen_prototype_steps(self):
    return round(self.config.freeze_last_layer_epochs * self.steps_per_epoch_count)

  def prototype_variables(self):
    return self.student_prototypes.trainable_variables

  def adjust_gradients(self, grads):
    """DINO clips, then cancels the last layer's gradients while it is frozen."""
    if self.config.clip_grad:
      grads = clip_each_gradient(grads, self.config.clip_grad)
    return super().adjust_gradients(grads)

  def after_step(self):
    momentum = teacher_momentum(self.current_step() - 1, self.total_steps,
                                self.config.teacher_momentum)
    return self.update_teacher(momentum)

  def compute_loss(self, batch, training=True):
    config = self.config
    unsup = self.unlabelled(batch)
    teacher_scores = tf.stop_gradient(
        self.head_outputs(views_major(unsup["global"]), training, teacher=True)[2])
    epoch = self.current_step() // self.steps_per_epoch_count
    temperature = teacher_temperature(epoch, config.warmup_teacher_temperature,
                                      config.teacher_temperature,
                                      config.warmup_teacher_temperature_epochs)
    targets = tf.reshape(losses.dino_teacher_probs(teacher_scores, self.center.value, temperature),
                         [NUM_GLOBAL_VIEWS, unsup["global"].shape[0], -1])
    labelled_scores, view_scores, global_embeddings = self.student_outputs(batch, training)
    per_image = losses.cross_view_cross_entropy(view_scores, targets, config.temperature)
    loss, metrics = self.combined_loss(batch, labelled_scores, per_image, targets, training)
    if training:
      batch_mean = cross_replica_sum(tf.reduce_sum(teacher_scores, 0, keepdims=True)) / (
          NUM_GLOBAL_VIEWS * self.unsup_batch_size)
      with tf.control_dependencies([targets]):
        update = self.center.value.assign(
            losses.updated_center(self.center.value, batch_mean, config.center_momentum))
      with tf.control_dependencies([update]):
        loss = tf.identity(loss)
    return loss, dict(metrics, teacher_temperature=temperature / num_replicas(),
                      **self.diagnostics_of_views(view_scores, global_embeddings))



@METHODS.register("dino")
class Dino(LabelFree, Daino):
  """DINO (Caron et al. 2021; facebookresearch/dino, main_dino.py): Daino's
  self-distillation without the labelled stream, over `num_prototypes` outputs.

  Exports the teacher's `default`, taps and `proj` (the normalised bottleneck)."""

  @classmethod
  def default_config(cls):
    # main_dino.py's defaults, global batch of the README's 8 GPUs x 64 images.
    return dict(super().default_config(), **{
        "model": "vit_s16",
        "batch_size": 512,
        "train_epochs": 100.0,
        "num_prototypes": 65536,
        "norm_last_layer": True,
        "global_crop_area": (0.4, 1.0),
        "local_crop_area": (0.05, 0.4),
        "teacher_momentum": 0.996,
        "teacher_temperature": 0.04,
        "warmup_teacher_temperature": 0.04,
        "warmup_teacher_temperature_epochs": 0,
        "learning_rate": 5e-4,  # per 256 images
        "lr_scaling": "linear",
        "lr_base_batch_size": 256,
        "warmup_epochs": 10.0,
        "end_lr_factor": 1e-6 / 1e-3,  # min_lr 1e-6 of 5e-4 x 512 / 256
        "clip_grad": 3.0,
        "freeze_last_layer_epochs": 1.0,
        "drop_path_rate": 0.1,
    })
