"""Prints one table of every eval_hub results.json below a directory.

    python -m tfssl.report /tmp/tfssl_quickstart/eval
"""

import json
import os
import sys

import tensorflow as tf

from tfssl import experiment
from tfssl.errors import UserError

COLUMNS = ("run", "protocol", "dataset", "representation", "top1", "top5", "num_examples")


def collect(root):
  rows = []
  for dirpath, _, filenames in sorted(tf.io.gfile.walk(root)):
    if "results.json" not in filenames:
      continue
    with tf.io.gfile.GFile(os.path.join(dirpath, "results.json")) as f:
      results = json.load(f)
    for result in results if isinstance(results, list) else [results]:
      rows.append(dict(result, run=os.path.relpath(dirpath, root)))
  return rows


def format_rows(rows):
  cells = [[f"{row.get(c):.4f}" if isinstance(row.get(c), float) else str(row.get(c, ""))
            for c in COLUMNS] for row in rows]
  widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c)
            for i, c in enumerate(COLUMNS)]
  line = lambda values: " | ".join(v.ljust(w) for v, w in zip(values, widths))
  return "\n".join([line(COLUMNS), line(["-" * w for w in widths])] + [line(r) for r in cells])


def main(argv):
  if len(argv) != 2:
    print("usage: python -m tfssl.report DIR", file=sys.stderr)
    return 2
  try:
    experiment.check_paths([(argv[1], "DIR")])
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  rows = collect(argv[1])
  if not rows:
    print(f"No results.json below {argv[1]}.", file=sys.stderr)
    return 1
  print(format_rows(rows))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
