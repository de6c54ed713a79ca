"""The smoke profile's rendered reports as a reader gets them: no local paths, no NaN, working links, header bars,
no CDN scripts, sharp figures, small pages, a quiet terminal; and (marked ``browser``) what headless Chromium makes
of them. A one-figure notebook rendered directly checks the scripts and the figure's pixels quickly."""
import base64
import io
import re
import subprocess
from pathlib import Path

import nbformat
import numpy as np
import pytest
from IPython.core.pylabtools import retina_figure  # what %config InlineBackend.figure_formats = ["retina"] installs
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from PIL import Image

from cxrlib import plots
from cxrlib.contract import REPO_ROOT
from cxrlib.runner import render
from helpers import CHROMIUM

NOTEBOOK_REPORTS = ["01_data_exploration", "02_train_resnet50", "03_train_densenet121", "04_compare_models"]
MAX_PAGE_BYTES = 2_500_000  # 04 shows the failure gallery, every replicate's curves and calibration (confirmatory: 2.2 MB)
EMBEDDED = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=\s]+")
LINK = re.compile(r'(?:href|src)="([^"]+)"')
FIGURE = re.compile(r'<img [^>]*src="data:image/(png|jpeg);base64,([^"]+)"[^>]*>')
CDN_SCRIPT = re.compile(r"<script[^>]*(?:mathjax|mermaid)|cdnjs|unpkg|jsdelivr", re.IGNORECASE)
def pages(reports: Path) -> list[Path]:
    """Every HTML page of the report tree (executed notebooks are not pages)."""
    return sorted(path for path in reports.rglob("*.html") if "executed" not in path.parts)


def readable_text(path: Path) -> str:
    """A page without its embedded images (base64 could contain any short string by chance)."""
    return EMBEDDED.sub("data:", path.read_text(encoding="utf-8"))


def figure_scales(page: str) -> list[tuple[str, float]]:
    """For each embedded figure of ``page``: its format and its pixel width over the width it is shown at (0 when
    none is set)."""
    scales = []
    for tag in FIGURE.finditer(page):
        pixels = Image.open(io.BytesIO(base64.b64decode(tag[2]))).width
        width = re.search(r' width="(\d+)"', tag[0])
        scales.append((tag[1], round(pixels / int(width[1]), 1) if width else 0))
    return scales


def test_a_rendered_report_loads_no_cdn_script_and_shows_its_figure_at_twice_its_pixels(tmp_path):
    figure, axes = plots.new_figure()
    axes[0, 0].plot([0, 1], [0, 1], label="a line")
    axes[0, 0].legend()
    png, size = retina_figure(figure, base64=True)
    shown = new_output("display_data", {"image/png": png, "text/plain": "<Figure>"}, metadata={"image/png": size})
    view = {"model_id": "bar", "version_major": 2, "version_minor": 0}  # a tqdm progress bar, as tqdm.auto draws it
    progress = new_output("display_data", {"application/vnd.jupyter.widget-view+json": view, "text/plain": "0%|"})
    notebook = new_notebook(cells=[new_markdown_cell("# A report"),
                                   new_code_cell("plot", outputs=[progress, shown])])
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "state": {"bar": {"model_name": "FloatProgressModel", "state": {}}}, "version_major": 2, "version_minor": 0}}
    nbformat.write(notebook, tmp_path / "01_a.ipynb")
    nav = {"home": "index.html", "profile": "p", "previous": None, "next": None}
    html = render.render_report(tmp_path / "01_a.ipynb", tmp_path / "01_a.html", nav, {})
    assert not CDN_SCRIPT.search(readable_text(html)) and "widget-view" not in readable_text(html)
    assert figure_scales(html.read_text()) == [("png", 2.0)]


def test_a_large_figure_becomes_a_jpeg_of_the_size_it_is_shown_at():
    noise = np.random.default_rng(0).integers(0, 255, (400, 600, 3), dtype=np.uint8)  # a 2x figure of 300 x 200
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    assert len(buffer.getvalue()) > render.LARGE_FIGURE_BYTES
    cell = new_code_cell("x", outputs=[new_output("display_data", {"image/png": base64.b64encode(buffer.getvalue())
                                                                  .decode()}, metadata={"image/png": {"width": 300}})])
    render.ShrinkFigures().preprocess_cell(cell, {}, 0)
    (output,) = cell.outputs
    assert list(output.data) == ["image/jpeg"] and output.metadata == {"image/jpeg": {"width": 300}}
    assert Image.open(io.BytesIO(base64.b64decode(output.data["image/jpeg"]))).size == (300, 200)


