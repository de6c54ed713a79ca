"""Stratified (patient-cluster) bootstrap: confidence intervals, paired differences and threshold stability.

Each resample is a row of image multiplicities (a count matrix), so all resamples are scored at once with
``evaluate.weighted_metrics``. With ``groups`` (patient ids) the unit of resampling is the patient: patients
are drawn with replacement within their class and bring all their images, which is what the test set's
dependence (several images per child) calls for. Without ``groups`` each image is its own unit.
Intervals are percentile intervals of the seeded resamples.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cxrlib import evaluate
from cxrlib.contract import THRESHOLD_POLICIES

BOOTSTRAP_CHUNK = 250


def patient_strata(y_true: np.ndarray, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """Each image's patient index and each patient's class (its majority class; a tie -> its first image's class).

    Without ``groups`` every image is its own patient. In this data set a patient's images share one class.
    """
    if groups is None:
        return np.arange(len(y_true)), y_true
    groups = pd.Series(np.asarray(groups, dtype=object))
    if len(groups) != len(y_true):
        raise ValueError(f"groups: one patient id per image is needed, got {len(groups)} ids for {len(y_true)} images")
    if groups.isna().any():
        raise ValueError(f"groups: {groups.isna().sum()} images have no patient id; fill column 'patient_id'")
    patient_of_image, patient_ids = pd.factorize(groups)
    positives = np.bincount(patient_of_image, weights=y_true, minlength=len(patient_ids))
    sizes = np.bincount(patient_of_image, minlength=len(patient_ids))
    first_class = y_true[np.unique(patient_of_image, return_index=True)[1]]
    patient_class = np.where(2 * positives == sizes, first_class, (2 * positives > sizes).astype(int))
    return patient_of_image, patient_class


def bootstrap_weights(y_true, n_boot: int = 2000, seed: int = 0, progress: bool = False,
                      groups=None) -> Iterator[np.ndarray]:
    """Stratified bootstrap as count matrices [resamples, images], in chunks of ``BOOTSTRAP_CHUNK`` rows.

    Without ``groups``: images resampled within their class (class counts fixed). With ``groups`` (patient ids):
    patients resampled with replacement within their class (see ``patient_strata``), each drawn patient
    contributing all its images, so every image of a patient carries the patient's count. Either way every
    resample holds both classes, so AUC is always defined.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    y_true = np.asarray(y_true)
    patient_of_image, patient_class = patient_strata(y_true, groups)
    strata = [np.flatnonzero(patient_class == label) for label in (0, 1)]
    if min(len(members) for members in strata) == 0:
        raise ValueError("groups: every patient's images are mostly one class, so the other class has no patient "
                         "to resample; check the patient ids against the labels")
    rng = np.random.default_rng(seed)
    starts = range(0, n_boot, BOOTSTRAP_CHUNK)
    for start in tqdm(starts, desc="bootstrap", unit="chunk", disable=not progress or len(starts) < 2):
        size = min(BOOTSTRAP_CHUNK, n_boot - start)
        patient_counts = np.zeros((size, len(patient_class)))
        for members in strata:
            patient_counts[:, members] = rng.multinomial(len(members), np.full(len(members), 1 / len(members)),
                                                         size=size)
        yield patient_counts[:, patient_of_image]


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval, ignoring resamples where the metric is undefined (NaN)."""
    values = np.asarray(values, dtype=float)
    if np.isnan(values).all():
        return np.nan, np.nan
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_distribution(y_true, probs, threshold: float, n_boot: int = 2000, seed: int = 0,
                           progress: bool = False, groups=None) -> pd.DataFrame:
    """All metrics on each of ``n_boot`` stratified resamples (one row per resample); patients if ``groups``."""
    y_true, probs = evaluate.check_binary_inputs(y_true, probs, "bootstrap_distribution")
    chunks = [pd.DataFrame(evaluate.weighted_metrics(y_true, probs, threshold, weights))
              for weights in bootstrap_weights(y_true, n_boot, seed, progress, groups)]
    return pd.concat(chunks, ignore_index=True)


def bootstrap_metrics(y_true, probs, threshold: float, n_boot: int = 2000, seed: int = 0,
                      level: float = 0.95, progress: bool = False, groups=None) -> pd.DataFrame:
    """Point estimate (scikit-learn) and percentile ``level`` CI of every metric; index = metric name.

    CIs resample patients within class when ``groups`` (patient ids) is given, else images.
    """
    estimates = evaluate.compute_metrics(y_true, probs, threshold)
    resamples = bootstrap_distribution(y_true, probs, threshold, n_boot, seed, progress, groups)
    rows = {name: (estimates[name], *percentile_interval(resamples[name], level)) for name in evaluate.METRICS}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["estimate", "ci_low", "ci_high"])
    frame.index.name = "metric"
    return frame


def evaluate_at_thresholds(y_true, probs, threshold: float, policy: str = "chosen on validation",
                           n_boot: int = 2000, seed: int = 0, level: float = 0.95, groups=None) -> pd.DataFrame:
    """Test metrics with CIs at the default 0.5 and at the validation-chosen ``threshold``, labelled.

    Columns: operating_point, threshold, metric, estimate, ci_low, ci_high. Threshold-free metrics
    (ROC-AUC, PR-AUC, Brier, ECE) are identical in both blocks.
    """
    blocks = []
    for label, value in (("default 0.5", 0.5), (f"{policy} ({threshold:.3f})", threshold)):
        block = bootstrap_metrics(y_true, probs, value, n_boot, seed, level, groups=groups).reset_index()
        block.insert(0, "threshold", value)
        block.insert(0, "operating_point", label)
        blocks.append(block)
    return pd.concat(blocks, ignore_index=True)


def paired_bootstrap(y_true, probs_a, probs_b, threshold_a: float, threshold_b: float,
                     metrics: Sequence[str] = ("accuracy", "roc_auc"), n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95, groups=None) -> pd.DataFrame:
    """Bootstrap CI of metric(a) - metric(b) with both models scored on the *same* resamples (of patients if
    ``groups``). Index = metric; columns: a, b, difference, ci_low, ci_high (percentile interval)."""
    y_true, probs_a = evaluate.check_binary_inputs(y_true, probs_a, "paired_bootstrap (model a)")
    _, probs_b = evaluate.check_binary_inputs(y_true, probs_b, "paired_bootstrap (model b)")
    unknown = set(metrics) - set(evaluate.METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {evaluate.METRICS}")
    point_a = evaluate.compute_metrics(y_true, probs_a, threshold_a)
    point_b = evaluate.compute_metrics(y_true, probs_b, threshold_b)
    differences = {name: [] for name in metrics}
    for weights in bootstrap_weights(y_true, n_boot, seed, groups=groups):
        resampled_a = evaluate.weighted_metrics(y_true, probs_a, threshold_a, weights)
        resampled_b = evaluate.weighted_metrics(y_true, probs_b, threshold_b, weights)
        for name in metrics:
            differences[name].append(resampled_a[name] - resampled_b[name])
    rows = {name: (point_a[name], point_b[name], point_a[name] - point_b[name],
                   *percentile_interval(np.concatenate(differences[name]), level)) for name in metrics}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["a", "b", "difference", "ci_low", "ci_high"])
    frame.index.name = "metric"
    return frame


def threshold_stability(y_true, probs, policies: Sequence[str] = THRESHOLD_POLICIES, n_boot: int = 2000,
                        seed: int = 0, groups=None, **policy_kwargs) -> pd.DataFrame:
    """How firmly the validation rows pin each policy's threshold: a stability diagnostic, not a confidence interval.

    The threshold each policy picks on the validation rows, and the spread of the thresholds it picks on
    ``n_boot`` stratified resamples of those rows (of patients if ``groups``): 2.5th, 50th and 97.5th
    percentiles and SD. A wide spread means a flat criterion (e.g. Youden's J on a plateau), so a few images
    decide the threshold. ``policy_kwargs`` go to ``evaluate.policy_thresholds`` (target_sensitivity, delta,
    fixed_threshold). Index = policy; columns: threshold, resampled_p2.5, resampled_median, resampled_p97.5,
    resampled_sd, n_boot.
    """
    y_true, probs = evaluate.check_binary_inputs(y_true, probs, "threshold_stability")
    chosen = evaluate.policy_thresholds(y_true, probs, policies, **policy_kwargs)
    resampled = pd.DataFrame([evaluate.policy_thresholds(y_true, probs, policies, counts, **policy_kwargs)
                              for weights in bootstrap_weights(y_true, n_boot, seed, groups=groups)
                              for counts in weights])
    frame = pd.DataFrame({"threshold": pd.Series(chosen),
                          "resampled_p2.5": resampled.quantile(0.025), "resampled_median": resampled.median(),
                          "resampled_p97.5": resampled.quantile(0.975), "resampled_sd": resampled.std(),
                          "n_boot": n_boot})
    frame.index.name = "policy"
    return frame
