"""Compare trained runs from their run directories: paired tests, ensemble and the results table.

Nothing here retrains or re-predicts: everything reads ``predictions.csv`` / ``run.json`` /
``history.csv`` written by ``cxrlib.train`` (contract in docs/ARCHITECTURE.md).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.special import expit, logit
from scipy.stats import norm, rankdata
from statsmodels.stats.contingency_tables import mcnemar

from cxrlib import evaluate

PREDICTION_COLUMNS = ("path", "subset", "label", "target", "patient_id", "prob")
HISTORY_COLUMNS = ("epoch", "loss", "val_loss")
CI_COLUMNS = ("accuracy", "roc_auc", "sensitivity", "specificity", "f1_macro")
# The reference study's names for the macro averages, used as the results table's column names.
TABLE_NAMES = {"precision_macro": "macro_precision", "recall_macro": "macro_recall", "f1_macro": "macro_f1"}


@dataclass
class Run:
    """One model's results as saved by the trainer (or built here, for the ensemble)."""

    name: str
    arch: str
    info: dict
    predictions: pd.DataFrame
    threshold: float
    history: pd.DataFrame | None = None
    run_dir: Path | None = None
    threshold_info: dict = field(default_factory=dict)

    @property
    def val(self) -> pd.DataFrame:
        """Validation rows (used only to choose the threshold)."""
        return self.predictions[self.predictions["subset"] == "val"].reset_index(drop=True)

    @property
    def test(self) -> pd.DataFrame:
        """Test rows, with ``pred`` (0/1 at the chosen threshold) and ``correct`` columns."""
        test = self.predictions[self.predictions["subset"] == "test"].reset_index(drop=True)
        pred = evaluate.predict_labels(test["prob"], self.threshold)
        return test.assign(pred=pred, correct=pred == test["target"].to_numpy())


# ---------------------------------------------------------------- loading

def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: is {path.parent} a finished run directory from cxrlib.train?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); re-run training or fix the file") from error


def _read_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: is {path.parent} a finished run directory from cxrlib.train?")
    frame = pd.read_csv(path)
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; expected at least {list(required)}")
    return frame


def _check_predictions(predictions: pd.DataFrame, source: Path | str) -> pd.DataFrame:
    """Validate the predictions contract: subsets, 0/1 targets matching labels, probabilities in [0, 1]."""
    subsets = set(predictions["subset"])
    if not {"val", "test"} <= subsets:
        raise ValueError(f"{source} needs both 'val' and 'test' rows in column 'subset', found {sorted(subsets)}")
    probs = predictions["prob"].to_numpy(dtype=float)
    if not np.isfinite(probs).all() or probs.min() < 0 or probs.max() > 1:
        raise ValueError(f"{source}: column 'prob' must hold finite probabilities in [0, 1]")
    expected_target = (predictions["label"] == "PNEUMONIA").astype(int)
    if not (predictions["target"].astype(int) == expected_target).all():
        raise ValueError(f"{source}: 'target' must be 1 exactly where 'label' is PNEUMONIA")
    duplicated = predictions.duplicated(["subset", "path"])
    if duplicated.any():
        raise ValueError(f"{source}: {duplicated.sum()} duplicated (subset, path) rows, "
                         f"e.g. {predictions.loc[duplicated, 'path'].iloc[0]}")
    return predictions.assign(target=predictions["target"].astype(int))


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory (run.json, predictions.csv, history.csv) into a ``Run``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist; train the model first (cxrlib.train)")
    info = _read_json(run_dir / "run.json")
    threshold_info = info.get("threshold")
    if not isinstance(threshold_info, dict) or not isinstance(threshold_info.get("value"), (int, float)):
        raise ValueError(f"{run_dir / 'run.json'} needs 'threshold': {{'policy': ..., 'value': <float>}} "
                         "chosen on the validation rows")
    predictions = _check_predictions(_read_csv(run_dir / "predictions.csv", PREDICTION_COLUMNS),
                                     run_dir / "predictions.csv")
    history = _read_csv(run_dir / "history.csv", HISTORY_COLUMNS)
    return Run(name=info.get("name", run_dir.name), arch=info.get("arch", run_dir.name), info=info,
               predictions=predictions, threshold=float(threshold_info["value"]), history=history,
               run_dir=run_dir, threshold_info=threshold_info)


