"""A run's safeguards from its best model: the OOD detector (training images, threshold on validation) and the
Platt calibration of its score (validation images).

``cxrlib.train`` fits them when a run finishes; ``python -m cxrlib.ood fit RUN_DIR`` fits them for a run trained
before they existed. The detector goes to the run's ood.npz; run.json records both under `ood` and `calibration`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import keras
import numpy as np
import pandas as pd

from cxrlib import calibration, features
from cxrlib.contract import OOD_FILE, OOD_FLAG_RATE

from .detector import fit_detector

FEATURE_LAYER = "pool"  # the pooled backbone features (features.feature_model): the head's input


def image_features(model: keras.Model, image_size: int, batch_size: int) -> Callable[[str, pd.DataFrame], np.ndarray]:
    """`features_of(subset_name, rows)`: the pooled features of the rows' images through `model`."""
    extractor = features.feature_model(model)

    def features_of(name: str, rows: pd.DataFrame) -> np.ndarray:
        return features.extract_features(extractor, rows, image_size, batch_size, desc=f"{name} features for OOD")

    return features_of


def fit_safeguards(features_of: Callable[[str, pd.DataFrame], np.ndarray], subsets: dict[str, pd.DataFrame],
                   val_scores, directory: Path, rate: float = OOD_FLAG_RATE) -> dict:
    """Write `directory`/ood.npz; return run.json's `ood` and `calibration` entries.

    `features_of(name, rows)` gives the best model's pooled features of a subset; `val_scores` are its scores of
    the validation rows, in row order.
    """
    train, val = subsets["train"], subsets["val"]
    val_features = features_of("val", val)
    detector = fit_detector(features_of("train", train), train["target"], val_features, rate, FEATURE_LAYER)
    detector.save(directory / OOD_FILE)
    val_flagged = float(np.mean(detector.flags(detector.distances(val_features))))
    return {"ood": {"method": "mahalanobis", "layer": FEATURE_LAYER, "file": OOD_FILE, "flag_rate": rate,
                    "threshold": detector.threshold, "fitted_on": "train", "threshold_on": "val",
                    "images": {"train": len(train), "val": len(val)}, "val_flagged": val_flagged},
            "calibration": calibration.fit_platt(val["target"].to_numpy(), val_scores)}
