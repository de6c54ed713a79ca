"""Platt scaling: the model's score (trained with balanced class weights and label smoothing) -> P(PNEUMONIA).

The score ranks images but is not a probability at any real prevalence. A logistic regression on the score's
logit, fitted on the validation images, turns it into one; it holds at the validation images' PNEUMONIA share
(`prevalence` in the parameters), not at another hospital's. The parameters are plain numbers for run.json.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression

from cxrlib.evaluate import check_binary_inputs

# Scores are clipped this far inside (0, 1) before the logit: float32 sigmoids saturate at exactly 0 or 1.
SCORE_MARGIN = 1e-7


def score_logit(scores) -> np.ndarray:
    """The logit of each score, finite also for saturated scores (clipped to [margin, 1 - margin])."""
    return logit(np.clip(np.asarray(scores, dtype=float), SCORE_MARGIN, 1 - SCORE_MARGIN))


def fit_platt(targets, scores) -> dict:
    """Platt parameters fitted on (targets, scores) of validation images: slope, intercept, prevalence, images.

    Logistic regression of the target on logit(score) with scikit-learn's default mild L2 penalty (C=1), which keeps
    the slope finite when the validation images are perfectly separated; `prevalence` is the PNEUMONIA share the
    calibrated probability holds for.
    """
    targets, scores = check_binary_inputs(targets, scores, "fit_platt")
    regression = LogisticRegression().fit(score_logit(scores)[:, None], targets)
    return {"method": "platt", "slope": float(regression.coef_[0, 0]), "intercept": float(regression.intercept_[0]),
            "prevalence": float(np.mean(targets)), "images": int(len(targets)), "fitted_on": "val"}


def calibrated_probability(scores, calibration: dict) -> np.ndarray:
    """P(PNEUMONIA) at the calibration's prevalence for each score: sigmoid(slope * logit(score) + intercept)."""
    return expit(calibration["slope"] * score_logit(scores) + calibration["intercept"])
