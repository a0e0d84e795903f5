"""What the command-line tools share: `--config.KEY=VALUE` overrides and error reporting."""

import sys

from absl import app
from absl import flags
from absl import logging

from tfssl.errors import NonFiniteLossError, Preempted, UserError

_CONFIG_PREFIX = "--config."


def split_config_overrides(argv):
  """Separates `--config.KEY=VALUE` arguments (ml_collections style) from absl flags."""
  overrides = [a[len(_CONFIG_PREFIX):] for a in argv if a.startswith(_CONFIG_PREFIX)]
  rest = [a for a in argv if not a.startswith(_CONFIG_PREFIX)]
  return rest, overrides


def run(main_fn):
  """absl entry point: main_fn(argv, overrides); a UserError prints one message, exit 2."""
  overrides = []

  def parse(argv):
    rest, found = split_config_overrides(argv)
    overrides.extend(found)
    return flags.FLAGS(rest)

  def wrapped(argv):
    try:
      return main_fn(argv, overrides)
    except (UserError, NonFiniteLossError) as e:
      logging.error("%s", e)
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
    except Preempted as e:
      logging.warning("%s", e)
      print(f"preempted: {e}", file=sys.stderr)
      sys.exit(Preempted.EXIT_CODE)

  app.run(wrapped, flags_parser=parse)
