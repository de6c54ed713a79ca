"""Paired comparison of two runs on the same test images: exact McNemar, DeLong, paired patient bootstrap,
and the images on which they disagree."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm, rankdata
from statsmodels.stats.contingency_tables import mcnemar

from cxrlib import bootstrap, evaluate

from .runs import Run, aligned_subset


def mcnemar_test(correct_a, correct_b) -> dict:
    """Exact McNemar test on the paired correctness of two models (statsmodels)."""
    correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    table = [[np.sum(correct_a & correct_b), np.sum(correct_a & ~correct_b)],
             [np.sum(~correct_a & correct_b), np.sum(~correct_a & ~correct_b)]]
    result = mcnemar(table, exact=True)
    return {"table": np.array(table), "statistic": float(result.statistic), "p_value": float(result.pvalue)}


def delong_covariance(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance for k score vectors (shape [k, n]) via midranks (Sun & Xu 2014)."""
    y_true = np.asarray(y_true).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    positives, negatives = scores[:, y_true], scores[:, ~y_true]
    n_pos, n_neg = positives.shape[1], negatives.shape[1]
    rank_pos = rankdata(positives, axis=1)
    rank_neg = rankdata(negatives, axis=1)
    rank_all = rankdata(np.concatenate([positives, negatives], axis=1), axis=1)
    aucs = rank_all[:, :n_pos].sum(axis=1) / (n_pos * n_neg) - (n_pos + 1) / (2 * n_neg)
    v_pos = (rank_all[:, :n_pos] - rank_pos) / n_neg          # share of negatives below each positive
    v_neg = 1 - (rank_all[:, n_pos:] - rank_neg) / n_pos      # share of positives above each negative
    covariance = np.atleast_2d(np.cov(v_pos)) / n_pos + np.atleast_2d(np.cov(v_neg)) / n_neg
    return aucs, covariance


def delong_test(y_true, probs_a, probs_b, level: float = 0.95) -> dict:
    """DeLong test of AUC(a) - AUC(b) on the same images: difference, its normal CI, z and two-sided p."""
    aucs, covariance = delong_covariance(y_true, np.vstack([probs_a, probs_b]))
    difference = aucs[0] - aucs[1]
    std_error = float(np.sqrt(max(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1], 0.0)))
    z = difference / std_error if std_error > 0 else 0.0
    half_width = norm.ppf(0.5 + level / 2) * std_error
    return {"auc_a": aucs[0], "auc_b": aucs[1], "difference": difference, "std_error": std_error,
            "ci_low": difference - half_width, "ci_high": difference + half_width,
            "z": z, "p_value": float(2 * norm.sf(abs(z)))}


def compare_pair(run_a: Run, run_b: Run, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Paired comparison of two models on the same test images, one row per test (a - b).

    Accuracy at each model's validation-chosen threshold: image-level exact McNemar test (discordant images),
    then the paired patient-bootstrap CI of the difference. ROC-AUC: image-level DeLong test, then the paired
    patient-bootstrap CI. Column ``level`` says whether a row treats images or patients as independent.
    """
    test_a, test_b = aligned_subset([run_a, run_b])
    y_true, patients = test_a["target"].to_numpy(), test_a["patient_id"].to_numpy()
    probs_a, probs_b = test_a["prob"].to_numpy(), test_b["prob"].to_numpy()
    correct_a = evaluate.predict_labels(probs_a, run_a.threshold) == y_true
    correct_b = evaluate.predict_labels(probs_b, run_b.threshold) == y_true
    exact = mcnemar_test(correct_a, correct_b)
    delong = delong_test(y_true, probs_a, probs_b)
    boot = bootstrap.paired_bootstrap(y_true, probs_a, probs_b, run_a.threshold, run_b.threshold,
                                      metrics=("accuracy", "roc_auc"), n_boot=n_boot, seed=seed, groups=patients)
    boot_note = f"{n_boot} resamples of {len(set(patients))} patients within class, percentile 95% CI"
    boot_tests = {"accuracy": "paired patient bootstrap (accuracy)", "roc_auc": "paired patient bootstrap (ROC-AUC)"}
    boot_rows = {metric: {"test": boot_tests[metric], "level": "patient", "metric": metric,
                          "a": row["a"], "b": row["b"], "difference": row["difference"], "ci_low": row["ci_low"],
                          "ci_high": row["ci_high"], "statistic": np.nan, "p_value": np.nan, "note": boot_note}
                 for metric, row in boot.iterrows()}
    rows = [
        {"test": "image-level McNemar exact (accuracy at chosen thresholds)", "level": "image", "metric": "accuracy",
         "a": correct_a.mean(), "b": correct_b.mean(), "difference": correct_a.mean() - correct_b.mean(),
         "ci_low": np.nan, "ci_high": np.nan, "statistic": exact["statistic"], "p_value": exact["p_value"],
         "note": f"discordant images: only a correct {exact['table'][0, 1]}, only b correct {exact['table'][1, 0]}"},
        boot_rows["accuracy"],
        {"test": "image-level DeLong (ROC-AUC)", "level": "image", "metric": "roc_auc", "a": delong["auc_a"],
         "b": delong["auc_b"], "difference": delong["difference"], "ci_low": delong["ci_low"],
         "ci_high": delong["ci_high"], "statistic": delong["z"], "p_value": delong["p_value"],
         "note": "95% CI from the DeLong variance, images treated as independent"},
        boot_rows["roc_auc"],
    ]
    frame = pd.DataFrame(rows)
    frame.insert(0, "comparison", f"{run_a.name} - {run_b.name}")
    return frame


def disagreements(run_a: Run, run_b: Run) -> pd.DataFrame:
    """Test images where the two models' predicted labels (at their chosen thresholds) differ."""
    test_a, test_b = aligned_subset([run_a, run_b])
    pred_a = evaluate.predict_labels(test_a["prob"], run_a.threshold)
    pred_b = evaluate.predict_labels(test_b["prob"], run_b.threshold)
    frame = test_a[["path", "label", "target", "patient_id"]].assign(
        **{f"prob_{run_a.name}": test_a["prob"], f"prob_{run_b.name}": test_b["prob"].to_numpy(),
           f"pred_{run_a.name}": pred_a, f"pred_{run_b.name}": pred_b,
           "correct": np.where(pred_a == test_a["target"], run_a.name, run_b.name)})
    return frame[pred_a != pred_b].reset_index(drop=True)
