"""Preprocessing ops usable inside tf.data, their compositions, and op-string pipelines."""

from tfssl.preprocess.ops import (PREPROCESS, RESIZE_METHODS, decode_image, eval_crop,
                                  inception_crop, random_flip, resize, resize_center_crop,
                                  split_seed, to_float, value_range)
from tfssl.preprocess.photometric import (color_distortion, color_jitter, gaussian_blur,
                                          equalize, grayscale, hsv_noise, inception_color,
                                          random_equalize, random_grayscale,
                                          random_solarize, solarize)
from tfssl.preprocess.recipes import (PAWS_COLOR_RECIPES, dino_view, inception_train,
                                      paws_view, simclr_train, supervised_train)
from tfssl.preprocess import patches  # pylint: disable=g-bad-import-order
from tfssl.preprocess.pipeline import parse  # pylint: disable=g-bad-import-order

__all__ = ["PAWS_COLOR_RECIPES", "PREPROCESS", "RESIZE_METHODS", "color_distortion", "color_jitter", "decode_image",
           "dino_view",
           "equalize", "eval_crop", "paws_view", "random_equalize", "random_solarize", "solarize",
           "gaussian_blur", "grayscale", "hsv_noise", "inception_color", "inception_crop",
           "inception_train", "parse", "patches", "random_flip", "random_grayscale", "resize",
           "resize_center_crop", "simclr_train", "split_seed", "supervised_train", "to_float",
           "value_range"]
