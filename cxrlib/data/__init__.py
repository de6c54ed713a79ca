"""Data layer: locate or download the Kaggle tree, index it, split by patient, and feed tf.data.

The tf.data part (make_dataset, load_image, to_rgb8) imports TensorFlow, so it is loaded on
first use: `from cxrlib import data; data.scan_dataset(...)` stays light.
"""
import importlib

from .baseline import metadata_baseline, metadata_baseline_table
from .geometry import geometry_groups, label_rate_by_group
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
    BLACK_SHARE_COLUMNS,
    black_pixel_maps,
    black_pixel_shares,
    black_pixels_by_group,
    copy_manifest,
    duplicate_counts,
    duplicate_files,
    duplicate_groups,
    duplicate_summary,
    duplicate_table,
    image_size_summary,
    images_per_patient,
    images_per_split,
    patients_on_both_sides,
    patients_per_split,
    replicate_split_table,
    replicate_splits,
    sample_per_class,
    share_of_patients_with_several_images,
    stored_gray,
    validation_overlap,
    validation_split_summary,
)

_PIPELINE_NAMES = {"make_dataset", "load_image", "to_rgb8"}

__all__ = [
    "BLACK_SHARE_COLUMNS",
    "DataLayoutError",
    "DataNotFoundError",
    "DatasetIndex",
    "assign_subsets",
    "black_pixel_maps",
    "black_pixel_shares",
    "black_pixels_by_group",
    "copy_manifest",
    "split_fingerprint",
    "class_weights",
    "download_and_extract",
    "download_dataset",
    "duplicate_counts",
    "duplicate_files",
    "duplicate_groups",
    "duplicate_summary",
    "duplicate_table",
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
    "patients_on_both_sides",
    "patients_per_split",
    "replicate_frame",
    "replicate_split_table",
    "replicate_splits",
    "sample_per_class",
    "scan_dataset",
    "share_of_patients_with_several_images",
    "stored_gray",
    "subsample",
    "subset_counts",
    "validation_overlap",
    "validation_split_summary",
    *sorted(_PIPELINE_NAMES),
]


def __getattr__(name: str):
    """Import the TensorFlow pipeline only when one of its names is used."""
    if name in _PIPELINE_NAMES:
        return getattr(importlib.import_module(".pipeline", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
