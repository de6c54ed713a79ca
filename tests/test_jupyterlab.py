"""The README's JupyterLab path, driven in a real browser: notebooks 01 and 04 run all their cells with the
`cxr-compare` kernel and show no error (Playwright with the system Chromium; skipped with the reason without it).

The notebooks run from a temporary copy, so JupyterLab's saves never touch the committed source notebooks; 04
reads a copy of the committed study's records. A started JupyterLab gets no CXR_DATA_DIR: a notebook must find
the data the way run_all.sh would.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from cxrlib.contract import DATA_ENV_VAR, NOTEBOOKS_DIR, REPORTS_DIR
from helpers import CHROMIUM

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.realdata]
TOKEN = "cxr-test-token"
RUN_ALL_TIMEOUT_S = 1200


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, real_data_dir):
    """A JupyterLab server on 127.0.0.1 serving a copy of notebooks/ (with a copy of the study's records beside it)."""
    if not CHROMIUM:
        pytest.skip("no chromium binary (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(NOTEBOOKS_DIR, root / "notebooks")
    shutil.copytree(REPORTS_DIR / "cpu" / "runs", root / "study" / "runs")
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != DATA_ENV_VAR}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root / 'notebooks'}",
         "--LabApp.expose_app_in_browser=True", "--allow-root"],  # CI runs as root
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline and server.poll() is None:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2)
            break
        except OSError:
            time.sleep(1)
    else:
        server.kill()
        pytest.fail("JupyterLab did not start: " + server.communicate()[0][-3000:])
    yield base, root
    server.terminate()
    server.wait(timeout=30)


def set_parameters(path: Path, **values) -> None:
    """Change assignments in a notebook's parameters cell, as a user editing it would."""
    notebook = nbformat.read(path, as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    lines = cell.source.splitlines()
    for name, value in values.items():
        lines = [f"{name} = {value!r}" if line.split("=")[0].strip() == name else line for line in lines]
    cell.source = "\n".join(lines)
    nbformat.write(notebook, path)


def run_all_cells(base: str, root: Path, name: str) -> nbformat.NotebookNode:
    """Open a notebook in JupyterLab, run every cell with its kernel (up to the first error), save it, and return
    what was saved."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{base}/lab/tree/{name}?reset&token={TOKEN}")  # reset: not the tabs a previous test left open
        page.wait_for_function("name => { const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
                               " return widget && widget.context && widget.context.path === name"
                               " && widget.sessionContext.session && widget.sessionContext.session.kernel; }",
                               arg=name, timeout=120_000)
        kernel = page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.name")
        assert kernel == "cxr-compare", f"{name} opened with kernel {kernel!r}, not cxr-compare"
        # The command resolves when every cell ran, or at the first cell that raised (JupyterLab stops there).
        finished = page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_function(
            "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
            timeout=RUN_ALL_TIMEOUT_S * 1000, polling=2000)
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        browser.close()
    notebook = nbformat.read(root / "notebooks" / name, as_version=4)
    assert finished or errors_of(notebook), f"JupyterLab stopped running {name} without an error output"
    return notebook


def errors_of(notebook: nbformat.NotebookNode) -> list[str]:
    """The error outputs of every cell: exception name, value and the cell's first line."""
    return [f"{output.ename}: {output.evalue} (cell: {cell.source.splitlines()[0] if cell.source else ''})"
            for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.get("outputs", []) if output.output_type == "error"]


def test_notebook_01_runs_all_cells_in_jupyterlab_and_finds_the_data_without_cxr_data_dir(lab):
    base, root = lab
    notebook = run_all_cells(base, root, "01_data_exploration.ipynb")
    assert not errors_of(notebook), errors_of(notebook)
    text = json.dumps([cell.get("outputs", []) for cell in notebook.cells])
    assert "5,856" in text or "5856" in text, "notebook 01 did not index the full data set"


def test_notebook_04_runs_all_cells_in_jupyterlab_on_the_committed_study_records(lab):
    base, root = lab
    set_parameters(root / "notebooks" / "04_compare_models.ipynb", report_dir=str(root / "study"),
                   runs_dir=str(root / "no-models"), n_boot=200)
    notebook = run_all_cells(base, root, "04_compare_models.ipynb")
    assert not errors_of(notebook), errors_of(notebook)
    assert (root / "study" / "comparison.csv").is_file()
