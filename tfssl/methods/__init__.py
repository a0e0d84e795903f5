"""Methods, registered by name. Importing this package registers every method."""

from tfssl.methods.base import METHODS, Method, get_method
from tfssl.methods import supervised  # noqa: F401  (registers "supervised")

__all__ = ["METHODS", "Method", "get_method"]
