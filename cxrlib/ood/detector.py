"""Multi-layer Mahalanobis out-of-distribution detector (Lee et al. 2018) on a model's pooled features, and its file.

Per layer (the global-average-pooled output of one backbone stage), fitted on the training images: one mean per
class and a shared covariance (Ledoit-Wolf shrinkage, scikit-learn); an image's layer distance is its Mahalanobis
distance to the nearest class mean. Each layer's distances are standardised on the validation images (median,
interquartile range), an image's OOD score is the largest standardised distance over the layers, and the flag
threshold is the validation images' (1 - rate) quantile of the score, so about `rate` of in-distribution images
are flagged. Shallow layers see intensity, texture and colour, which the deepest (the classifier's input) discards.
"""
from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.covariance import LedoitWolf

from cxrlib.files import write_atomic

FILE_FORMAT = "mahalanobis-layers-v2"  # bump when what the file's arrays mean changes
OLD_FORMATS = {"mahalanobis-v1": "one layer, the pooled features"}  # what older cxrlib versions wrote
FILE_KEYS = ("format", "layers", "centers", "scales", "threshold", "rate")  # + class_means_<i>, precision_<i>


class OodFileError(ValueError):
    """A run's OOD file cannot be used; the message names the file and how to refit it."""


def refit_hint(path: Path) -> str:
    """The command that fits the OOD file of the run directory holding `path` again."""
    return f"refit it with: python -m cxrlib.ood fit {path.parent}"


@dataclass(frozen=True)
class LayerGaussian:
    """One layer's class means and shared precision; its distance is to the nearest class mean."""

    class_means: np.ndarray  # [2, D]: mean feature of the NORMAL and the PNEUMONIA training images
    precision: np.ndarray  # [D, D]: inverse of the shared within-class covariance (Ledoit-Wolf shrunk)

    @classmethod
    def fit(cls, features, targets) -> LayerGaussian:
        """Class means and the Ledoit-Wolf shared within-class precision of training features [N, D]."""
        features = np.asarray(features, dtype=np.float64)
        class_means = np.stack([features[targets == target].mean(axis=0) for target in (0, 1)])
        precision = LedoitWolf(assume_centered=True).fit(features - class_means[targets]).precision_
        return cls(class_means, precision)

    def distances(self, features) -> np.ndarray:
        """Mahalanobis distance of each feature row [N, D] to the nearest class mean."""
        squared = [np.sum((features - mean) @ self.precision * (features - mean), axis=1) for mean in self.class_means]
        return np.sqrt(np.maximum(np.min(squared, axis=0), 0.0))