# ---------------------------------------------------------------- alignment

def aligned_subset(runs: Sequence[Run], subset: str = "test") -> list[pd.DataFrame]:
    """The ``subset`` rows of every run in the first run's order; error if the runs saw different images."""
    reference = runs[0].predictions[runs[0].predictions["subset"] == subset].reset_index(drop=True)
    aligned = [reference]
    for run in runs[1:]:
        frame = run.predictions[run.predictions["subset"] == subset].set_index("path")
        only_reference = set(reference["path"]) - set(frame.index)
        only_other = set(frame.index) - set(reference["path"])
        if only_reference or only_other:
            examples = sorted(only_reference | only_other)[:3]
            raise ValueError(
                f"runs {runs[0].name!r} and {run.name!r} were evaluated on different {subset} images "
                f"({len(only_reference)} only in the first, {len(only_other)} only in the second, e.g. {examples}); "
                "compare runs made from the same data (same data_fingerprint and split seed)")
        frame = frame.loc[reference["path"]].reset_index()
        if not (frame["target"].to_numpy() == reference["target"].to_numpy()).all():
            raise ValueError(f"runs {runs[0].name!r} and {run.name!r} disagree on the labels of the same {subset} "
                             "images; their predictions.csv files come from different data")
        aligned.append(frame[reference.columns])
    return aligned