@pytest.mark.slow
def test_no_page_shows_a_local_path_a_staging_folder_or_nan(smoke_result):
    forbidden = [str(REPO_ROOT.parent) + "/", str(Path.home()) + "/", str(smoke_result.tmp), ".staging", "NaN"]
    for path in [*pages(smoke_result.reports), smoke_result.reports / "runner.json"]:
        text = readable_text(path)
        found = [word for word in forbidden if word in text]
        assert not found, f"{path.name} shows {found}"
        assert not re.search(r">\s*nan\s*<", text), f"{path.name} shows a nan cell"


@pytest.mark.slow
def test_every_local_link_resolves(smoke_result):
    for path in pages(smoke_result.reports):
        for link in LINK.findall(readable_text(path)):
            if link.startswith(("http:", "https:", "data:", "#", "mailto:")):
                continue
            target = (path.parent / link.split("#")[0]).resolve()
            assert target.exists(), f"{path.name} links to {link}, which does not exist"


@pytest.mark.slow
def test_every_page_has_a_header_bar_linking_the_reports_in_order(smoke_result):
    reports = smoke_result.reports
    for position, stem in enumerate(NOTEBOOK_REPORTS):
        page = (reports / f"{stem}.html").read_text(encoding="utf-8")
        assert 'class="cxr-bar"' in page and 'href="index.html"' in page, stem
        if position:
            assert f'href="{NOTEBOOK_REPORTS[position - 1]}.html" rel="prev"' in page, stem
        if position + 1 < len(NOTEBOOK_REPORTS):
            assert f'href="{NOTEBOOK_REPORTS[position + 1]}.html" rel="next"' in page, stem
        assert "No description has been provided" not in page, f"{stem}: a figure without alt text"
    for name in ("index.html", "comparison.html"):
        if (reports / name).is_file():
            assert 'class="cxr-bar"' in (reports / name).read_text(encoding="utf-8"), name


@pytest.mark.slow
def test_no_page_loads_a_cdn_script(smoke_result):
    for path in pages(smoke_result.reports):
        assert not CDN_SCRIPT.search(readable_text(path)), f"{path.name} loads a script from a CDN"


@pytest.mark.slow
@pytest.mark.parametrize("stem", NOTEBOOK_REPORTS)
def test_notebook_figures_carry_twice_the_pixels_they_are_shown_at(smoke_result, stem):
    scales = figure_scales((smoke_result.reports / f"{stem}.html").read_text(encoding="utf-8"))
    expected = {"png": 2.0, "jpeg": 1.0}  # a figure too large as PNG is a JPEG of the size it is shown at
    assert scales and all(scale == expected[kind] for kind, scale in scales), f"{stem}: {scales}"


@pytest.mark.slow
def test_pages_stay_small(smoke_result):
    sizes = {path.name: path.stat().st_size for path in pages(smoke_result.reports)}
    assert max(sizes.values()) < MAX_PAGE_BYTES, sizes


@pytest.mark.slow
def test_the_terminal_shows_progress_and_the_log_keeps_the_rest(smoke_result):
    screen, log = smoke_result.console, (smoke_result.reports / "run.log").read_text()
    for position, stem in enumerate(NOTEBOOK_REPORTS, 1):
        assert f"[{position}/4] {stem}  done in" in screen
    for noise in ("Executing Cell", "Input Notebook", "without encryption", "absl::InitializeLog", "port.cc"):
        assert noise not in screen, f"the terminal shows {noise!r}"
    assert "Executing Cell" in log and "expected duration" in screen and "run.log" in screen


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 2400) -> Image.Image:
    """``page`` rendered by headless Chromium to a PNG."""
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={out}", f"--window-size={width},{height}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    return Image.open(out)


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary found (apt-get install chromium)")
@pytest.mark.parametrize("name", ["index.html", "02_train_resnet50.html"])
def test_pages_render_in_a_browser(smoke_result, tmp_path, name):
    image = screenshot(smoke_result.reports / name, tmp_path / f"{name}.png").convert("L")
    assert image.size == (1280, 2400)
    histogram = image.histogram()
    dark = sum(histogram[:128]) / sum(histogram)
    assert 0.005 < dark < 0.5, f"{name}: {dark:.1%} dark pixels: blank or broken page?"
    shades = sum(1 for count in image.resize((64, 120)).histogram() if count)
    assert shades > 20, f"{name} shows {shades} shades of grey: a blank page?"


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary found (apt-get install chromium)")
def test_no_page_scrolls_sideways_on_a_phone(smoke_result):
    """At 390 px (a phone) wide tables scroll inside their own box; the page itself, header bar included, never
    grows wider than the window."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 390, "height": 800})
        widths = {}
        for report in pages(smoke_result.reports):
            page.goto(report.as_uri())
            widths[report.name] = page.evaluate("() => document.documentElement.scrollWidth")
        browser.close()
    assert widths and all(width <= 390 for width in widths.values()), widths
