"""How reports show numbers and tables, in notebooks and on pages alike: readable names, intervals in one cell,
digits that read alike down a column, thousands separators and dashes for undefined values."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import pandas as pd
import yaml

from cxrlib.backbones import title_of
from cxrlib.contract import ARCHS as ARCH_NAMES, ENSEMBLE, HEADLINE_METRICS

DASH = "–"
IDENTIFIER_COLUMNS = ("seed", "split seed")  # numbers that name a replicate: shown without separators
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
STATISTICS = {"mean": "mean", "sd": "SD", "min": "min", "max": "max"}  # across-seed summaries: <metric>_<statistic>
CI_SUFFIXES = ("_ci_low", "_ci_high")
POLICY_NAMES = {"fixed": "fixed 0.5", "youden_midpoint": "Youden plateau midpoint", "youden": "Youden's J maximum",
                "sensitivity": "target sensitivity"}


def is_missing(value) -> bool:
    """True for None and NaN (values a report shows as a dash)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def minus(text: str) -> str:
    """A formatted number with a typographic minus (−0.006, not -0.006) and no sign on a rounded zero (−0.000)."""
    text = text.replace("-", "−")
    return text[1:] if text.startswith("−") and not text.strip("−0.,") else text


def number(value, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals (a minus sign, never −0.000), or a dash when it is undefined."""
    return DASH if is_missing(value) else minus(f"{value:.{digits}f}")


def percent(value, digits: int = 1) -> str:
    """A share 0..1 as a percentage, ``0.743`` -> ``74.3%``, or a dash when it is undefined."""
    return DASH if is_missing(value) else f"{100 * value:.{digits}f}%"


def with_interval(value, low, high, digits: int = 3) -> str:
    """``0.912 (0.889–0.934)``; the bare value when the interval is undefined."""
    if is_missing(low) or is_missing(high):
        return number(value, digits)
    separator = " to " if low < 0 else "–"  # "-0.020–-0.002" would read as a subtraction
    return f"{number(value, digits)} ({number(low, digits)}{separator}{number(high, digits)})"


def mean_sd_range(mean, sd, low, high, digits: int = 3) -> str:
    """``0.912 ± 0.010 (0.901–0.925)`` across seeds; a single value when there is one seed (no SD) or when every
    seed gave the same value."""
    if is_missing(sd) or (sd == 0 and low == high):
        return number(mean, digits)
    separator = " to " if low < 0 else "–"
    return f"{number(mean, digits)} ± {number(sd, digits)} ({number(low, digits)}{separator}{number(high, digits)})"


def value_text(value) -> str:
    """A parameter value as a profile file (and ``--set``) writes it: ``null``, ``true``, ``[1, 2]``, ``0.001``."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


# How a reader reads a setting's value where the profile file says null, true or a backbone's weights.
SETTING_WORDS = {("weights", None): "none (from scratch)", ("weights", "imagenet"): "ImageNet",
                 ("subsample_per_class", None): "all images", ("split_seed", None): "the replicate's seed",
                 ("focus_seed", None): "the smallest seed", ("study", None): "none", ("data_dir", None): "found by cxrlib"}


def setting_text(name: str, value) -> str:
    """A setting's value in words for a page (the profile file keeps the exact value): ``none (from scratch)``
    for ``weights: null``, yes/no, three significant figures, ``fixed 0.5``; lists and recipes spelled out."""
    if isinstance(value, (str, type(None))) and (name, value) in SETTING_WORDS:
        return SETTING_WORDS[(name, value)]
    if name == "threshold_policy" and value in POLICY_NAMES:
        return POLICY_NAMES[value]
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(setting_text(name, item) for item in value)
    if isinstance(value, dict):
        return "; ".join(f"{model_title(key) if key in ARCH_NAMES else column_label(key).lower()}: "
                         + (", ".join(f"{column_label(inner).lower()} {setting_text(inner, item_value)}"
                                      for inner, item_value in item.items()) if isinstance(item, dict)
                            else setting_text(key, item)) for key, item in value.items())
    return str(value).replace("_", " ")


def parameters_text(params: dict) -> str:
    """Parameters as one line of ``name=value`` pairs, each as ``--set`` accepts it."""
    return ", ".join(f"{name}={value_text(value)}" for name, value in params.items())


def p_value(value) -> str:
    """A p-value to two significant digits, ``< 0.001`` below that and ``> 0.99`` above (never a bare 1), a dash
    when undefined."""
    if is_missing(value):
        return DASH
    return "< 0.001" if value < 0.001 else "> 0.99" if value > 0.99 else f"{value:.2g}"


ENSEMBLE_TITLE = "ensemble (mean)"


def model_title(name: str) -> str:
    """How a report names a model: the registry's title (ResNet-50), the ensemble's, else the name as it is."""
    return ENSEMBLE_TITLE if name == ENSEMBLE else title_of(name)


def epoch_number(zero_based) -> int | str:
    """Keras logs count epochs from 1; run records count from 0. Reports use Keras' numbering."""
    return DASH if is_missing(zero_based) else int(zero_based) + 1


def column_label(name) -> str:
    """A column name as a reader sees it: ``roc_auc`` -> ``ROC-AUC``, ``sensitivity_sd`` -> ``Sensitivity SD``."""
    name = str(name)
    base, _, statistic = name.rpartition("_")
    if name not in NAMES and base in NAMES and statistic in STATISTICS:
        label = f"{NAMES[base]} {STATISTICS[statistic]}"
    else:
        label = NAMES.get(name, name.replace("_", " "))
    return label[:1].upper() + label[1:]


def column_digits(values: pd.Series) -> int | None:
    """Decimals for a column of numbers: None (whole numbers with separators) for integer columns, else 3 below
    10, 2 below 1,000 and 0 above, by the column's largest value, so that a column reads alike."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if not numeric or pd.api.types.is_integer_dtype(values):
        return None
    largest = values.abs().max()
    if pd.isna(largest) or largest < 10:
        return 3
    return 2 if largest < 1000 else 0


def number_text(value, digits: int | None) -> str:
    """One table cell: a dash when undefined, ``digits`` decimals (None: as an integer), anything else as text."""
    if value is pd.NA or is_missing(value):
        return DASH
    if isinstance(value, (bool, str)) or not isinstance(value, numbers.Real):
        return str(value)
    if digits is None:  # an integer column, or a number in a column of mixed values
        return minus(f"{int(value):,}" if float(value).is_integer() else f"{value:,.3f}")
    return minus(f"{value:,.{digits}f}")


@dataclass(frozen=True)
class Table:
    """A table ready to show: column headers and rows of text."""

    headers: list[str]
    rows: list[list[str]]


def display_table(frame: pd.DataFrame, columns: list[str] | None = None, digits: int | None = None,
                  percent_columns: tuple = ()) -> Table:
    """``frame`` for reading: a metric and its ``_ci_low``/``_ci_high`` columns in one cell, models by title,
    fractional numbers with ``digits`` decimals (None: by each column's size, ``column_digits``), shares in
    ``percent_columns`` as percentages (``percent``)."""
    columns = [c for c in (columns or frame.columns) if c in frame and not str(c).endswith(CI_SUFFIXES)]
    column_decimals = {column: column_digits(frame[column]) for column in columns}
    if digits is not None:
        column_decimals = {column: None if shown is None else digits for column, shown in column_decimals.items()}
    rows = []
    for record in frame.to_dict("records"):
        row = []
        for column in columns:
            value = record[column]
            low, high = (record.get(f"{column}{suffix}") for suffix in CI_SUFFIXES)
            if column == "model":
                row.append(model_title(value))
            elif column in percent_columns:
                row.append(percent(value))
            elif column in IDENTIFIER_COLUMNS and not is_missing(value):
                row.append(str(int(value)))
            elif f"{column}_ci_low" in record:
                row.append(with_interval(value, low, high, 3 if digits is None else digits))
            else:
                row.append(number_text(value, column_decimals[column]))
        rows.append(row)
    return Table([column_label(c) for c in columns], rows)


def markdown_table(frame: pd.DataFrame) -> str:
    """``display_table`` of ``frame`` as a Markdown (pipe) table: cells exactly as the pages show them."""
    table = display_table(frame)
    return pd.DataFrame(table.rows, columns=table.headers).to_markdown(index=False, disable_numparse=True)


def transposed(table: Table) -> Table:
    """``table`` turned on its side: one column per row (headed by its first cell), one row per column."""
    return Table(["", *(row[0] for row in table.rows)],
                 [[header, *(row[i] for row in table.rows)] for i, header in enumerate(table.headers) if i])


def readable(frame: pd.DataFrame, digits: int | None = None, percent_columns: tuple = ()) -> pd.io.formats.style.Styler:
    """``display_table`` of ``frame`` for a notebook: a meaningful index shown as columns (a plain row number
    hidden), shares in ``percent_columns`` as percentages."""
    if not isinstance(frame.index, pd.RangeIndex):
        names = [name or "" for name in frame.index.names]
        shown_already = bool(set(names) & set(frame.columns))  # e.g. a "model" index beside a "model" column
        frame = frame.reset_index(drop=True) if shown_already else frame.reset_index(names=names)
    table = display_table(frame, digits=digits, percent_columns=tuple(percent_columns))
    return pd.DataFrame(table.rows, columns=table.headers).style.hide(axis="index")


def headline_table(comparison: pd.DataFrame) -> pd.DataFrame:
    """comparison.csv for readers: per model, each headline metric and the threshold as mean ± SD (min–max)
    across seeds."""
    shown = pd.DataFrame({"model": comparison["model"], "seeds": comparison["seeds"]})
    for metric in (*HEADLINE_METRICS, "threshold"):
        shown[metric] = [mean_sd_range(*row) for row in
                         comparison[[f"{metric}_{stat}" for stat in STATISTICS]].to_numpy()]
    return shown


def without_constant_columns(table: Table, keep: tuple[str, ...] = ("Model",)) -> tuple[Table, str]:
    """``table`` without the columns that read the same in every row (a column of 0.500 thresholds tells nothing
    row by row), and a sentence naming them with their value; tables of one row are left as they are."""
    constant = [i for i, header in enumerate(table.headers) if header not in keep and len(table.rows) > 1
                and len({row[i] for row in table.rows}) == 1]
    shown = Table([h for i, h in enumerate(table.headers) if i not in constant],
                  [[cell for i, cell in enumerate(row) if i not in constant] for row in table.rows])
    sentence = "; ".join(f"{table.headers[i].lower() if table.headers[i][1:].islower() else table.headers[i]} "
                         f"{table.rows[0][i]}" for i in constant)
    return shown, (f"The same in every row: {sentence}." if sentence else "")


def table_record(frame: pd.DataFrame) -> dict:
    """A table as the index shows it: readable headers and cells (``display_table``), JSON-ready."""
    table = display_table(frame)
    return {"headers": list(table.headers), "rows": [list(row) for row in table.rows]}
