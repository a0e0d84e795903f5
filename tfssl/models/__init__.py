"""Backbones: Keras 3 models from [0, 1] images to a dict of named representations.

Every model returns float32 `default` (pre-logits, globally pooled) plus taps of
intermediate feature maps (`stem`, `block1`...). Heads belong to the methods.
"""

from tfssl.models import layers
from tfssl.models import resnet
from tfssl.models import vgg
from tfssl.models import wide_resnet
from tfssl.registry import Registry

MODELS = Registry("model")
resnet.register_all(MODELS)
wide_resnet.register_all(MODELS)
vgg.register_all(MODELS)


def build_model(name, *, image_size, width=1.0, sync_bn=False, bn_momentum=0.9,
                bn_epsilon=1e-5, cifar_stem=None):
  """Builds a registered backbone; `cifar_stem=None` picks the CIFAR stem for <= 64 px."""
  builder = MODELS.get(name)
  norm = layers.batch_norm_factory(sync_bn=sync_bn, momentum=bn_momentum, epsilon=bn_epsilon)
  return builder(image_size=image_size, width=width, norm=norm, cifar_stem=cifar_stem)
