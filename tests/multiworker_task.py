"""One task of the multi-worker test: the trainer CLI's main, which also writes down the
examples of the train split its input pipeline reads in one epoch.

    TF_CONFIG=... python tests/multiworker_task.py IDS_JSON <trainer flags>
"""

import json
import sys

from absl import flags

from tfssl import cli
from tfssl import trainer


def main():
  ids_path, argv = sys.argv[1], sys.argv[:1] + sys.argv[2:]
  pipelines = []  # (input context, experiment) of each input pipeline this task built
  make_train_dataset_fn = trainer.make_train_dataset_fn

  def recording_dataset_fn(exp, method, *args, **kwargs):
    dataset_fn = make_train_dataset_fn(exp, method, *args, **kwargs)

    def record(input_context):
      pipelines.append((input_context, exp))
      return dataset_fn(input_context)

    return record

  trainer.make_train_dataset_fn = recording_dataset_fn
  trainer.define_flags()
  rest, overrides = cli.split_config_overrides(argv)
  flags.FLAGS(rest)
  trainer.main([], overrides)
  read = []
  for input_context, exp in pipelines:
    # The same read of the source that train_dataset shuffles and repeats.
    examples = exp.source.read(exp.source.train_split, input_context=input_context)
    read.append({"pipeline": input_context.input_pipeline_id,
                 "pipelines": input_context.num_input_pipelines,
                 "ids": [e["id"].numpy().decode() for e in examples]})
  with open(ids_path, "w") as f:
    json.dump(read, f)


if __name__ == "__main__":
  main()
