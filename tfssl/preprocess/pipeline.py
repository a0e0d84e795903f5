"""big_vision-style op strings: "inception_crop(224)|random_flip|color_distortion(strength=0.5)"."""

import ast
import inspect

from tfssl.errors import UserError
from tfssl.preprocess.ops import PREPROCESS, split_seed


def _parse_op(text):
  try:
    node = ast.parse(text.strip(), mode="eval").body
  except SyntaxError as e:
    raise UserError(f"Cannot parse preprocessing op '{text}': {e.msg}.") from e
  if isinstance(node, ast.Name):
    return node.id, (), {}
  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
    try:
      args = tuple(ast.literal_eval(a) for a in node.args)
      kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    except ValueError as e:
      raise UserError(f"Arguments of preprocessing op '{text}' must be literals.") from e
    return node.func.id, args, kwargs
  raise UserError(f"Cannot parse preprocessing op '{text}': expected name or name(args).")


def parse(spec):
  """Op string -> fn(image, seed) -> image; each random op gets its own sub-seed.

  "inception_crop(224)|random_flip|color_distortion(strength=0.5)|gaussian_blur": ops
  are registered names (PREPROCESS), arguments are Python literals. Unknown ops and
  arguments an op does not take raise UserError here, before any data is read. An empty
  string is the identity.
  """
  steps = []
  for text in filter(str.strip, spec.split("|")):
    name, args, kwargs = _parse_op(text)
    op = PREPROCESS.get(name)
    signature = inspect.signature(op)
    takes_seed = "seed" in signature.parameters
    try:
      signature.bind(None, *((None,) if takes_seed else ()), *args, **kwargs)
    except TypeError as e:
      raise UserError(f"Bad arguments in preprocessing op '{text.strip()}': {e}. "
                      f"Signature: {name}{signature}.") from e
    steps.append((op, takes_seed, args, kwargs))

  def apply(image, seed):
    seeds = split_seed(seed, max(len(steps), 1))
    for (op, takes_seed, args, kwargs), op_seed in zip(steps, seeds):
      image = op(image, op_seed, *args, **kwargs) if takes_seed else op(image, *args, **kwargs)
    return image

  return apply
