"""Metrics and the validation-only decision threshold.

Convention used everywhere: a probability ``p`` is predicted PNEUMONIA (1) when ``p >= threshold``
(the same convention as ``sklearn.metrics.roc_curve``). The threshold is chosen on validation rows
only (``choose_threshold``); every function that evaluates test takes it as an argument.

Point estimates come from scikit-learn (``compute_metrics``); ``weighted_metrics`` computes the same
metrics for many rows of image multiplicities at once, which is how ``cxrlib.bootstrap`` scores all
resamples with a few matrix products. ECE uses 10 equal-width probability bins, weighted by the share
of images in each bin.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit, logit
from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score, brier_score_loss,
                             classification_report, f1_score, log_loss, precision_recall_fscore_support,
                             precision_score, recall_score, roc_auc_score, roc_curve)
from sklearn.utils.class_weight import compute_sample_weight

from cxrlib.contract import CLASS_NAMES, THRESHOLD_POLICIES

LOGIT_CLIP = 1e-6  # youden_midpoint: probabilities are clipped to [1e-6, 1 - 1e-6] before the logit


def check_binary_inputs(y_true, probs, what: str = "predictions", sample_weight=None) -> tuple[np.ndarray, np.ndarray]:
    """Validate labels (0/1, both classes present) and probabilities (finite, in [0, 1]) of equal length.

    With ``sample_weight`` (image multiplicities) a class counts as present only if it has positive weight.
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=float)
    if y_true.ndim != 1 or probs.ndim != 1 or len(y_true) != len(probs):
        raise ValueError(f"{what}: labels and probabilities must be 1-D of equal length, "
                         f"got shapes {y_true.shape} and {probs.shape}")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError(f"{what}: labels must be 0 (NORMAL) or 1 (PNEUMONIA), got {np.unique(y_true)[:5]}")
    present = y_true if sample_weight is None else y_true[np.asarray(sample_weight) > 0]
    if len(np.unique(present)) < 2:
        raise ValueError(f"{what}: both classes are needed, only {np.unique(present)} present")
    if not np.isfinite(probs).all() or probs.min() < 0 or probs.max() > 1:
        raise ValueError(f"{what}: probabilities must be finite and within [0, 1]")
    return y_true.astype(int), probs


# ---------------------------------------------------------------- operating-point policies

def check_policy_parameters(policy: str, target_sensitivity: float = 0.95, delta: float = 0.02,
                            fixed_threshold: float = 0.5) -> None:
    """Reject an unknown policy or an out-of-range parameter, naming the value and what to give instead."""
    if policy not in THRESHOLD_POLICIES:
        raise ValueError(f"unknown threshold policy {policy!r}; use one of {THRESHOLD_POLICIES}")
    if not 0 < target_sensitivity <= 1:
        raise ValueError(f"target_sensitivity={target_sensitivity!r} is outside (0, 1]; give the validation "
                         "sensitivity the 'sensitivity' policy must reach, e.g. 0.95")
    if not 0 <= delta < 1:
        raise ValueError(f"delta={delta!r} is outside [0, 1); give the drop in Youden's J below its maximum that "
                         "'youden_midpoint' tolerates, e.g. 0.02")
    if not 0 < fixed_threshold < 1:
        raise ValueError(f"fixed_threshold={fixed_threshold!r} is outside (0, 1); give the probability the 'fixed' "
                         "policy uses, e.g. 0.5")


def _youden_midpoint(j: np.ndarray, thresholds: np.ndarray, delta: float) -> float:
    """Logit-space midpoint of the lowest and highest ROC thresholds whose J is within ``delta`` of max J."""
    near_best = np.clip(thresholds[j >= j.max() - delta - 1e-12], LOGIT_CLIP, 1 - LOGIT_CLIP)
    return float(expit((logit(near_best.min()) + logit(near_best.max())) / 2))


