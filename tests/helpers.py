"""Tiny configs shared by the tests: a ResNet with a few thousand parameters on 16 px digits."""

from tfssl import config as config_lib
from tfssl import methods

TINY = ["model_width=0.0625", "image_size=16", "batch_size=32", "eval_batch_size=64",
        "steps_per_loop=5", "checkpoint_every_steps=10", "warmup_epochs=0",
        "learning_rate=0.1", "lr_base_batch_size=32", "lr_schedule=constant", "weight_decay=1e-4",
        "log_every_seconds=0", "summary_images=4", "crop_area_min=0.5", "shuffle_buffer=256"]


def tiny_config(method="supervised", *overrides, model="resnet10_v2", dataset="digits", **fields):
  return config_lib.build_config(methods.get_method(method), TINY + list(overrides),
                                 method=method, model=model, dataset=dataset, **fields)
