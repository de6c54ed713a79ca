"""Per-run test metrics with patient-bootstrap CIs: the per-class report and the results table (one row per run)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from cxrlib import bootstrap, evaluate
from cxrlib.contract import model_of

from .runs import Run, aligned_subset

CI_COLUMNS = ("accuracy", "roc_auc", "sensitivity", "specificity", "f1_macro")
# The published paper's names for the macro averages, used as the results table's column names.
TABLE_NAMES = {"precision_macro": "macro_precision", "recall_macro": "macro_recall", "f1_macro": "macro_f1"}


def evaluate_run(run: Run, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Test metrics with patient-bootstrap CIs at 0.5 and at the run's validation-chosen threshold."""
    test = run.test
    policy = f"chosen on validation: {run.threshold_info.get('policy', 'unknown')}"
    frame = bootstrap.evaluate_at_thresholds(test["target"], test["prob"], run.threshold, policy, n_boot, seed,
                                             groups=test["patient_id"])
    frame.insert(0, "model", run.name)
    return frame


def classification_report(run: Run, threshold: float | None = None) -> pd.DataFrame:
    """The published paper's per-class report on test, at the chosen threshold unless one is given."""
    test = run.test
    return evaluate.classification_report_frame(test["target"], test["prob"],
                                                run.threshold if threshold is None else threshold)


def _run_facts(run: Run) -> dict:
    """Cost and size facts from run.json (NaN where the run has none, e.g. the ensemble)."""
    info = run.info
    params = info.get("params") or {}
    facts = {
        "params_total": params.get("total"),
        "params_trainable": params.get("trainable"),
        "train_time_s": (info.get("timing") or {}).get("training"),  # all training phases, as cxrlib.train sums them
        "images_per_sec": info.get("images_per_sec"),
        "model_size_mb": info.get("model_size_mb"),
        "latency_ms": info.get("latency_ms"),
    }
    return {key: np.nan if value is None else value for key, value in facts.items()}


def results_table(runs: Sequence[Run], n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per model: the published paper's columns plus AUC/sensitivity/specificity with 95% CIs.

    Threshold metrics use each run's validation-chosen threshold; ``*_at_0.5`` columns give the default.
    CIs resample test patients within class (``n_test_patients`` of them), each with all its images.
    """
    aligned_subset(runs)  # every row must describe the same test images
    rows = []
    for run in runs:
        test = run.test
        y_true, probs = test["target"].to_numpy(), test["prob"].to_numpy()
        chosen = bootstrap.bootstrap_metrics(y_true, probs, run.threshold, n_boot, seed, groups=test["patient_id"])
        default = evaluate.compute_metrics(y_true, probs, 0.5)
        row = {"model": model_of(run.arch, run.name), "name": run.name, "n_test": len(test),
               "n_test_patients": test["patient_id"].nunique()}
        for metric in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc", "sensitivity",
                       "specificity", "pr_auc", "brier", "ece"):
            column = TABLE_NAMES.get(metric, metric)
            row[column] = chosen.loc[metric, "estimate"]
            if metric in CI_COLUMNS:
                row[f"{column}_ci_low"], row[f"{column}_ci_high"] = chosen.loc[metric, ["ci_low", "ci_high"]]
        row |= {"threshold": run.threshold, "threshold_policy": run.threshold_info.get("policy", "")}
        row |= {f"{metric}_at_0.5": default[metric] for metric in ("accuracy", "sensitivity", "specificity")}
        rows.append(row | _run_facts(run))
    return pd.DataFrame(rows)
