"""Executed notebook -> code-free HTML report (nbconvert), made fit to publish.

Three preprocessors run on a copy of the executed notebook: ``ScrubPaths`` replaces the machine's folders
(staging, runs, data, home, repository) in every output by how a reader should see them; ``FigureAltText``
gives each figure an alt text from the heading it sits under; ``ShrinkFigures`` re-encodes large PNG figures
as JPEG at the size they are shown at, so a page stays small (figures come at twice that size, sharp on HiDPI
screens; a large one is mostly raster images, which gain little from the extra pixels). The ``templates/report``
nbconvert template adds the header bar (index, previous and next report) and writes the alt texts; it loads no
script from a CDN.
"""
from __future__ import annotations

import base64
import io
import os
import tempfile
from collections import Counter
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from nbconvert.preprocessors import Preprocessor
from PIL import Image
from traitlets import Dict

from cxrlib.contract import EXECUTED_DIR, INDEX_PAGE, REPO_ROOT, repo_relative
from cxrlib.files import write_atomic
from cxrlib.runner.notebooks import markdown_headings, notebook_title
from cxrlib.runner.pages import TEMPLATES_DIR

REPORT_TEMPLATE = "report"  # templates/report/: nbconvert's lab template plus the header bar and alt texts
TEXT_MIMETYPES = ("text/plain", "text/html", "text/markdown", "text/latex")
IMAGE_MIMETYPES = ("image/png", "image/jpeg")
LARGE_FIGURE_BYTES = 200_000  # PNG figures above this are re-encoded as JPEG when that is smaller
JPEG_QUALITY = 85


def scrub_map(folders: dict[str | os.PathLike, str]) -> dict[str, str]:
    """Text replacements for ``ScrubPaths``: each folder (as given, resolved, repo-relative) -> its shown form,
    then any other path in the repository relative to it, the home folder as ``~`` and the temp folder."""
    replacements = {}
    for folder, shown in folders.items():
        forms = {str(folder), str(Path(folder).resolve()), repo_relative(folder)}  # the last as notebooks print
        replacements.update({form: shown for form in forms if form != shown and form.strip("./")})
    replacements[f"{REPO_ROOT}/"] = ""
    replacements[str(REPO_ROOT)] = "."
    replacements[f"{Path.home()}/"] = "~/"
    replacements[f"{Path(tempfile.gettempdir()).resolve()}/"] = "[temp dir]/"
    return dict(sorted(replacements.items(), key=lambda item: -len(item[0])))


class ScrubPaths(Preprocessor):
    """Replace local folders in outputs and Markdown by their shown forms (``replacements``, longest first)."""

    replacements = Dict()

    def scrub(self, text: str) -> str:
        """``text`` with every replacement applied."""
        for old, new in self.replacements.items():
            text = text.replace(old, new)
        return text

    def preprocess_cell(self, cell, resources, index):
        """Scrub the cell's Markdown source and the text of its outputs, tracebacks included."""
        if cell.cell_type == "markdown":
            cell.source = self.scrub(cell.source)
        for output in cell.get("outputs", []):
            if "text" in output:
                output.text = self.scrub(output.text)
            for mimetype in TEXT_MIMETYPES:
                if isinstance(output.get("data", {}).get(mimetype), str):
                    output.data[mimetype] = self.scrub(output.data[mimetype])
            if output.output_type == "error":
                output.evalue = self.scrub(output.evalue)
                output.traceback = [self.scrub(line) for line in output.traceback]
        return cell, resources


class FigureAltText(Preprocessor):
    """Give every figure without one an alt text: ``Figure: <section heading> (<notebook title>)``."""

    def preprocess(self, nb, resources):
        """Walk cells and outputs in order, following the latest heading, and label the figures under it."""
        title = resources.get("title", "")
        section, seen = title, Counter()
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                section = next((text for _, text in reversed(markdown_headings(cell.source))), section)
            for output in cell.get("outputs", []):
                data = output.get("data", {})
                section = next((text for _, text in reversed(markdown_headings(data.get("text/markdown", "")))),
                               section)
                if any(mimetype in data for mimetype in IMAGE_MIMETYPES) and not output.metadata.get("alt"):
                    seen[section] += 1
                    number = f" {seen[section]}" if seen[section] > 1 else ""
                    where = section if section == title else f"{section} ({title})"
                    output.metadata["alt"] = f"Figure{number}: {where}"
        return nb, resources


def as_jpeg(png: bytes, width: int | None = None) -> bytes:
    """A PNG image as JPEG, transparency flattened onto white, scaled down to ``width`` pixels when it is wider."""
    image = Image.open(io.BytesIO(png))
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = Image.new("RGB", image.size, "white")
        background.paste(image, mask=image.getchannel("A"))
        image = background
    if width is not None and width < image.width:
        image = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return buffer.getvalue()


class ShrinkFigures(Preprocessor):
    """Re-encode PNG figures larger than ``LARGE_FIGURE_BYTES`` as JPEG, one pixel per pixel shown (the ``width``
    of their display metadata), when that is smaller."""

    def preprocess_cell(self, cell, resources, index):
        """Swap each large PNG output for its JPEG, keeping its display metadata (the size it is shown at)."""
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" not in data:
                continue
            png = base64.b64decode(data["image/png"])
            if len(png) <= LARGE_FIGURE_BYTES:
                continue
            metadata = output.get("metadata", {})
            jpeg = as_jpeg(png, metadata.get("image/png", {}).get("width"))
            if len(jpeg) < len(png):
                del data["image/png"]
                data["image/jpeg"] = base64.b64encode(jpeg).decode("ascii")
                if "image/png" in metadata:
                    metadata["image/jpeg"] = metadata.pop("image/png")
        return cell, resources


def render_report(executed: Path, html_path: Path, nav: dict, replacements: dict[str, str]) -> Path:
    """Render an executed notebook to a code-free HTML report with a header bar (``nav``), scrubbed paths."""
    exporter = HTMLExporter(template_name=REPORT_TEMPLATE, extra_template_basedirs=[str(TEMPLATES_DIR)],
                            extra_template_paths=[str(TEMPLATES_DIR)],  # the header bar shared with the pages
                            exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    for preprocessor in (ScrubPaths(replacements=replacements), FigureAltText(), ShrinkFigures()):
        exporter.register_preprocessor(preprocessor, enabled=True)
    title = notebook_title(executed)
    nb = nbformat.read(executed, as_version=4)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}, "title": title, "nav": nav})
    return write_atomic(html_path, body)


def render_all(report_dir: Path, profile: str, replacements: dict[str, str]) -> list[Path]:
    """Render every executed notebook in ``report_dir/executed/`` to ``report_dir``, linked in run order."""
    executed = sorted((report_dir / EXECUTED_DIR).glob("*.ipynb"))
    links = [{"href": f"{path.stem}.html", "title": notebook_title(path)} for path in executed]
    pages = []
    for position, path in enumerate(executed):
        nav = {"home": INDEX_PAGE, "profile": profile,
               "previous": links[position - 1] if position > 0 else None,
               "next": links[position + 1] if position + 1 < len(links) else None}
        pages.append(render_report(path, report_dir / f"{path.stem}.html", nav, replacements))
    return pages
