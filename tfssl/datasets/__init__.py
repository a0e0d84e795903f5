"""Datasets: sources (digits, CIFAR, ImageNet, image folders, CSV file lists, any prepared
TFDS dataset), label subsets, pipelines."""

from tfssl.datasets.pipeline import (eval_dataset, id_lookup_table, steps_per_epoch,
                                     train_dataset, two_stream_dataset, zip_streams)
from tfssl.datasets.sources import (CSV_PREFIX, DATASETS, FOLDER_PREFIX, HELD_OUT_SPLIT,
                                    TFDS_PREFIX, UNLABELLED, CifarBinarySource, CsvSource,
                                    FolderSource, Source, TFDSSource, TFRecordSource, get_source)
from tfssl.datasets.subsets import ids_as_text, imagenet_list_path, select_labelled_ids
from tfssl.datasets.support import check_support, support_dataset, support_indices

__all__ = ["CSV_PREFIX", "DATASETS", "FOLDER_PREFIX", "HELD_OUT_SPLIT", "TFDS_PREFIX",
           "UNLABELLED", "CifarBinarySource", "CsvSource",
           "check_support", "support_dataset", "support_indices", "FolderSource", "Source",
           "TFDSSource", "TFRecordSource", "eval_dataset", "get_source", "id_lookup_table",
           "ids_as_text", "imagenet_list_path",
           "select_labelled_ids", "steps_per_epoch", "train_dataset",
           "two_stream_dataset", "zip_streams"]
