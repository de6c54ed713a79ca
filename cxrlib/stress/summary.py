"""What a stress record says, per shift and strength: the share of each class called PNEUMONIA at the run's recorded
threshold, the ROC-AUC, the share flagged out of distribution and the decisions that flipped (with and without a
flag); per architecture across the replicates that have records, mean with a t-interval. No TensorFlow."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import t
from sklearn.metrics import roc_auc_score

from cxrlib.contract import CLASS_NAMES, PREDICTIONS_FILE, RUN_RECORD_FILE, STRESS_COLUMNS, STRESS_FILE
from cxrlib.data.index import relpath_from_path
from cxrlib.evaluate import predict_labels

from .shifts import REFERENCE, StressError

# Per shift and strength, each a share of the test images (or of one class) except roc_auc.
METRICS = ("normal_called_pneumonia", "pneumonia_called_pneumonia", "roc_auc", "ood_flagged", "flipped",
           "flipped_unflagged")
CONDITION = ["shift", "strength"]
BORDER_VERSIONS = ("", "_masked", "_cropped")  # a border record's score columns: prob, prob_masked, prob_cropped
RECORD_HINT = "write it again with python -m cxrlib.stress RUN_DIR"


def read_stress_record(records_dir: str | os.PathLike) -> pd.DataFrame | None:
    """A run's ``stress.csv``, checked; None when the run has none."""
    path = Path(records_dir) / STRESS_FILE
    if not path.is_file():
        return None
    record = pd.read_csv(path, dtype={"shift": str, "path": str})
    missing = [column for column in STRESS_COLUMNS if column not in record.columns]
    if missing:
        raise StressError(f"{path} lacks columns {missing}; {RECORD_HINT}")
    if not (record["shift"] == REFERENCE).any():
        raise StressError(f"{path} has no {REFERENCE!r} rows (the unshifted images); {RECORD_HINT}")
    if record["ood_flag"].dtype != bool:
        raise StressError(f"{path}: ood_flag holds {sorted(record['ood_flag'].astype(str).unique())[:3]}, not "
                              f"True/False; {RECORD_HINT}")
    return record


def condition_metrics(record: pd.DataFrame, targets: pd.Series, threshold: float) -> pd.DataFrame:
    """One row per shift and strength (record order): images per class and METRICS; ``targets`` maps each test
    image's path (relative to the data root) to 0 (NORMAL) or 1 (PNEUMONIA)."""
    labelled = record.assign(target=record["path"].map(targets))
    if labelled["target"].isna().any():
        unknown = labelled.loc[labelled["target"].isna(), "path"].iloc[0]
        raise StressError(f"the stress record names {unknown}, which is not among the run's test predictions; "
                              f"{RECORD_HINT}")
    labelled["called"] = predict_labels(labelled["prob"], threshold)
    reference = labelled[labelled["shift"] == REFERENCE].set_index("path")["called"]
    labelled["flipped"] = labelled["called"] != labelled["path"].map(reference)
    rows = []
    for (shift, strength), group in labelled.groupby(CONDITION, sort=False):
        target, called, flagged = group["target"].to_numpy(int), group["called"].to_numpy(), group["ood_flag"].to_numpy()
        rows.append({"shift": shift, "strength": strength, "n_normal": int((target == 0).sum()),
                     "n_pneumonia": int((target == 1).sum()),
                     "normal_called_pneumonia": called[target == 0].mean() if (target == 0).any() else np.nan,
                     "pneumonia_called_pneumonia": called[target == 1].mean() if (target == 1).any() else np.nan,
                     "roc_auc": roc_auc_score(target, group["prob"]) if len(set(target)) == 2 else np.nan,
                     "ood_flagged": flagged.mean(), "flipped": group["flipped"].mean(),
                     "flipped_unflagged": (group["flipped"].to_numpy() & ~flagged).mean()})
    return pd.DataFrame(rows)


def run_stress_metrics(records_dir: str | os.PathLike, stress_dir: str | os.PathLike | None = None) -> pd.DataFrame | None:
    """``condition_metrics`` of a run's records folder (run.json, predictions.csv; stress.csv there or in
    ``stress_dir``) at the threshold run.json records, with the run's ``arch`` and ``seed``; None when the run has
    no stress record."""
    records_dir = Path(records_dir)
    record = read_stress_record(stress_dir or records_dir)
    if record is None:
        return None
    info = json.loads((records_dir / RUN_RECORD_FILE).read_text())
    predictions = pd.read_csv(records_dir / PREDICTIONS_FILE)
    test = predictions[predictions["subset"] == "test"]
    targets = pd.Series(test["target"].to_numpy(), index=test["path"].map(relpath_from_path))
    metrics = condition_metrics(record, targets, float(info["threshold"]["value"]))
    return metrics.assign(arch=info["arch"], seed=info["seed"])


def mean_interval(values: pd.Series, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and ``level`` t-interval of ``values`` (NaN bounds for a single value)."""
    values = values.dropna()
    mean, sd, count = values.mean(), values.std(), len(values)
    half_width = t.ppf(0.5 + level / 2, count - 1) * sd / np.sqrt(count) if count > 1 else np.nan
    return mean, mean - half_width, mean + half_width


def summarise_runs(per_run: Sequence[pd.DataFrame], level: float = 0.95) -> pd.DataFrame:
    """Per architecture, shift, strength and metric (in the records' order): replicates, mean and ``level``
    t-interval across the replicates (NaN bounds for one)."""
    frame = pd.concat(per_run, ignore_index=True)
    long = frame.melt(id_vars=["arch", "seed", *CONDITION], value_vars=list(METRICS), var_name="metric")
    rows = []
    for (arch, shift, strength, metric), group in long.groupby(["arch", *CONDITION, "metric"], sort=False):
        mean, low, high = mean_interval(group["value"], level)
        rows.append({"arch": arch, "shift": shift, "strength": strength, "metric": metric,
                     "replicates": int(group["seed"].nunique()), "mean": mean, "low": low, "high": high})
    return pd.DataFrame(rows)


def border_summary(record: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per class of a border record (``cxrlib.stress.border``), then all its images: how many, the share with black
    in the outer band (at least 1% of it) and with a frame, the share called PNEUMONIA as decoded, band-masked and
    frame-cropped, the mean change of the score under each, and the ROC-AUC of each version."""
    rows = []
    for label, group in [*((name, record[record["target"] == target]) for target, name in enumerate(CLASS_NAMES)),
                         ("all", record)]:
        both = group["target"].nunique() == 2
        rows.append({"images": label, "count": len(group), "black_in_band": (group["black_in_band"] >= 0.01).mean(),
                     "framed": group["framed"].mean(),
                     **{f"called{suffix}": predict_labels(group[f"prob{suffix}"], threshold).mean()
                        for suffix in BORDER_VERSIONS},
                     **{f"change{suffix}": (group[f"prob{suffix}"] - group["prob"]).mean()
                        for suffix in BORDER_VERSIONS[1:]},
                     **{f"roc_auc{suffix}": roc_auc_score(group["target"], group[f"prob{suffix}"]) if both else np.nan
                        for suffix in BORDER_VERSIONS}})
    return pd.DataFrame(rows)
