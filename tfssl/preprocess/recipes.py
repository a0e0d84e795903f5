"""Augmentations composed from the ops: the standard training views."""

import tensorflow as tf

from tfssl.preprocess.ops import PREPROCESS, inception_crop, random_flip, split_seed, uniform
from tfssl.preprocess.photometric import color_distortion, color_jitter, gaussian_blur
from tfssl.preprocess.photometric import inception_color, random_equalize, random_grayscale
from tfssl.preprocess.photometric import random_solarize, solarize
from tfssl.preprocess.randaugment import randaugment


@PREPROCESS.register("supervised_train")
def supervised_train(image, seed, size, area_range=(0.08, 1.0), sampler="slim",
                     resize_method="bilinear"):
  """Inception crop + flip: the supervised / fine-tuning / linear-eval augmentation.
  `sampler` ("slim" or "torchvision") and `resize_method` are inception_crop's."""
  crop_seed, flip_seed = split_seed(seed, 2)
  image = inception_crop(image, crop_seed, size, area_range=area_range, sampler=sampler,
                         resize_method=resize_method)
  return random_flip(image, flip_seed)


@PREPROCESS.register("simclr_train")
def simclr_train(image, seed, size, strength=1.0, blur=True, area_range=(0.08, 1.0),
                 sampler="slim", randaugment_layers=0, randaugment_magnitude=7,
                 resize_method="bilinear"):
  """One SimCLR view: inception crop, flip, colour distortion, blur (p 0.5).

  SimCLR blurs in the batched model input; per view here, with the same distribution.
  CIFAR recipes pass blur=False and strength=0.5. With randaugment_layers > 0, FNC's
  view: RandAugment between the colour jitter and the grayscale (data_util.py's
  preprocess_for_train_instance_randaugment).
  """
  crop_seed, color_seed, blur_seed = split_seed(seed, 3)
  image = supervised_train(image, crop_seed, size, area_range=area_range, sampler=sampler,
                           resize_method=resize_method)
  if randaugment_layers:
    color_seed, augment_seed, gray_seed = split_seed(color_seed, 3)
    image = color_distortion(image, color_seed, strength=strength, p_grayscale=0.0)
    image = randaugment(image, augment_seed, randaugment_layers, randaugment_magnitude)
    image = random_grayscale(image, gray_seed, 0.2)
  else:
    image = color_distortion(image, color_seed, strength=strength)
  if blur:
    image = gaussian_blur(image, blur_seed)
  return image


@PREPROCESS.register("inception_train")
def inception_train(image, seed, size, area_range=(0.05, 1.0)):
  """slim `inception_preprocessing` training view (Revisiting's Rotation and Exemplar):
  random-resized crop of area (0.05, 1), flip, fast-mode colour distortion."""
  crop_seed, color_seed = split_seed(seed, 2)
  return inception_color(supervised_train(image, crop_seed, size, area_range=area_range),
                         color_seed)


PAWS_COLOR_RECIPES = ("imagenet", "cifar")


@PREPROCESS.register("paws_view")
def paws_view(image, seed, size, area_range, strength=1.0, color_recipe="imagenet",
              sampler="slim"):
  """One PAWS crop (large, small or support): random-resized crop of `area_range`, flip,
  colour jitter (p 0.8) and, as suncet's data_manager does it, per dataset:
  "imagenet" grayscale (p 0.2) + blur (p 0.5); "cifar" solarize (p 0.2) + equalize (p 0.2).
  suncet crops with torchvision's RandomResizedCrop: PAWS passes sampler="torchvision"."""
  crop_seed, color_seed, seed_a, seed_b = split_seed(seed, 4)
  image = supervised_train(image, crop_seed, size, area_range=area_range, sampler=sampler)
  if color_recipe == "cifar":
    image = color_distortion(image, color_seed, strength=strength, p_grayscale=0.0)
    return random_equalize(random_solarize(image, seed_a), seed_b)
  image = color_distortion(image, color_seed, strength=strength)
  return gaussian_blur(image, seed_a)


@PREPROCESS.register("dino_view")
def dino_view(image, seed, size, area_range, blur_p=0.5, solarize_p=0.0,
              sampler="torchvision", jitter_strength=1.0):
  """One DINO crop: random-resized crop of `area_range`, flip, colour jitter (brightness
  0.4, contrast 0.4, saturation 0.2, hue 0.1; p 0.8), grayscale (p 0.2), blur (p blur_p)
  and solarization at PIL's threshold 128 (p solarize_p). DINO's first global crop blurs
  with p 1, the second with 0.1 and solarizes with 0.2, the local crops blur with 0.5.
  DINO crops with torchvision's RandomResizedCrop, hence the default sampler.
  jitter_strength scales the four jitter deltas."""
  crop_seed, apply_seed, jitter_seed, gray_seed, blur_seed, solarize_seed = split_seed(seed, 6)
  image = supervised_train(image, crop_seed, size, area_range=area_range, sampler=sampler)
  image = tf.cond(uniform(apply_seed) < 0.8,
                  lambda: color_jitter(image, jitter_seed, *[jitter_strength * delta for
                                                             delta in (0.4, 0.4, 0.2, 0.1)]),
                  lambda: image)
  image = random_grayscale(image, gray_seed, 0.2)
  image = gaussian_blur(image, blur_seed, p=blur_p)
  if solarize_p > 0:
    image = tf.cond(uniform(solarize_seed) < solarize_p, lambda: solarize(image), lambda: image)
  return image