@dataclass(frozen=True)
class MahalanobisDetector:
    """Per-layer Gaussians and standardisations; OOD scores (max over layers) above `threshold` are flagged."""

    layers: tuple[str, ...]  # the model layers whose pooled outputs are the features, shallow to deep
    gaussians: tuple[LayerGaussian, ...]  # one per layer
    centers: np.ndarray  # [L]: median validation distance per layer
    scales: np.ndarray  # [L]: interquartile range of the validation distances per layer
    threshold: float  # OOD scores above this are flagged
    rate: float  # the declared share of validation images whose score exceeds `threshold`

    @property
    def dims(self) -> dict[str, int]:
        """Features per layer."""
        return {layer: gaussian.class_means.shape[1] for layer, gaussian in zip(self.layers, self.gaussians)}

    def layer_distances(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """[N, L] Mahalanobis distances per layer of `features` ({layer: [N, D]})."""
        columns = []
        for layer, dims in self.dims.items():
            if layer not in features:
                raise ValueError(f"the features hold layers {sorted(features)}, not {layer!r} of this detector")
            values = np.asarray(features[layer], dtype=np.float64)
            if values.ndim != 2 or values.shape[1] != dims:
                raise ValueError(f"features of shape {values.shape} from layer {layer!r} do not fit a detector of "
                                 f"{dims} features there")
            columns.append(self.gaussians[self.layers.index(layer)].distances(values))
        return np.stack(columns, axis=1)

    def scores(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """OOD score of each image: the largest per-layer distance standardised on the validation images."""
        return np.max((self.layer_distances(features) - self.centers) / self.scales, axis=1)

    def flags(self, scores) -> np.ndarray:
        """True where an OOD score lies above the threshold."""
        return np.asarray(scores) > self.threshold

    def save(self, path: Path) -> None:
        """Write the detector to `path` (.npz) atomically."""
        per_layer = {f"{name}_{i}": array for i, gaussian in enumerate(self.gaussians)
                     for name, array in (("class_means", gaussian.class_means), ("precision", gaussian.precision))}
        write_atomic(path, lambda partial: np.savez(partial, format=FILE_FORMAT, layers=np.array(self.layers),
                                                     centers=self.centers, scales=self.scales,
                                                     threshold=self.threshold, rate=self.rate, **per_layer))


def fit_detector(train_features: Mapping[str, np.ndarray], train_targets, val_features: Mapping[str, np.ndarray],
                 rate: float, layers: Sequence[str] | None = None) -> MahalanobisDetector:
    """Per-layer Gaussians on the training features; standardisation and threshold on the validation features.

    `train_features` and `val_features` map layer names to [N, D] features; `layers` (default: all of
    `train_features`, in its order) chooses the layers the detector uses.
    """
    train_targets = np.asarray(train_targets, dtype=int)
    layers = tuple(train_features if layers is None else layers)
    if not 0 < rate < 1:
        raise ValueError(f"OOD flag rate {rate} is outside (0, 1); declare a share such as 0.01")
    if set(np.unique(train_targets)) != {0, 1}:
        raise ValueError(f"the training targets hold classes {np.unique(train_targets)}; both 0 and 1 are needed")
    if not layers:
        raise ValueError("no layers to fit the OOD detector on; give the features of at least one layer")
    gaussians = tuple(LayerGaussian.fit(train_features[layer], train_targets) for layer in layers)
    unscaled = MahalanobisDetector(layers, gaussians, np.zeros(len(layers)), np.ones(len(layers)), np.inf, rate)
    val_distances = unscaled.layer_distances(val_features)
    lower, centers, upper = np.quantile(val_distances, [0.25, 0.5, 0.75], axis=0)
    if np.any(upper - lower <= 0):
        flat = [layer for layer, spread in zip(layers, upper - lower) if spread <= 0]
        raise ValueError(f"the validation images' distances on layer(s) {flat} do not vary (interquartile range 0); "
                         "fit on more, and more varied, validation images")
    standardised = MahalanobisDetector(layers, gaussians, centers, upper - lower, np.inf, rate)
    threshold = float(np.quantile(standardised.scores(val_features), 1 - rate))
    return MahalanobisDetector(layers, gaussians, centers, upper - lower, threshold, rate)


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of the .npz file at `path`, or OodFileError naming the file and the refit command."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            return {key: saved[key] for key in saved.files}
    except FileNotFoundError:
        raise OodFileError(f"{path} is missing; {refit_hint(path)}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise OodFileError(f"{path} is not a readable OOD file ({error}); {refit_hint(path)}") from None


def load_detector(path: Path) -> MahalanobisDetector:
    """The detector saved in `path`, or OodFileError naming the file, what is wrong and the refit command."""
    arrays = _read_arrays(path)
    found = str(arrays["format"]) if "format" in arrays else None
    if found is not None and found != FILE_FORMAT:
        older = f" (an older cxrlib's detector: {OLD_FORMATS[found]})" if found in OLD_FORMATS else ""
        raise OodFileError(f"{path} has format {found!r}{older}, this cxrlib reads {FILE_FORMAT!r} (several layers); "
                           f"{refit_hint(path)}")
    count = len(arrays["layers"]) if "layers" in arrays and arrays["layers"].ndim == 1 else 0
    needed = [*FILE_KEYS, *(f"{name}_{i}" for i in range(count) for name in ("class_means", "precision"))]
    missing = [key for key in needed if key not in arrays]
    if missing:
        raise OodFileError(f"{path} lacks {', '.join(missing)}; {refit_hint(path)}")
    gaussians = tuple(LayerGaussian(arrays[f"class_means_{i}"], arrays[f"precision_{i}"]) for i in range(count))
    centers, scales, threshold = arrays["centers"], arrays["scales"], float(arrays["threshold"])
    shapes_fit = count > 0 and centers.shape == scales.shape == (count,) and all(
        g.class_means.ndim == 2 and g.class_means.shape[0] == 2
        and g.precision.shape == (g.class_means.shape[1],) * 2 for g in gaussians)
    if not shapes_fit or not np.isfinite(threshold) or not np.all(scales > 0):
        shapes = "; ".join(f"{layer}: class means {g.class_means.shape}, precision {g.precision.shape}"
                           for layer, g in zip(arrays["layers"], gaussians))
        raise OodFileError(f"{path} holds {count} layer(s) ({shapes}), centers of shape {centers.shape}, scales "
                           f"{scales} and threshold {threshold}; {refit_hint(path)}")
    return MahalanobisDetector(tuple(map(str, arrays["layers"])), gaussians, centers, scales, threshold,
                               float(arrays["rate"]))
