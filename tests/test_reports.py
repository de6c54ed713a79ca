"""The smoke profile's rendered reports as a reader gets them: no local paths, no NaN, working links, header bars,
small pages, a quiet terminal; and (marked ``browser``) what headless Chromium makes of them."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from cxrlib.contract import REPO_ROOT

NOTEBOOK_REPORTS = ["01_data_exploration", "02_train_resnet50", "03_train_densenet121", "04_compare_models"]
MAX_PAGE_BYTES = 1_500_000
EMBEDDED = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=\s]+")
LINK = re.compile(r'(?:href|src)="([^"]+)"')
CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
                 if (path := shutil.which(name))), None)


def pages(reports: Path) -> list[Path]:
    """Every HTML page of the report tree (executed notebooks are not pages)."""
    return sorted(path for path in reports.rglob("*.html") if "executed" not in path.parts)


def readable_text(path: Path) -> str:
    """A page without its embedded images (base64 could contain any short string by chance)."""
    return EMBEDDED.sub("data:", path.read_text(encoding="utf-8"))


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
