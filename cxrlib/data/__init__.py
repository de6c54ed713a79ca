"""Data layer: locate or download the Kaggle tree, index it, split by patient, and feed tf.data.

The tf.data part (make_dataset, load_image, build_augmenter) imports TensorFlow, so it is loaded on
first use: `from cxrlib import data; data.scan_dataset(...)` stays light.
"""
import importlib

from .audit import (
    describe_label_rates,
    describe_metadata_baseline,
    geometry_groups,
    label_rate_by_group,
    metadata_baseline,
    metadata_baseline_table,
    shortcut_verdict,
    within_group_metrics,
)
from .index import DatasetIndex, patient_id_from_name, scan_dataset
from .locate import (
    DataLayoutError,
    DataNotFoundError,
    download_and_extract,
    download_dataset,
    find_kaggle_root,
    locate_data,
)
from .split import assign_subsets, class_weights, replicate_frame, split_fingerprint, subsample, subset_counts
from .summary import (
    describe_image_sizes,
    duplicate_files,
    duplicate_groups,
    duplicate_summary,
    image_size_summary,
    images_per_patient,
    images_per_split,
    patients_per_split,
    sample_per_class,
    share_of_patients_with_several_images,
    validation_split_summary,
)

_PIPELINE_NAMES = {"make_dataset", "load_image", "build_augmenter", "to_rgb8"}

__all__ = [
    "DataLayoutError",
    "DataNotFoundError",
    "DatasetIndex",
    "assign_subsets",
    "split_fingerprint",
    "class_weights",
    "describe_image_sizes",
    "describe_label_rates",
    "describe_metadata_baseline",
    "download_and_extract",
    "download_dataset",
    "duplicate_files",
    "duplicate_groups",
    "duplicate_summary",
    "find_kaggle_root",
    "geometry_groups",
    "image_size_summary",
    "images_per_patient",
    "images_per_split",
    "label_rate_by_group",
    "locate_data",
    "metadata_baseline",
    "metadata_baseline_table",
    "patient_id_from_name",
    "patients_per_split",
    "replicate_frame",
    "sample_per_class",
    "scan_dataset",
    "share_of_patients_with_several_images",
    "shortcut_verdict",
    "subsample",
    "subset_counts",
    "validation_split_summary",
    "within_group_metrics",
    *sorted(_PIPELINE_NAMES),
]


def __getattr__(name: str):
    """Import the TensorFlow pipeline only when one of its names is used."""
    if name in _PIPELINE_NAMES:
        return getattr(importlib.import_module(".pipeline", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
