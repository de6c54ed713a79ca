"""Metrics, the validation-only decision threshold, and stratified-bootstrap confidence intervals.

Convention used everywhere: a probability ``p`` is predicted PNEUMONIA (1) when ``p >= threshold``
(the same convention as ``sklearn.metrics.roc_curve``). The threshold is chosen on validation rows
only (``choose_threshold``); every function that evaluates test takes it as an argument.

Confidence intervals: percentile intervals from a seeded stratified bootstrap over test images
(positives and negatives resampled separately, so class counts stay fixed). Each resample is a row of
image multiplicities, so all resamples are scored at once with matrix products (``weighted_metrics``).
ECE uses 10 equal-width probability bins, weighted by the share of images in each bin.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score, brier_score_loss,
                             classification_report, f1_score, precision_recall_fscore_support, precision_score,
                             recall_score, roc_auc_score, roc_curve)
from tqdm.auto import tqdm

THRESHOLD_POLICIES = ("youden", "sensitivity")


def check_binary_inputs(y_true, probs, what: str = "predictions") -> tuple[np.ndarray, np.ndarray]:
    """Validate labels (0/1, both classes present) and probabilities (finite, in [0, 1]) of equal length."""
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=float)
    if y_true.ndim != 1 or probs.ndim != 1 or len(y_true) != len(probs):
        raise ValueError(f"{what}: labels and probabilities must be 1-D of equal length, "
                         f"got shapes {y_true.shape} and {probs.shape}")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError(f"{what}: labels must be 0 (NORMAL) or 1 (PNEUMONIA), got {np.unique(y_true)[:5]}")
    if len(np.unique(y_true)) < 2:
        raise ValueError(f"{what}: both classes are needed, only {np.unique(y_true)} present")
    if not np.isfinite(probs).all() or probs.min() < 0 or probs.max() > 1:
        raise ValueError(f"{what}: probabilities must be finite and within [0, 1]")
    return y_true.astype(int), probs


def choose_threshold(y_true, probs, policy: str = "youden", target_sensitivity: float = 0.95) -> float:
    """Pick the decision threshold on *validation* predictions; apply it unchanged to test.

    ``youden``: maximise Youden's J = sensitivity + specificity - 1 (ties -> the highest threshold).
    ``sensitivity``: the highest threshold whose validation sensitivity reaches ``target_sensitivity``.
    The threshold is one of the observed probabilities; ``p >= threshold`` is positive.
    """
    y_true, probs = check_binary_inputs(y_true, probs, "choose_threshold")
    fpr, tpr, thresholds = roc_curve(y_true, probs, drop_intermediate=False)
    # Index 0 is sklearn's "predict nothing positive" point (threshold = inf); never a useful choice.
    fpr, tpr, thresholds = fpr[1:], tpr[1:], thresholds[1:]
    if policy == "youden":
        best = int(np.argmax(tpr - fpr))
    elif policy == "sensitivity":
        if not 0 < target_sensitivity <= 1:
            raise ValueError(f"target_sensitivity must be in (0, 1], got {target_sensitivity}")
        best = int(np.argmax(tpr >= target_sensitivity - 1e-12))
    else:
        raise ValueError(f"unknown threshold policy {policy!r}; use one of {THRESHOLD_POLICIES}")
    return float(thresholds[best])


def threshold_interval(y_true, probs, policy: str = "youden", target_sensitivity: float = 0.95, n_boot: int = 2000,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """How firmly validation pins the threshold: percentile interval of the thresholds ``policy`` picks on
    stratified bootstrap resamples of the validation images. A wide interval means a flat metric curve."""
    y_true, probs = check_binary_inputs(y_true, probs, "threshold_interval")
    thresholds = [choose_threshold(np.repeat(y_true, counts), np.repeat(probs, counts), policy, target_sensitivity)
                  for weights in bootstrap_weights(y_true, n_boot, seed) for counts in weights.astype(int)]
    return percentile_interval(np.array(thresholds), level)


# ---------------------------------------------------------------- point estimates (scikit-learn)

CLASS_NAMES = ("NORMAL", "PNEUMONIA")
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


def predict_labels(probs, threshold: float) -> np.ndarray:
    """0/1 predictions: PNEUMONIA when ``prob >= threshold``."""
    return (np.asarray(probs, dtype=float) >= threshold).astype(int)


def classification_report_frame(y_true, probs, threshold: float) -> pd.DataFrame:
    """The reference study's table: per-class precision/recall/F1/support, accuracy, macro and weighted avg."""
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


# ---------------------------------------------------------------- stratified bootstrap

BOOTSTRAP_CHUNK = 250


