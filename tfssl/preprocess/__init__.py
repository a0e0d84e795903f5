"""Preprocessing ops usable inside tf.data, and op-string pipelines."""

from tfssl.preprocess.ops import (PREPROCESS, color_distortion, decode_image, eval_crop,
                                  gaussian_blur, inception_crop, random_flip, random_grayscale,
                                  resize, resize_center_crop, simclr_train, split_seed,
                                  supervised_train, to_float, value_range)
from tfssl.preprocess.pipeline import parse

__all__ = ["PREPROCESS", "color_distortion", "decode_image", "eval_crop", "gaussian_blur",
           "inception_crop", "parse", "random_flip", "random_grayscale", "resize",
           "resize_center_crop", "simclr_train", "split_seed", "supervised_train", "to_float",
           "value_range"]
