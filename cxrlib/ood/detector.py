"""Mahalanobis out-of-distribution detector (Lee et al. 2018) on a model's pooled features, and its run-directory file.

Fitted on the training images: one mean per class and a shared covariance (Ledoit-Wolf shrinkage, scikit-learn).
An image's OOD distance is its Mahalanobis distance to the nearest class mean; the flag threshold is the
validation images' (1 - rate) quantile, so about `rate` of in-distribution images are flagged.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.covariance import LedoitWolf

from cxrlib.files import write_atomic

FILE_FORMAT = "mahalanobis-v1"  # bump when what the file's arrays mean changes
FILE_KEYS = ("format", "layer", "class_means", "precision", "threshold", "rate")


class OodFileError(ValueError):
    """A run's OOD file cannot be used; the message names the file and how to refit it."""


def refit_hint(path: Path) -> str:
    """The command that fits the OOD file of the run directory holding `path` again."""
    return f"refit it with: python -m cxrlib.ood fit {path.parent}"


@dataclass(frozen=True)
class MahalanobisDetector:
    """Class means and shared precision of the training features; distances above `threshold` are flagged."""

    layer: str  # the model layer whose outputs are the features
    class_means: np.ndarray  # [2, D]: mean feature of the NORMAL and the PNEUMONIA training images
    precision: np.ndarray  # [D, D]: inverse of the shared within-class covariance (Ledoit-Wolf shrunk)
    threshold: float  # OOD distances above this are flagged
    rate: float  # the declared share of validation images whose distance exceeds `threshold`

    def distances(self, features) -> np.ndarray:
        """Mahalanobis distance of each feature row to the nearest class mean."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != self.class_means.shape[1]:
            raise ValueError(f"features of shape {features.shape} do not fit a detector of "
                             f"{self.class_means.shape[1]} features from layer {self.layer!r}")
        squared = [np.einsum("ij,jk,ik->i", features - mean, self.precision, features - mean)
                   for mean in self.class_means]
        return np.sqrt(np.maximum(np.min(squared, axis=0), 0.0))

    def flags(self, distances) -> np.ndarray:
        """True where an OOD distance lies above the threshold."""
        return np.asarray(distances) > self.threshold

    def save(self, path: Path) -> None:
        """Write the detector to `path` (.npz) atomically."""
        write_atomic(path, lambda partial: np.savez(partial, format=FILE_FORMAT, layer=self.layer,
                                                     class_means=self.class_means, precision=self.precision,
                                                     threshold=self.threshold, rate=self.rate))


def fit_detector(train_features, train_targets, val_features, rate: float, layer: str) -> MahalanobisDetector:
    """Class means and Ledoit-Wolf shared covariance from the training features; threshold at the validation quantile."""
    train_features = np.asarray(train_features, dtype=np.float64)
    train_targets = np.asarray(train_targets, dtype=int)
    if not 0 < rate < 1:
        raise ValueError(f"OOD flag rate {rate} is outside (0, 1); declare a share such as 0.01")
    if set(np.unique(train_targets)) != {0, 1}:
        raise ValueError(f"the training targets hold classes {np.unique(train_targets)}; both 0 and 1 are needed")
    class_means = np.stack([train_features[train_targets == target].mean(axis=0) for target in (0, 1)])
    within_class = train_features - class_means[train_targets]
    precision = LedoitWolf(assume_centered=True).fit(within_class).precision_
    unthresholded = MahalanobisDetector(layer, class_means, precision, np.inf, rate)
    threshold = float(np.quantile(unthresholded.distances(val_features), 1 - rate))
    return MahalanobisDetector(layer, class_means, precision, threshold, rate)


def load_detector(path: Path) -> MahalanobisDetector:
    """The detector saved in `path`, or OodFileError naming the file, what is wrong and the refit command."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            arrays = {key: saved[key] for key in FILE_KEYS if key in saved.files}
    except FileNotFoundError:
        raise OodFileError(f"{path} is missing; {refit_hint(path)}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise OodFileError(f"{path} is not a readable OOD file ({error}); {refit_hint(path)}") from None
    missing = [key for key in FILE_KEYS if key not in arrays]
    if missing:
        raise OodFileError(f"{path} lacks {', '.join(missing)}; {refit_hint(path)}")
    if str(arrays["format"]) != FILE_FORMAT:
        raise OodFileError(f"{path} has format {str(arrays['format'])!r}, this cxrlib reads {FILE_FORMAT!r}; "
                           f"{refit_hint(path)}")
    means, precision, threshold = arrays["class_means"], arrays["precision"], float(arrays["threshold"])
    dims = means.shape[1] if means.ndim == 2 else None
    if means.shape[:1] != (2,) or precision.shape != (dims, dims) or not np.isfinite(threshold):
        raise OodFileError(f"{path} holds class means of shape {means.shape}, a precision of shape {precision.shape} "
                           f"and threshold {threshold}; {refit_hint(path)}")
    return MahalanobisDetector(str(arrays["layer"]), means, precision, threshold, float(arrays["rate"]))
