"""Heatmaps (Grad-CAM, Selvaraju et al. 2017; HiResCAM, Draelos and Carin 2020) for the classifiers of
``cxrlib.models.build_model``.

- ``gradcam``: the heatmaps, computed from a model (``GradCam``, ``explainer``: the reports' method, ``gradcam_maps``).
- ``region``: the central chest region declared once, and each map's share of mass outside it.
- ``sanity``: the model-randomisation check (Adebayo et al. 2018): the trained model's maps against a random model's.
- ``record``: the heatmaps as a small run record (``gradcam.csv``, and the check's ``gradcam_sanity.csv``), for
  reports of runs whose model files are gone; written by ``python -m cxrlib.explain RECORDS_DIR MODEL_FILE``.

Names load on first use, so that the command line can set TensorFlow's environment before TensorFlow starts.
"""
from __future__ import annotations

import importlib

_HOMES = {**dict.fromkeys(("GRADCAM", "HIRESCAM", "GradCam", "ModelHeatmaps", "chosen_classes", "class_maps",
                           "explainer", "find_feature_layer", "gradcam_maps", "method_words", "upsample"), "gradcam"),
          **dict.fromkeys(("CHEST_BOX", "OUTSIDE_WARNING", "UNIFORM_OUTSIDE", "WARNING", "inside_fractions",
                           "outside_shares", "warned"), "region"),
          **dict.fromkeys(("PASS_BELOW", "RANDOM_SEED", "SanityRecordError", "randomised_model", "rank_correlations",
                           "read_sanity_record", "sanity_record", "sanity_summary", "write_sanity_record"), "sanity"),
          **dict.fromkeys(("GRADCAM_COLUMNS", "OLD_METHOD", "GradcamRecordError", "check_against_predictions",
                           "gradcam_record", "is_old", "maps_from_record", "read_gradcam_record", "record_cells",
                           "record_heatmaps", "shown_cells", "write_gradcam_record"), "record")}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    """A public name, imported from its module when first asked for."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
