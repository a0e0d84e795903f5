"""Methods, registered by name. Importing this package registers every method."""

from tfssl.methods.base import METHODS, Method, get_method
# Importing a method's module registers it.
from tfssl.methods import supervised  # noqa: F401
from tfssl.methods import rotation  # noqa: F401
from tfssl.methods import exemplar  # noqa: F401
from tfssl.methods import jigsaw  # noqa: F401
from tfssl.methods import relative_patch_location  # noqa: F401
from tfssl.methods import s4l  # noqa: F401
from tfssl.methods import vat  # noqa: F401
from tfssl.methods import moam  # noqa: F401
from tfssl.methods import pseudo_label  # noqa: F401
from tfssl.methods import simclr  # noqa: F401
from tfssl.methods import fnc  # noqa: F401
from tfssl.methods import paws  # noqa: F401
from tfssl.methods import suave  # noqa: F401
from tfssl.methods import daino  # noqa: F401

__all__ = ["METHODS", "Method", "get_method"]
