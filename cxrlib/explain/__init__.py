"""Grad-CAM (Selvaraju et al. 2017) for the classifiers of ``cxrlib.models.build_model``.

- ``gradcam``: the heatmaps, computed from a model (``GradCam``, ``gradcam_maps``).
- ``record``: the heatmaps as a small run record (``gradcam.csv``), for reports of runs whose model files are gone;
  written by ``python -m cxrlib.explain RECORDS_DIR MODEL_FILE``.

Names load on first use, so that the command line can set TensorFlow's environment before TensorFlow starts.
"""
from __future__ import annotations

import importlib

_HOMES = {**dict.fromkeys(("GradCam", "ModelHeatmaps", "find_feature_layer", "gradcam_maps", "upsample"), "gradcam"),
          **dict.fromkeys(("GRADCAM_COLUMNS", "GradcamRecordError", "check_against_predictions", "gradcam_record",
                           "maps_from_record", "read_gradcam_record", "write_gradcam_record"), "record")}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    """A public name, imported from its module when first asked for."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
