"""How reports show numbers and tables: one formatter for intervals, dashes for undefined values, readable names."""
from __future__ import annotations

import math

import pandas as pd

from cxrlib.backbones import title_of

DASH = "–"
# Column and metric names as a reader sees them.
NAMES = {
    "model": "model", "seed": "seed", "policy": "policy", "threshold": "threshold",
    "roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "accuracy": "accuracy", "sensitivity": "sensitivity",
    "specificity": "specificity", "ppv": "PPV", "npv": "NPV", "f1_macro": "macro F1", "macro_f1": "macro F1",
    "balanced_accuracy": "balanced accuracy", "brier": "Brier score", "ece": "calibration error (ECE)",
    "precision": "precision", "recall": "recall", "f1-score": "F1", "support": "images",
    "n_val": "validation images", "n_test": "test images", "difference": "difference", "p_value": "p-value",
    "roc_auc_sd": "ROC-AUC SD", "accuracy_sd": "accuracy SD",
    "name": "run", "macro_precision": "macro precision", "macro_recall": "macro recall",
    "threshold_policy": "threshold policy", "accuracy_at_0.5": "accuracy at 0.5",
    "sensitivity_at_0.5": "sensitivity at 0.5", "specificity_at_0.5": "specificity at 0.5",
    "params_total": "parameters", "params_trainable": "trainable parameters", "train_time_s": "training time (s)",
    "images_per_sec": "training images per second", "model_size_mb": "model size (MB)",
    "latency_ms": "latency, one image (ms)",
}
POLICY_NAMES = {"fixed": "fixed 0.5", "youden_midpoint": "Youden plateau midpoint", "youden": "Youden's J maximum",
                "sensitivity": "target sensitivity"}


def is_missing(value) -> bool:
    """True for None and NaN (values a report shows as a dash)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals, or a dash when it is undefined."""
    return DASH if is_missing(value) else f"{value:.{digits}f}"


def with_interval(value, low, high, digits: int = 3) -> str:
    """``0.912 (0.889–0.934)``; the bare value when the interval is undefined."""
    if is_missing(low) or is_missing(high):
        return number(value, digits)
    separator = " to " if low < 0 else "–"  # "-0.020–-0.002" would read as a subtraction
    return f"{number(value, digits)} ({number(low, digits)}{separator}{number(high, digits)})"


def mean_sd_range(mean, sd, low, high, digits: int = 3) -> str:
    """``0.912 ± 0.010 (0.901–0.925)`` across seeds; a single value when there is one seed (no SD)."""
    if is_missing(sd):
        return number(mean, digits)
    separator = " to " if low < 0 else "–"
    return f"{number(mean, digits)} ± {number(sd, digits)} ({number(low, digits)}{separator}{number(high, digits)})"


def p_value(value) -> str:
    """A p-value to two significant digits, ``< 0.001`` below that, a dash when undefined."""
    if is_missing(value):
        return DASH
    return "< 0.001" if value < 0.001 else f"{value:.2g}"


ENSEMBLE_TITLE = "ensemble (mean)"


def model_title(name: str) -> str:
    """How a report names a model: the registry's title (ResNet-50), the ensemble's, else the name as it is."""
    return ENSEMBLE_TITLE if name == "ensemble" else title_of(name)


def epoch_number(zero_based) -> int | str:
    """Keras logs count epochs from 1; run records count from 0. Reports use Keras' numbering."""
    return DASH if is_missing(zero_based) else int(zero_based) + 1


def readable(frame: pd.DataFrame, digits: int = 3) -> pd.io.formats.style.Styler:
    """A table for readers: known column names spelled out, a meaningful index shown as columns (a plain row
    number hidden), numbers rounded, blanks as dashes."""
    if not isinstance(frame.index, pd.RangeIndex):
        names = [name or "" for name in frame.index.names]
        shown_already = bool(set(names) & set(frame.columns))  # e.g. a "model" index beside a "model" column
        frame = frame.reset_index(drop=True) if shown_already else frame.reset_index(names=names)
    shown = frame.rename(columns=lambda column: NAMES.get(column, str(column).replace("_", " ")))
    if "model" in shown:
        shown = shown.assign(model=shown["model"].map(model_title))
    return (shown.style.hide(axis="index")
            .format(precision=digits, thousands=",", na_rep=DASH))
