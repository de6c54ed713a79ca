"""Writing a results table to disk as CSV, Markdown and a complete HTML page."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxrlib.runner.pages import write_table_page


def export_table(table: pd.DataFrame, out_dir: str | Path, stem: str, title: str | None = None) -> dict[str, Path]:
    """Write ``table`` as <stem>.csv, <stem>.md and <stem>.html in ``out_dir``; return the paths.

    The HTML is a styled page (``title``, default from ``stem``) with the reports' header bar back to index.html.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {kind: out_dir / f"{stem}.{kind}" for kind in ("csv", "md", "html")}
    table.to_csv(paths["csv"], index=False)
    paths["md"].write_text(table.to_markdown(index=False, floatfmt=".4g") + "\n")
    write_table_page(paths["html"], table, title or stem.replace("_", " ").capitalize(),
                     {"CSV": paths["csv"].name, "Markdown": paths["md"].name})
    return paths
