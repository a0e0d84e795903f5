"""Small JSON records a run writes into its workdir (config.json, lease.json,
eval/results.json, an export's module_info.json, pseudo-label files)."""

import json
import uuid

import tensorflow as tf

from tfssl.errors import UserError


def write_json(path, obj, **dump_options):
  """Writes `obj` to `path` (indented, keys sorted, unless `dump_options` say otherwise) so that a reader sees the old file or the new one, whole, and a
  job killed while writing leaves no half file under `path`.

  The JSON goes to a temporary name in the same directory (unique per call, so two writers
  do not share one), then is renamed over `path`. Local filesystems rename atomically. On
  gs:// an object appears only once its upload is complete and tf.io.gfile's rename is a
  copy then a delete: readers see the old or the new object whole (Cloud Storage reads are
  strongly consistent), and a kill between the two leaves only a stray `*.tmp-*` object.
  """
  tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
  with tf.io.gfile.GFile(tmp, "w") as f:
    json.dump(obj, f, **dict(dict(indent=2, sort_keys=True, default=str), **dump_options))
  tf.io.gfile.rename(tmp, path, overwrite=True)
  return path


def read_json_record(path, advice):
  """A JSON file a run wrote (config.json, module_info.json); one UserError naming it,
  why it does not parse and `advice` if it does not."""
  with tf.io.gfile.GFile(path, "rb") as f:
    raw = f.read()
  try:
    return json.loads(raw)  # bytes that are not UTF-8 raise a ValueError too
  except ValueError as e:
    raise UserError(f"{path} cannot be read ({e}): {advice}") from e