def policy_thresholds(y_true, probs, policies=THRESHOLD_POLICIES, sample_weight=None, target_sensitivity: float = 0.95,
                      delta: float = 0.02, fixed_threshold: float = 0.5) -> dict[str, float]:
    """The threshold of each policy in ``policies`` from one ROC curve (see ``choose_threshold``).

    ``sample_weight`` gives image multiplicities (a bootstrap resample); images of weight 0 are ignored.
    """
    for policy in policies:
        check_policy_parameters(policy, target_sensitivity, delta, fixed_threshold)
    y_true, probs = check_binary_inputs(y_true, probs, "choose_threshold", sample_weight)
    fpr, tpr, thresholds = roc_curve(y_true, probs, sample_weight=sample_weight, drop_intermediate=False)
    # Index 0 is sklearn's "predict nothing positive" point (threshold = inf); never a useful choice.
    fpr, tpr, thresholds = fpr[1:], tpr[1:], thresholds[1:]
    j = tpr - fpr
    chosen = {
        "fixed": fixed_threshold,
        "youden_midpoint": _youden_midpoint(j, thresholds, delta),
        # Thresholds decrease, so the first maximum is the highest; the tolerance makes float-rounded ties
        # (1 - 1/3 vs 2/3) count as ties.
        "youden": thresholds[np.argmax(j >= j.max() - 1e-12)],
        "sensitivity": thresholds[np.argmax(tpr >= target_sensitivity - 1e-12)],
    }
    return {policy: float(chosen[policy]) for policy in policies}


def choose_threshold(y_true, probs, policy: str = "youden", target_sensitivity: float = 0.95, delta: float = 0.02,
                     fixed_threshold: float = 0.5) -> float:
    """Pick the decision threshold from *validation* predictions alone; apply it unchanged to test.

    ``fixed``: ``fixed_threshold`` (default 0.5) whatever the data (the inputs are still validated). Trained
    with balanced class weights and symmetric label smoothing eps, the output estimates eps/2 + (1 - eps) *
    P(PNEUMONIA | image) under a 50/50 prior (0.05 + 0.9 * P for eps = 0.1), so 0.5 is the likelihood-ratio-1
    point, where balanced accuracy and Youden's J peak if the model is calibrated in that sense.
    ``youden_midpoint``: over the observed ROC thresholds t, take the set whose Youden's J(t) = sensitivity +
    specificity - 1 is at least max J - ``delta``; return the midpoint in logit space of its lowest and highest
    member, sigmoid((logit(t_lo) + logit(t_hi)) / 2), with both clipped to [1e-6, 1 - 1e-6]. When J is flat
    (a plateau) this sits in the middle of the plateau instead of at the edge one or two images decide.
    ``youden``: maximise J (ties -> the highest threshold); one of the observed probabilities.
    ``sensitivity``: the highest threshold whose validation sensitivity reaches ``target_sensitivity``.
    Every parameter is checked whatever the policy. ``p >= threshold`` is positive.
    """
    return policy_thresholds(y_true, probs, (policy,), None, target_sensitivity, delta, fixed_threshold)[policy]


# ---------------------------------------------------------------- point estimates (scikit-learn)

THRESHOLD_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv",
                     "precision_macro", "recall_macro", "f1_macro", "f1_weighted")
PROBABILITY_METRICS = ("roc_auc", "pr_auc", "brier", "ece")
METRICS = THRESHOLD_METRICS + PROBABILITY_METRICS
ECE_BINS = 10


