"""Report pages (index.html, comparison.html, the search report) from the Jinja2 templates in ``templates/``.

Every page shares one style and one header bar (``templates/nav.html.j2``, also used by the notebook reports);
tables come from ``cxrlib.report.format.display_table``. Paths are shown relative to the repository, or by what
they are when outside it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import jinja2
import pandas as pd
from PIL import Image

from cxrlib.contract import INDEX_PAGE, REPO_ROOT
from cxrlib.files import write_atomic
from cxrlib.report.format import display_table, transposed

TEMPLATES_DIR = Path(__file__).with_name("templates")
WIDE_TABLE_COLUMNS = 8  # more columns than this (and fewer rows than columns): show the table on its side

environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True,
                                 trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
WORD_JOINER = "\u2060"  # no line break here (after an en dash, where browsers may break)
NO_BREAK_SPACE = "\u00a0"


def keep_values_whole(cell) -> str:
    """A table cell's text with no-break spaces inside each value ("0.935 ± 0.023", "-0.01 to 0.02") and a word
    joiner after a range's en dash ("0.952–0.964"), so a narrow column breaks it only between a value and its
    interval."""
    text = str(cell)
    for joiner in ("±", "to"):
        text = text.replace(f" {joiner} ", f"{NO_BREAK_SPACE}{joiner}{NO_BREAK_SPACE}")
    return re.sub(r"(?<=\d)–(?=[\d−-])", f"–{WORD_JOINER}", text)


environment.filters["keep_values_whole"] = keep_values_whole


def shown_path(path: str | os.PathLike, outside: str | None = None) -> str:
    """``path`` relative to the repository; outside it ``outside`` (e.g. ``[runs dir]/cpu``), else its name."""
    resolved = Path(path).resolve()
    if resolved.is_relative_to(REPO_ROOT):
        return resolved.relative_to(REPO_ROOT).as_posix() or "."
    return outside or resolved.name


def render(template: str, **context) -> str:
    """A page from ``templates/<template>``."""
    return environment.get_template(template).render(**context)


def write_table_page(path: Path, frame: pd.DataFrame, title: str, downloads: dict[str, str], lead: str = "") -> Path:
    """A complete page showing ``frame`` (header bar back to the index, what it holds in ``lead``, links to the
    same table's files); a table much wider than long is shown on its side, one column per row of ``frame``."""
    table = display_table(frame)
    if len(table.headers) > WIDE_TABLE_COLUMNS and len(table.rows) < len(table.headers):
        table = transposed(table)
    nav = {"home": INDEX_PAGE, "profile": None, "previous": None, "next": None}
    return write_atomic(path, render("table.html.j2", title=title, table=table, nav=nav, downloads=downloads,
                                     lead=lead))


def shown_figure(path: Path) -> dict | None:
    """A saved figure as a page shows it: its file and its size in CSS pixels (half its pixels, as plots save at
    twice the shown resolution: SAVE_DPI), so a browser never shows it at double size; None when it is absent."""
    if not Path(path).is_file():
        return None
    with Image.open(path) as image:
        width, height = image.size
    return {"file": Path(path).name, "width": width // 2, "height": height // 2}