def bootstrap_weights(y_true, n_boot: int = 2000, seed: int = 0, progress: bool = False) -> Iterator[np.ndarray]:
    """Stratified bootstrap as count matrices: each row resamples positives and negatives separately.

    Class counts stay fixed, so every resample has both classes and AUC is always defined.
    Rows come in chunks of ``BOOTSTRAP_CHUNK`` to bound memory.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    y_true = np.asarray(y_true)
    rng = np.random.default_rng(seed)
    classes = [np.flatnonzero(y_true == label) for label in (0, 1)]
    starts = range(0, n_boot, BOOTSTRAP_CHUNK)
    for start in tqdm(starts, desc="bootstrap", unit="chunk", disable=not progress or len(starts) < 2):
        size = min(BOOTSTRAP_CHUNK, n_boot - start)
        weights = np.zeros((size, len(y_true)))
        for members in classes:
            weights[:, members] = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), size=size)
        yield weights


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval, ignoring resamples where the metric is undefined (NaN)."""
    values = np.asarray(values, dtype=float)
    if np.isnan(values).all():
        return np.nan, np.nan
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_distribution(y_true, probs, threshold: float, n_boot: int = 2000, seed: int = 0,
                           progress: bool = False) -> pd.DataFrame:
    """All metrics on each of ``n_boot`` stratified resamples of the images (one row per resample)."""
    y_true, probs = check_binary_inputs(y_true, probs, "bootstrap_distribution")
    chunks = [pd.DataFrame(weighted_metrics(y_true, probs, threshold, weights))
              for weights in bootstrap_weights(y_true, n_boot, seed, progress)]
    return pd.concat(chunks, ignore_index=True)


def bootstrap_metrics(y_true, probs, threshold: float, n_boot: int = 2000, seed: int = 0,
                      level: float = 0.95, progress: bool = False) -> pd.DataFrame:
    """Point estimate (scikit-learn) and percentile ``level`` CI of every metric; index = metric name.

    CIs come from a seeded stratified bootstrap over test images (``n_boot`` resamples, class counts fixed).
    """
    estimates = compute_metrics(y_true, probs, threshold)
    resamples = bootstrap_distribution(y_true, probs, threshold, n_boot, seed, progress)
    rows = {name: (estimates[name], *percentile_interval(resamples[name], level)) for name in METRICS}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["estimate", "ci_low", "ci_high"])
    frame.index.name = "metric"
    return frame


def evaluate_at_thresholds(y_true, probs, threshold: float, policy: str = "chosen on validation",
                           n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Test metrics with CIs at the default 0.5 and at the validation-chosen ``threshold``, labelled.

    Columns: operating_point, threshold, metric, estimate, ci_low, ci_high. Threshold-free metrics
    (ROC-AUC, PR-AUC, Brier, ECE) are identical in both blocks.
    """
    blocks = []
    for label, value in (("default 0.5", 0.5), (f"{policy} ({threshold:.3f})", threshold)):
        block = bootstrap_metrics(y_true, probs, value, n_boot, seed, level).reset_index()
        block.insert(0, "threshold", value)
        block.insert(0, "operating_point", label)
        blocks.append(block)
    return pd.concat(blocks, ignore_index=True)


def paired_bootstrap(y_true, probs_a, probs_b, threshold_a: float, threshold_b: float,
                     metrics: Sequence[str] = ("accuracy", "roc_auc"), n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> pd.DataFrame:
    """Bootstrap CI of metric(a) - metric(b) with both models scored on the *same* resamples.

    Index = metric; columns: a, b, difference, ci_low, ci_high (percentile interval of the difference).
    """
    y_true, probs_a = check_binary_inputs(y_true, probs_a, "paired_bootstrap (model a)")
    _, probs_b = check_binary_inputs(y_true, probs_b, "paired_bootstrap (model b)")
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {METRICS}")
    point_a, point_b = compute_metrics(y_true, probs_a, threshold_a), compute_metrics(y_true, probs_b, threshold_b)
    differences = {name: [] for name in metrics}
    for weights in bootstrap_weights(y_true, n_boot, seed):
        resampled_a = weighted_metrics(y_true, probs_a, threshold_a, weights)
        resampled_b = weighted_metrics(y_true, probs_b, threshold_b, weights)
        for name in metrics:
            differences[name].append(resampled_a[name] - resampled_b[name])
    rows = {name: (point_a[name], point_b[name], point_a[name] - point_b[name],
                   *percentile_interval(np.concatenate(differences[name]), level)) for name in metrics}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["a", "b", "difference", "ci_low", "ci_high"])
    frame.index.name = "metric"
    return frame


def metrics_vs_threshold(y_true, probs, thresholds=None) -> pd.DataFrame:
    """Threshold-dependent metrics over a grid of thresholds (default 0.00..1.00 in 0.01 steps)."""
    y_true, probs = check_binary_inputs(y_true, probs, "metrics_vs_threshold")
    thresholds = np.linspace(0, 1, 101) if thresholds is None else np.asarray(thresholds, dtype=float)
    ones = np.ones((1, len(y_true)))
    rows = [{"threshold": t} | {k: float(v[0]) for k, v in _threshold_metrics(y_true, predict_labels(probs, t),
                                                                              ones).items()}
            for t in thresholds]
    return pd.DataFrame(rows)
