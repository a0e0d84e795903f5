#!/usr/bin/env bash
# Pseudo-labels for all of ImageNet train from a model trained on 10% of the labels, as S4L
# makes them for its "Pseudo-labels" baseline (Zhai et al. 2019; google-research/s4l
# config/generate_pseudo_dataset.sh, pseudo_labeling/generate_labels.py).
#
# Recipe: the module of a supervised 10% run (config/supervised/imagenet_10pct.sh) classifies
# every train image on its centre view (short side 256, centre crop 224, pixels in [-1, 1];
# S4L's `logits` output, no crop or rotation averaging); each image gets the argmax of the
# class logits, except the images of the labelled subset the module was trained on, which
# keep their true labels (S4L's label_map_count_128000_index_0 with target_label all; here
# the subset recorded in the module, e.g. --labels=10pct). The written file trains
# config/pseudo_label/imagenet_10pct.sh.
# Hardware: one accelerator (inference only: 1.28M forward passes). The file records the
# accuracy of the pseudo-labels on the images outside the labelled subset.
#
# Usage: bash config/pseudo_label/imagenet_label.sh --hub_module=gs://BUCKET/sup10/export/hub \
#            --out=gs://BUCKET/sup10/pseudo_labels.json [--dataset_dir=gs://BUCKET/imagenet]
set -euo pipefail
python -m tfssl.label \
  --average_over=none --keep_true_labels \
  "$@"
