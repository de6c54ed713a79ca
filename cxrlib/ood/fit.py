"""A run's safeguards from its best model: the OOD detector (training images, standardisation and threshold on
validation) and the Platt calibration of its score (validation images).

``cxrlib.train`` fits them when a run finishes; ``python -m cxrlib.ood fit RUN_DIR`` fits them for a run trained
before they existed. The detector goes to the run's ood.npz; run.json records both under `ood` and `calibration`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import keras
import numpy as np
import pandas as pd

from cxrlib import calibration
from cxrlib.contract import OOD_FILE, OOD_FLAG_RATE

from .detector import fit_detector
from .layers import layer_features, registry_layers, scoring_model

METHOD = "mahalanobis-layers"
COMBINED = "max over layers of the distance standardised on val (median, interquartile range)"
LayerFeatures = dict[str, np.ndarray]


def image_features(model: keras.Model, image_size: int,
                   batch_size: int) -> Callable[[str, pd.DataFrame], LayerFeatures]:
    """`features_of(subset_name, rows)`: {layer: pooled features} of the rows' images at the registry's OOD layers."""
    layers = registry_layers(model)
    scorer = scoring_model(model, layers)

    def features_of(name: str, rows: pd.DataFrame) -> LayerFeatures:
        return layer_features(scorer, layers, rows, image_size, batch_size, desc=f"{name} features for OOD")

    return features_of


def fit_safeguards(features_of: Callable[[str, pd.DataFrame], LayerFeatures],
                   subsets: dict[str, pd.DataFrame], val_scores, directory: Path, rate: float = OOD_FLAG_RATE) -> dict:
    """Write `directory`/ood.npz; return run.json's `ood` and `calibration` entries.

    `features_of(name, rows)` gives the best model's {layer: pooled features} of a subset (``image_features``);
    `val_scores` are its scores of the validation rows, in row order.
    """
    train, val = subsets["train"], subsets["val"]
    train_features, val_features = features_of("train", train), features_of("val", val)
    detector = fit_detector(train_features, train["target"], val_features, rate)
    detector.save(directory / OOD_FILE)
    val_flagged = float(np.mean(detector.flags(detector.scores(val_features))))
    return {"ood": {"method": METHOD, "layers": list(detector.layers), "combined": COMBINED, "file": OOD_FILE,
                    "flag_rate": rate, "threshold": detector.threshold, "fitted_on": "train", "threshold_on": "val",
                    "images": {"train": len(train), "val": len(val)}, "val_flagged": val_flagged},
            "calibration": calibration.fit_platt(val["target"].to_numpy(), val_scores)}