# ---------------------------------------------------------------- paired tests

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

    McNemar (exact) on correctness at each model's validation-chosen threshold; DeLong for ROC-AUC;
    paired stratified bootstrap CIs for the accuracy and ROC-AUC differences.
    """
    test_a, test_b = aligned_subset([run_a, run_b])
    y_true = test_a["target"].to_numpy()
    probs_a, probs_b = test_a["prob"].to_numpy(), test_b["prob"].to_numpy()
    correct_a = evaluate.predict_labels(probs_a, run_a.threshold) == y_true
    correct_b = evaluate.predict_labels(probs_b, run_b.threshold) == y_true
    exact = mcnemar_test(correct_a, correct_b)
    delong = delong_test(y_true, probs_a, probs_b)
    boot = evaluate.paired_bootstrap(y_true, probs_a, probs_b, run_a.threshold, run_b.threshold,
                                     metrics=("accuracy", "roc_auc"), n_boot=n_boot, seed=seed)
    rows = [
        {"test": "McNemar exact (accuracy at chosen thresholds)", "metric": "accuracy",
         "a": correct_a.mean(), "b": correct_b.mean(), "difference": correct_a.mean() - correct_b.mean(),
         "ci_low": np.nan, "ci_high": np.nan, "statistic": exact["statistic"], "p_value": exact["p_value"],
         "note": f"discordant: only a correct {exact['table'][0, 1]}, only b correct {exact['table'][1, 0]}"},
        {"test": "DeLong (ROC-AUC)", "metric": "roc_auc", "a": delong["auc_a"], "b": delong["auc_b"],
         "difference": delong["difference"], "ci_low": delong["ci_low"], "ci_high": delong["ci_high"],
         "statistic": delong["z"], "p_value": delong["p_value"], "note": "95% CI from the DeLong variance"},
    ]
    for metric, row in boot.iterrows():
        rows.append({"test": f"paired bootstrap ({metric})", "metric": metric, "a": row["a"], "b": row["b"],
                     "difference": row["difference"], "ci_low": row["ci_low"], "ci_high": row["ci_high"],
                     "statistic": np.nan, "p_value": np.nan,
                     "note": f"{n_boot} stratified resamples, percentile 95% CI"})
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


# ---------------------------------------------------------------- ensemble

def _combine(prob_columns: list[np.ndarray], method: str) -> np.ndarray:
    stacked = np.vstack(prob_columns)
    if method == "mean":
        return stacked.mean(axis=0)
    if method == "logit":
        eps = 1e-7
        return expit(logit(np.clip(stacked, eps, 1 - eps)).mean(axis=0))
    raise ValueError(f"unknown ensemble method {method!r}; use 'mean' or 'logit'")


def make_ensemble(runs: Sequence[Run], method: str = "mean", policy: str | None = None,
                  target_sensitivity: float | None = None, name: str = "ensemble") -> Run:
    """Average the runs' probabilities (or their logits); choose its threshold on the ensemble's val rows.

    The policy defaults to the first run's threshold policy so the ensemble is chosen like its members.
    """
    if len(runs) < 2:
        raise ValueError(f"an ensemble needs at least two runs, got {len(runs)}")
    member_policy = runs[0].threshold_info.get("policy", "youden")
    policy = policy or member_policy
    target_sensitivity = target_sensitivity or runs[0].threshold_info.get("target_sensitivity", 0.95)
    parts = []
    for subset in ("val", "test"):
        frames = aligned_subset(runs, subset)
        combined = frames[0][list(PREDICTION_COLUMNS)].copy()
        combined["prob"] = _combine([frame["prob"].to_numpy() for frame in frames], method)
        parts.append(combined)
    predictions = pd.concat(parts, ignore_index=True)
    val = predictions[predictions["subset"] == "val"]
    threshold = evaluate.choose_threshold(val["target"], val["prob"], policy, target_sensitivity)
    threshold_info = {"policy": policy, "value": threshold, "target_sensitivity": target_sensitivity,
                      "chosen_on": "val"}
    info = {"name": name, "arch": "ensemble", "members": [run.name for run in runs], "method": method,
            "threshold": threshold_info}
    return Run(name=name, arch="ensemble", info=info, predictions=predictions, threshold=threshold,
               threshold_info=threshold_info)


# ---------------------------------------------------------------- evaluation and the results table

def evaluate_run(run: Run, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Test metrics with bootstrap CIs at 0.5 and at the run's validation-chosen threshold."""
    test = run.test
    policy = f"chosen on validation: {run.threshold_info.get('policy', 'unknown')}"
    frame = evaluate.evaluate_at_thresholds(test["target"], test["prob"], run.threshold, policy, n_boot, seed)
    frame.insert(0, "model", run.name)
    return frame


def classification_report(run: Run, threshold: float | None = None) -> pd.DataFrame:
    """The reference study's per-class report on test, at the chosen threshold unless one is given."""
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
    """One row per model: the reference study's columns plus AUC/sensitivity/specificity with 95% CIs.

    Threshold metrics use each run's validation-chosen threshold; ``*_at_0.5`` columns give the default.
    """
    aligned_subset(runs)  # every row must describe the same test images
    rows = []
    for run in runs:
        test = run.test
        y_true, probs = test["target"].to_numpy(), test["prob"].to_numpy()
        chosen = evaluate.bootstrap_metrics(y_true, probs, run.threshold, n_boot, seed)
        default = evaluate.compute_metrics(y_true, probs, 0.5)
        row = {"model": run.arch if run.arch != "ensemble" else run.name, "name": run.name, "n_test": len(test)}
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


def export_table(table: pd.DataFrame, out_dir: str | Path, stem: str) -> dict[str, Path]:
    """Write ``table`` as <stem>.csv, <stem>.md and <stem>.html in ``out_dir``; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {kind: out_dir / f"{stem}.{kind}" for kind in ("csv", "md", "html")}
    table.to_csv(paths["csv"], index=False)
    paths["md"].write_text(table.to_markdown(index=False, floatfmt=".4g") + "\n")
    table.to_html(paths["html"], index=False, float_format=lambda value: f"{value:.4g}", na_rep="n/a", border=0)
    return paths
