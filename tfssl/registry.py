"""Name -> object registries for methods, models, datasets and preprocessing ops."""

import difflib

from tfssl.errors import UserError


class Registry:
  """A small registry; `get` of an unknown name raises UserError listing the known names."""

  def __init__(self, kind):
    self.kind = kind
    self._entries = {}

  def register(self, name):
    def decorator(obj):
      if name in self._entries:
        raise ValueError(f"{self.kind} '{name}' is registered twice.")
      self._entries[name] = obj
      return obj
    return decorator

  def get(self, name):
    if name not in self._entries:
      raise UserError(self.unknown_message(name))
    return self._entries[name]

  def unknown_message(self, name):
    close = difflib.get_close_matches(str(name), self._entries, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return (f"Unknown {self.kind} '{name}'.{hint} Known {self.kind}s: "
            f"{', '.join(self.names())}.")

  def names(self):
    return sorted(self._entries)

  def __contains__(self, name):
    return name in self._entries
