"""Out-of-distribution flag and probability calibration of a run's predictions.

- ``detector``: the Mahalanobis detector on pooled features (fit, distances, flags) and its file, ood.npz;
- ``fit``: a run's detector (training images, threshold on validation) and calibration, from its best model;
- ``__main__``: ``python -m cxrlib.ood fit RUN_DIR`` adds both to a run trained before they existed.

The calibration itself is ``cxrlib.calibration``. This package file stays light (no TensorFlow).
"""
from .detector import MahalanobisDetector, OodFileError, fit_detector, load_detector

__all__ = ["MahalanobisDetector", "OodFileError", "fit_detector", "load_detector"]
