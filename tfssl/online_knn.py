"""k-NN accuracy of a run's `default` representation at each checkpoint: what `--run_eval`
reports for a method without a classifier of its own (rotation, SimCLR, DINO...).

The protocol is eval_hub's `knn` (cosine similarity, the k nearest vote with weights
exp(similarity / temperature), its default k and temperature) on the features the exported
module's `default` gives: the method's `representations` without training, on the images'
evaluation view (no augmentation). The memory it votes with is the run's `--labels` subset
of the training split (all of it for labels=all), at most `knn_max_train_examples` of them
(a seeded sample: ImageNet's 1.28M images would hold 10 GB of ResNet-50 features and a
similarity matrix of 5 GB per chunk of eval images).
"""

import time

import numpy as np
import tensorflow as tf
from absl import logging

from tfssl import datasets
from tfssl import eval_hub
from tfssl import preprocess as pp


def memory_ids(source, labelled_ids, max_examples, seed):
  """Ids of the training images the vote uses, None for every one of `source`'s train
  split: `labelled_ids` (None: all), or a seeded sample of `max_examples` of them when there
  are more (`max_examples` <= 0: no limit)."""
  if max_examples <= 0:
    return labelled_ids
  ids = (source.labels_and_ids(source.train_split)[0] if labelled_ids is None
         else np.asarray(labelled_ids))
  if len(ids) <= max_examples:
    return labelled_ids
  keep = np.sort(np.random.RandomState(seed).choice(len(ids), max_examples, replace=False))
  logging.warning("k-NN evaluation: the memory is a sample (seed %d) of %d of the %d labelled "
                  "training images (--config.knn_max_train_examples; 0 for all, if the host "
                  "holds their features and a chunk of similarities to all of them).", seed,
                  max_examples, len(ids))
  return ids[keep]


class KnnEvaluator:
  """Scores the current weights of `method` (restored by the caller) with eval_hub's knn.

  `labelled_ids`: the run's labelled subset (None: every training image). The source is
  read afresh: a label-free run trains on its data's unlabelled split (STL-10's unlabelled
  images), which the memory must not include."""

  def __init__(self, exp, method, strategy):
    config = exp.config
    self.source = datasets.get_source(config.dataset, dataset_dir=config.dataset_dir or None)
    self.source.check_labelled(
        f"The k-NN evaluation of --run_eval for --method={config.method} (a method without a "
        "classifier)")
    protocol = eval_hub.default_config()
    self.k, self.temperature = protocol.knn_k, protocol.knn_temperature
    self.method = method
    self.strategy = strategy
    self.image_size = exp.image_size
    self.memory_ids = memory_ids(self.source, exp.labelled_ids, config.knn_max_train_examples,
                                 config.seed)
    self.num_memory = (self.source.num_examples(self.source.train_split)
                       if self.memory_ids is None else len(self.memory_ids))
    self._memory = self._distributed(self.source.train_split, self.memory_ids,
                                     config.eval_batch_size)
    self._eval = self._distributed(self.source.eval_split, None, config.eval_batch_size)

    @tf.function
    def represent(batch):
      return strategy.run(self._represent, args=(batch,))

    self._represent_step = represent

  def _distributed(self, split, keep_ids, batch_size):
    def dataset_fn(input_context):
      return datasets.eval_dataset(
          self.source, split=split, keep_ids=keep_ids, preprocess_fn=self._preprocess,
          batch_size=input_context.get_per_replica_batch_size(batch_size),
          input_context=input_context)

    return self.strategy.distribute_datasets_from_function(dataset_fn)

  def _preprocess(self, features):
    # eval_hub's view of an image for the module (Task.eval_preprocess).
    return {"image": pp.eval_crop(features["image"], self.image_size), "label": features["label"]}

  def _represent(self, batch):
    # What the exported module's `default` is (export.HubModule).
    features = self.method.representations(batch["image"], training=False)["default"]
    return tf.cast(features, tf.float32), batch["label"], batch["mask"]

  def features(self, which):
    """(features [N, D], labels [N]) of the `memory` or `eval` images."""
    dataset = {"memory": self._memory, "eval": self._eval}[which]
    features, labels = [], []
    for batch in dataset:
      local = [self.strategy.experimental_local_results(value)
               for value in self._represent_step(batch)]
      for replica_features, replica_labels, mask in zip(*local):
        keep = mask.numpy() > 0
        features.append(replica_features.numpy()[keep])
        labels.append(replica_labels.numpy()[keep])
    return np.concatenate(features), np.concatenate(labels)

  def evaluate(self):
    """{knn_top1, knn_top5, num_examples, knn_memory_examples, knn_feature_seconds,
    knn_score_seconds}."""
    start = time.time()
    memory, memory_labels = self.features("memory")
    test, test_labels = self.features("eval")
    scored = time.time()
    scores = eval_hub.knn_scores(memory, memory_labels, test, self.source.num_classes,
                                 self.k, self.temperature)
    return {"knn_top1": eval_hub.top_k_accuracy(scores, test_labels, 1),
            "knn_top5": eval_hub.top_k_accuracy(scores, test_labels, 5),
            "num_examples": int(len(test_labels)), "knn_memory_examples": int(len(memory)),
            "knn_feature_seconds": scored - start, "knn_score_seconds": time.time() - scored}

  def record(self):
    """The protocol's settings, recorded with every result."""
    return {"protocol": "knn", "knn_k": self.k, "knn_temperature": self.temperature}
