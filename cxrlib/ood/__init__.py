"""Out-of-distribution flag and probability calibration of a run's predictions.

- ``detector``: the multi-layer Mahalanobis detector on pooled features (fit, scores, flags) and its file, ood.npz;
- ``layers``: a model's pooled features at the detector's layers, in the same pass as its score (Keras);
- ``fit``: a run's detector (training images, threshold on validation) and calibration, from its best model;
- ``__main__``: ``python -m cxrlib.ood fit RUN_DIR`` adds both to a run trained before they existed.

The calibration itself is ``cxrlib.calibration``. This package file stays light (no TensorFlow).
"""
from .detector import MahalanobisDetector, OodFileError, fit_detector, load_detector

__all__ = ["MahalanobisDetector", "OodFileError", "fit_detector", "load_detector"]
