"""A run's config as TensorBoard hparams, so that the HParams tab compares the runs of a
logdir holding several workdirs.

Each run is one session, written to WORKDIR/summaries; the scalars of the runs below it
(summaries/train: train/loss...; summaries/eval: eval/top1 or eval/knn_top1 of the
--run_eval job) are its metrics, their values at the last step its final ones, so the
session needs no final write: a run stopped half-way shows where it got to, and the
--run_eval job's results join it whenever they come.

No experiment summary (`hparams_config`) is written: TensorBoard takes one run's,
arbitrarily, for the whole logdir, which would hide the config keys and metrics of the runs
of other methods. Without one the tab shows the union of every session's hparams and of the
scalars below them.
"""

import os

import ml_collections
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp


def hparam_values(config):
  """{key: bool, int, float or str} of every config value; nested ones as "outer.inner",
  values of other types (tuples, None) as their text."""
  values = {}
  items = config.items() if isinstance(config, (dict, ml_collections.ConfigDict)) else ()
  for key, value in sorted(items):
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      values.update({f"{key}.{inner}": v for inner, v in hparam_values(value).items()})
    elif isinstance(value, (bool, int, float, str)):
      values[key] = value
    else:
      values[key] = str(value)
  return values


def write_session(config, summaries_dir, trial_id):
  """Writes `config` as the hparams of the session `trial_id` (the workdir: runs of one
  config in two workdirs stay two rows) to `summaries_dir`, replacing those of an earlier
  start: TensorBoard would show the first, not the config the run was last started with
  (a resumed run trained for more steps, say)."""
  for earlier in tf.io.gfile.glob(os.path.join(summaries_dir, "events.out.tfevents.*")):
    tf.io.gfile.remove(earlier)
  writer = tf.summary.create_file_writer(summaries_dir)
  with writer.as_default():
    hp.hparams(hparam_values(config), trial_id=trial_id)
  writer.close()