def calibration_bins(probs, n_bins: int = ECE_BINS) -> np.ndarray:
    """Bin index of each probability for equal-width bins on [0, 1]: (0, 0.1], ... with 0 in the first bin.

    Same edges and side as ``sklearn.calibration.calibration_curve(strategy="uniform")``.
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], np.asarray(probs, dtype=float), side="left")


def expected_calibration_error(y_true, probs, n_bins: int = ECE_BINS) -> float:
    """ECE = sum over equal-width bins of (bin share of images) * |observed PNEUMONIA rate - mean probability|."""
    y_true, probs = check_binary_inputs(y_true, probs, "expected_calibration_error")
    bins = calibration_bins(probs, n_bins)
    gap = np.bincount(bins, weights=y_true - probs, minlength=n_bins)
    return float(np.abs(gap).sum() / len(probs))


def balanced_log_loss(y_true, probs) -> float:
    """Mean log-loss of each class, averaged with equal weight: the proper score for P(PNEUMONIA) at 50% prevalence.

    The models train with balanced class weights, so this is the score their output targets; unlike ROC-AUC it
    punishes over- and under-confidence. cxrlib.tune minimises it on validation.
    """
    y_true, probs = check_binary_inputs(y_true, probs)
    return float(log_loss(y_true, probs, sample_weight=compute_sample_weight("balanced", y_true), labels=[0, 1]))


def predict_labels(probs, threshold: float) -> np.ndarray:
    """0/1 predictions: PNEUMONIA when ``prob >= threshold``."""
    return (np.asarray(probs, dtype=float) >= threshold).astype(int)


def classification_report_frame(y_true, probs, threshold: float) -> pd.DataFrame:
    """The published paper's table: per-class precision/recall/F1/support, accuracy, macro and weighted avg."""
    y_true, probs = check_binary_inputs(y_true, probs, "classification_report_frame")
    report = classification_report(y_true, predict_labels(probs, threshold), labels=[0, 1],
                                   target_names=list(CLASS_NAMES), output_dict=True, zero_division=np.nan)
    frame = pd.DataFrame(report).T
    frame.loc["accuracy", ["precision", "recall", "support"]] = [np.nan, np.nan, len(y_true)]
    frame["support"] = frame["support"].astype(int)
    return frame


def compute_metrics(y_true, probs, threshold: float) -> dict[str, float]:
    """Every metric in ``METRICS`` at one threshold, computed with scikit-learn."""
    y_true, probs = check_binary_inputs(y_true, probs, "compute_metrics")
    y_pred = predict_labels(probs, threshold)
    nan = np.nan
    macro = precision_recall_fscore_support(y_true, y_pred, labels=[0, 1], average="macro", zero_division=nan)
    return {
        "accuracy": accuracy_score(y_true, y_pred),
        "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
        "sensitivity": recall_score(y_true, y_pred, pos_label=1, zero_division=nan),
        "specificity": recall_score(y_true, y_pred, pos_label=0, zero_division=nan),
        "ppv": precision_score(y_true, y_pred, pos_label=1, zero_division=nan),
        "npv": precision_score(y_true, y_pred, pos_label=0, zero_division=nan),
        "precision_macro": macro[0],
        "recall_macro": macro[1],
        "f1_macro": macro[2],
        "f1_weighted": f1_score(y_true, y_pred, average="weighted", zero_division=nan),
        "roc_auc": roc_auc_score(y_true, probs),
        "pr_auc": average_precision_score(y_true, probs),
        "brier": brier_score_loss(y_true, probs),
        "ece": expected_calibration_error(y_true, probs),
    }


# ---------------------------------------------------------------- vectorised weighted metrics

def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator with NaN where the denominator is 0 (e.g. no positive predictions)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    return _safe_ratio(2 * precision * recall, precision + recall)


def _threshold_metrics(y_true, y_pred, weights) -> dict[str, np.ndarray]:
    """Confusion-matrix metrics for every weight row (one row = one bootstrap resample)."""
    y, p = y_true.astype(float), y_pred.astype(float)
    tp, fn = weights @ (y * p), weights @ (y * (1 - p))
    fp, tn = weights @ ((1 - y) * p), weights @ ((1 - y) * (1 - p))
    n_pos, n_neg = tp + fn, tn + fp
    sensitivity, specificity = _safe_ratio(tp, n_pos), _safe_ratio(tn, n_neg)
    ppv, npv = _safe_ratio(tp, tp + fp), _safe_ratio(tn, tn + fn)
    f1_pos, f1_neg = _f1(ppv, sensitivity), _f1(npv, specificity)
    return {
        "accuracy": (tp + tn) / (n_pos + n_neg),
        "balanced_accuracy": (sensitivity + specificity) / 2,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "ppv": ppv,
        "npv": npv,
        "precision_macro": (ppv + npv) / 2,
        "recall_macro": (sensitivity + specificity) / 2,
        "f1_macro": (f1_pos + f1_neg) / 2,
        "f1_weighted": (f1_pos * n_pos + f1_neg * n_neg) / (n_pos + n_neg),
    }


