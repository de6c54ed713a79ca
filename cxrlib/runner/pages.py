"""Plain report pages (index.html, comparison.html) from the Jinja2 templates in ``templates/``.

Every page shares one style and one header bar (``templates/nav.html.j2``, also used by the notebook reports);
tables are shown with readable column names, intervals as ``0.912 (0.889–0.934)``, thousands separators and
dashes for undefined values. Paths are shown relative to the repository, or by what they are when outside it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd

from cxrlib.contract import REPO_ROOT
from cxrlib.report.format import DASH, NAMES, is_missing, model_title, with_interval

TEMPLATES_DIR = Path(__file__).with_name("templates")
CI_SUFFIXES = ("_ci_low", "_ci_high")
WIDE_TABLE_COLUMNS = 8  # more columns than this (and fewer rows than columns): show the table on its side
STATISTICS = {"mean": "mean", "sd": "SD", "min": "min", "max": "max"}  # across-seed summaries: <metric>_<statistic>

environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True,
                                 trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)


@dataclass(frozen=True)
class Table:
    """A table ready to show: column headers and rows of text."""

    headers: list[str]
    rows: list[list[str]]


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
    """One table cell: a dash when undefined, ``digits`` decimals (None: as an integer or as text)."""
    if is_missing(value) or value is pd.NA:
        return DASH
    if isinstance(value, (bool, str)):
        return str(value)
    if digits is None:  # an integer column, or a number in a column of mixed values
        return f"{int(value):,}" if float(value).is_integer() else f"{value:,.3f}"
    return f"{value:,.{digits}f}"


def display_table(frame: pd.DataFrame, columns: list[str] | None = None) -> Table:
    """``frame`` for reading: a metric and its ``_ci_low``/``_ci_high`` columns in one cell, models by title."""
    columns = [c for c in (columns or frame.columns) if c in frame and not c.endswith(CI_SUFFIXES)]
    digits = {column: column_digits(frame[column]) for column in columns}
    rows = []
    for record in frame.to_dict("records"):
        row = []
        for column in columns:
            value = record[column]
            low, high = (record.get(f"{column}{suffix}") for suffix in CI_SUFFIXES)
            if column == "model":
                row.append(model_title(value))
            elif f"{column}_ci_low" in record:
                row.append(with_interval(value, low, high))
            else:
                row.append(number_text(value, digits[column]))
        rows.append(row)
    return Table([column_label(c) for c in columns], rows)


def transposed(table: Table) -> Table:
    """``table`` turned on its side: one column per row (headed by its first cell), one row per column."""
    return Table(["", *(row[0] for row in table.rows)],
                 [[header, *(row[i] for row in table.rows)] for i, header in enumerate(table.headers) if i])


def shown_path(path: str | os.PathLike, outside: str | None = None) -> str:
    """``path`` relative to the repository; outside it ``outside`` (e.g. ``[runs dir]/cpu``), else its name."""
    resolved = Path(path).resolve()
    if resolved.is_relative_to(REPO_ROOT):
        return resolved.relative_to(REPO_ROOT).as_posix() or "."
    return outside or resolved.name


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
    return path


def render(template: str, **context) -> str:
    """A page from ``templates/<template>``."""
    return environment.get_template(template).render(**context)


def write_table_page(path: Path, frame: pd.DataFrame, title: str, downloads: dict[str, str]) -> Path:
    """A complete page showing ``frame`` (header bar back to ``index.html``, links to the same table's files);
    a table much wider than long is shown on its side, one column per row of ``frame``."""
    table = display_table(frame)
    if len(table.headers) > WIDE_TABLE_COLUMNS and len(table.rows) < len(table.headers):
        table = transposed(table)
    nav = {"home": "index.html", "profile": None, "previous": None, "next": None}
    return write_atomic(path, render("table.html.j2", title=title, table=table, nav=nav, downloads=downloads))