def weighted_roc_auc(y_true, probs, weights) -> np.ndarray:
    """ROC-AUC (Mann-Whitney, ties count 1/2) for every weight row, as weighted pair counts."""
    positive = y_true == 1
    wins = (probs[positive, None] > probs[None, ~positive]) + 0.5 * (probs[positive, None] == probs[None, ~positive])
    w_pos, w_neg = weights[:, positive], weights[:, ~positive]
    return ((w_pos @ wins) * w_neg).sum(axis=1) / (w_pos.sum(axis=1) * w_neg.sum(axis=1))


def weighted_average_precision(y_true, probs, weights) -> np.ndarray:
    """Average precision (sklearn's step-wise sum of recall increments x precision) for every weight row."""
    order = np.argsort(-probs, kind="stable")
    sorted_probs, sorted_y, sorted_w = probs[order], y_true[order].astype(float), weights[:, order]
    group_ends = np.r_[np.diff(sorted_probs) != 0, True]  # tied scores form one threshold
    tp = np.cumsum(sorted_w * sorted_y, axis=1)[:, group_ends]
    fp = np.cumsum(sorted_w * (1 - sorted_y), axis=1)[:, group_ends]
    precision = np.nan_to_num(_safe_ratio(tp, tp + fp))
    recall_step = np.diff(tp / tp[:, -1:], axis=1, prepend=0.0)
    return (recall_step * precision).sum(axis=1)


def _probability_metrics(y_true, probs, weights) -> dict[str, np.ndarray]:
    """Threshold-free metrics for every weight row."""
    total = weights.sum(axis=1)
    bin_onehot = np.eye(ECE_BINS)[calibration_bins(probs)]
    calibration_gap = weights @ (bin_onehot * (y_true - probs)[:, None])
    return {
        "roc_auc": weighted_roc_auc(y_true, probs, weights),
        "pr_auc": weighted_average_precision(y_true, probs, weights),
        "brier": weights @ (probs - y_true) ** 2 / total,
        "ece": np.abs(calibration_gap).sum(axis=1) / total,
    }


def weighted_metrics(y_true, probs, threshold: float, weights) -> dict[str, np.ndarray]:
    """Every metric in ``METRICS`` for each row of ``weights`` (image multiplicities, shape [B, n]).

    A bootstrap resample is a row of counts, so all resamples are evaluated with a few matrix products.
    A row of ones reproduces ``compute_metrics``.
    """
    y_true, probs = check_binary_inputs(y_true, probs, "weighted_metrics")
    weights = np.atleast_2d(np.asarray(weights, dtype=float))
    return _threshold_metrics(y_true, predict_labels(probs, threshold), weights) | _probability_metrics(
        y_true, probs, weights)



def metrics_vs_threshold(y_true, probs, thresholds=None) -> pd.DataFrame:
    """Threshold-dependent metrics over a grid of thresholds (default 0.00..1.00 in 0.01 steps)."""
    y_true, probs = check_binary_inputs(y_true, probs, "metrics_vs_threshold")
    thresholds = np.linspace(0, 1, 101) if thresholds is None else np.asarray(thresholds, dtype=float)
    ones = np.ones((1, len(y_true)))
    rows = [{"threshold": t} | {k: float(v[0]) for k, v in _threshold_metrics(y_true, predict_labels(probs, t),
                                                                              ones).items()}
            for t in thresholds]
    return pd.DataFrame(rows)
