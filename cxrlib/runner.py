"""Batch runner behind ``run_all.sh``: execute the notebooks of one profile with papermill, render HTML.

``python -m cxrlib.runner [--profile NAME|FILE] [--only 02 ...] [--reports-dir DIR] [--runs-dir DIR]``
writes executed notebooks to ``<reports>/<profile>/executed/``, code-free HTML reports and an
``index.html`` to ``<reports>/<profile>/``. ``python -m cxrlib.runner --strip`` removes outputs from
the source notebooks before they are committed.

A failed run never replaces an earlier successful one: reports are built in
``<reports>/<profile>.staging/`` and swapped in on success (moved to ``<profile>-failed/`` on failure);
the run directories a training notebook replaces (``<runs>/<profile>/<arch>``) are moved aside to
``<runs>/<profile>.previous/`` and restored if the run fails (the failed ones go to ``<profile>-failed/``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import logging
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pandas as pd
import papermill
import psutil
import yaml
from jupyter_client.kernelspec import KernelSpecManager
from nbconvert import HTMLExporter
from papermill.exceptions import PapermillExecutionError

from cxrlib.params import ParameterError, check

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PROFILES_DIR = REPO_ROOT / "profiles"
KERNEL_NAME = os.environ.get("CXR_KERNEL", "cxr-compare")
RUNNER_SET = ("profile", "runs_dir", "report_dir")  # parameters the runner injects; profiles must not set them
# C-level output (TensorFlow's C++ logs) goes to this runner's terminal log instead of into the reports.
KERNEL_ARGUMENTS = ["--IPKernelApp.capture_fd_output=False"]
TRAIN_NOTEBOOK = re.compile(r"^\d\d_train_(\w+)\.ipynb$")  # 02_train_resnet50.ipynb writes runs/<profile>/resnet50
METRICS = ("accuracy", "roc_auc", "sensitivity", "specificity", "macro_f1")

log = logging.getLogger("cxrlib.runner")


class RunError(RuntimeError):
    """A run cannot start or did not finish; the message says which file or notebook and what to do."""


# --- profiles and notebooks -------------------------------------------------------------------------

def profile_path(name_or_file: str) -> Path:
    """``profiles/<name>.yaml`` for a bare name, else the given YAML file."""
    path = Path(name_or_file)
    if path.suffix not in (".yaml", ".yml"):
        path = PROFILES_DIR / f"{name_or_file}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
        raise RunError(f"profile {name_or_file!r} not found at {path}; use one of: {known}, or a YAML file path")
    return path.resolve()


def parse_overrides(items: list[str] | None) -> dict:
    """``--set KEY=VALUE`` arguments as a dict, each value read as YAML (``seed=43`` is the integer 43)."""
    overrides = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RunError(f"--set {item!r}: expected KEY=VALUE, e.g. --set seed=43")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise RunError(f"--set {item!r}: the value is not valid YAML: {err}") from err
    return overrides


def load_profile(path: Path, overrides: dict | None = None) -> dict:
    """The parameters of a profile file, with ``overrides`` applied, checked against ``cxrlib.params``."""
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise RunError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(params, dict):
        raise RunError(f"{path} must be a mapping of parameter: value, got {type(params).__name__}")
    source = f"{path} or the --set values {overrides}" if overrides else str(path)
    params = {**params, **(overrides or {})}
    runner_set = sorted(set(params) & set(RUNNER_SET))
    if runner_set:
        raise RunError(f"{source} sets {runner_set}: the runner sets these (profile = file name; "
                       "use --runs-dir / --reports-dir to move runs and reports)")
    try:
        return check(params, source=source)
    except ParameterError as err:
        raise RunError(str(err)) from err


def select_notebooks(only: list[str] | None) -> list[Path]:
    """The numbered notebooks in run order, limited to names starting with any of ``only``."""
    notebooks = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not only:
        return notebooks
    chosen = [nb for nb in notebooks if any(nb.name.startswith(prefix) for prefix in only)]
    if not chosen:
        raise RunError(f"--only {' '.join(only)} matches no notebook in {NOTEBOOKS_DIR}: "
                       f"{', '.join(nb.name for nb in notebooks)}")
    return chosen


def declared_parameters(notebook: Path) -> set[str]:
    """Names declared in the notebook's cell tagged ``parameters``."""
    return set(papermill.inspect_notebook(str(notebook)))


def parameters_for(notebook: Path, profile_params: dict, runner_params: dict) -> dict:
    """The profile and runner values this notebook declares (papermill injects only these)."""
    wanted = declared_parameters(notebook)
    values = {**profile_params, **runner_params}
    return {name: value for name, value in values.items() if name in wanted}


def check_profile_is_used(profile_params: dict, profile_file: Path) -> None:
    """Fail when a profile sets a parameter that no notebook declares (it would be silently ignored)."""
    declared = set().union(*(declared_parameters(nb) for nb in select_notebooks(None)))
    unused = sorted(set(profile_params) - declared)
    if unused:
        raise RunError(f"{profile_file} sets {unused}, which no notebook declares; remove them")


def check_kernel() -> None:
    """Fail early with the fix when the project's Jupyter kernel is not registered."""
    if KERNEL_NAME not in KernelSpecManager().find_kernel_specs():
        raise RunError(f"Jupyter kernel {KERNEL_NAME!r} is not registered; run `source scripts/ensure_env.sh` "
                       f"or `python -m ipykernel install --sys-prefix --name {KERNEL_NAME}`")


def imagenet_weights_available(timeout: float = 3.0) -> bool:
    """True when both backbones' ImageNet weights are in the Keras cache or their download host answers."""
    from cxrlib.models import IMAGENET_WEIGHTS, keras_models_dir  # imports TensorFlow: only when needed

    if all((keras_models_dir() / file_name).is_file() for _, file_name, _ in IMAGENET_WEIGHTS.values()):
        return True
    hosts = {urlparse(base_url).hostname for base_url, _, _ in IMAGENET_WEIGHTS.values()}
    try:
        for host in hosts:
            socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def default_profile() -> str:
    """``full`` when ImageNet weights can be had, else ``cpu`` (announced loudly)."""
    if imagenet_weights_available():
        return "full"
    banner = "!" * 78
    log.warning(f"{banner}\n!! ImageNet weights are neither in the Keras cache (~/.keras/models) nor "
                f"downloadable.\n!! Running profile 'cpu' (from scratch, reduced resolution) "
                f"instead of 'full'.\n!! Its numbers are NOT the study's protocol. Pass --profile to "
                f"choose explicitly.\n{banner}")
    return "cpu"


# --- notebooks: strip, execute, render -----------------------------------------------------------------

def strip_notebook(nb: nbformat.NotebookNode) -> bool:
    """Remove outputs, execution counts and execution metadata in place; True if anything changed."""
    before = nbformat.writes(nb)
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nbformat.writes(nb) != before


def strip_notebooks(paths: list[Path]) -> list[Path]:
    """Strip every notebook in ``paths`` on disk; return those that changed."""
    changed = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if strip_notebook(nb):
            nbformat.write(nb, path)
            changed.append(path)
    return changed


def render_html(executed: Path, html_path: Path) -> None:
    """Render an executed notebook to HTML without code (readers see markdown and outputs only)."""
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    nb = nbformat.read(executed, as_version=4)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": html_path.stem}})
    html_path.write_text(body, encoding="utf-8")


def describe_failure(notebook: Path, err: Exception) -> str:
    """Name the notebook, the failing cell and the error."""
    if isinstance(err, PapermillExecutionError):
        first_line = next((line for line in err.source.splitlines() if line.strip()), "")
        return (f"notebook {notebook.name} failed in cell In [{err.exec_count}] (cell #{err.cell_index} "
                f"of the executed notebook, starting {first_line!r}):\n{err.ename}: {err.evalue}")
    return f"notebook {notebook.name} did not finish: {type(err).__name__}: {err}"


class PeakMemory:
    """Sample the resident memory of this process and its children (the kernels) in the background."""

    def __init__(self, interval: float = 0.5):
        self.interval, self.peak_bytes = interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        """Peak total resident memory in MB (at least the largest single finished child's peak)."""
        largest_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        return max(self.peak_bytes, largest_child) / 2**20


# --- run directories and report directories ------------------------------------------------------------

class RunsGuard:
    """Move aside the run directories the training notebooks will replace; restore them on failure."""

    def __init__(self, runs_dir: Path, archs: list[str]):
        self.live, self.archs = runs_dir, archs
        self.previous = runs_dir.with_name(runs_dir.name + ".previous")
        self.failed = runs_dir.with_name(runs_dir.name + "-failed")

    def recover(self) -> None:
        """Put back run directories left aside by an interrupted earlier run."""
        if self.previous.exists():
            log.warning(f"restoring run directories left in {self.previous} by an interrupted run")
            self._restore()

    def _restore(self) -> None:
        for kept in self.previous.iterdir():
            shutil.rmtree(self.live / kept.name, ignore_errors=True)
            self.live.mkdir(parents=True, exist_ok=True)
            kept.rename(self.live / kept.name)
        self.previous.rmdir()

    def begin(self) -> None:
        """Move the existing run directories of the selected architectures aside."""
        self.recover()
        for arch in self.archs:
            if (self.live / arch).exists():
                self.previous.mkdir(parents=True, exist_ok=True)
                (self.live / arch).rename(self.previous / arch)

    def commit(self) -> None:
        """The run succeeded: drop the old run directories."""
        shutil.rmtree(self.previous, ignore_errors=True)

    def rollback(self) -> None:
        """The run failed: move its run directories to ``-failed`` and restore the previous ones."""
        shutil.rmtree(self.failed, ignore_errors=True)
        for arch in self.archs:
            if (self.live / arch).exists():
                self.failed.mkdir(parents=True, exist_ok=True)
                (self.live / arch).rename(self.failed / arch)
        if self.previous.exists():
            self._restore()


def start_staging(final: Path) -> Path:
    """A fresh staging copy of the report directory (keeps reports of notebooks not run this time)."""
    staging = final.with_name(final.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    if final.exists():
        shutil.copytree(final, staging)
    (staging / "executed").mkdir(parents=True, exist_ok=True)
    return staging


def replace_dir(source: Path, target: Path) -> None:
    """Move ``source`` to ``target``, replacing it; the old ``target`` is deleted only after the move."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    source.rename(target)
    shutil.rmtree(old, ignore_errors=True)


# --- index.html ----------------------------------------------------------------------------------------

def git_commit() -> str:
    """The repository's commit (``-dirty`` if tracked files differ from it), or 'unknown'; taken when a run starts."""
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit or "unknown"


def headline_table(csv_path: Path) -> str:
    """The comparison table as HTML, metrics with their 95% CI ("0.912 (0.889–0.934)")."""
    if not csv_path.is_file():
        return "<p>No comparison yet: run <code>04_compare_models</code> for this profile.</p>"
    table = pd.read_csv(csv_path)
    shown = pd.DataFrame({"model": table["model"]})
    for metric in (*METRICS, "threshold"):
        if metric not in table:
            continue
        low, high = f"{metric}_ci_low", f"{metric}_ci_high"
        if low in table and high in table:
            shown[metric] = [f"{v:.3f} ({lo:.3f}–{hi:.3f})"
                             for v, lo, hi in zip(table[metric], table[low], table[high])]
        else:
            shown[metric] = table[metric].map("{:.3f}".format)
    return shown.to_html(index=False, classes="comparison", border=0)


def profile_description(profile_file: Path) -> str:
    """The comment lines at the top of a profile file (what the profile is for)."""
    lines = []
    for line in Path(profile_file).read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# "))
    return " ".join(lines)


def comparison_is_stale(notebooks: dict) -> bool:
    """True when a training notebook finished after the comparison notebook last ran (e.g. after --only 02)."""
    compared = [info["finished"] for name, info in notebooks.items() if "compare" in name]
    trained = [info["finished"] for name, info in notebooks.items() if TRAIN_NOTEBOOK.match(f"{name}.ipynb")]
    return bool(compared and trained) and max(trained) > max(compared)


def write_index(report_dir: Path, summary: dict) -> None:
    """Write ``index.html``: links to every report, the headline comparison table, run facts."""
    rows = "".join(
        f"<tr><td><a href='{html.escape(name)}.html'>{html.escape(name)}</a></td>"
        f"<td>{info['seconds'] / 60:.1f} min</td><td>{html.escape(info['finished'])}</td></tr>"
        for name, info in sorted(summary["notebooks"].items()))
    params = "".join(f"<tr><td>{html.escape(k)}</td><td><code>{html.escape(repr(v))}</code></td></tr>"
                     for k, v in summary["parameters"].items())
    notes = [summary["note"]] if summary.get("note") else []
    if comparison_is_stale(summary["notebooks"]):
        notes.append("A model was retrained after the comparison was made: the comparison below is out of date; "
                     "re-run it with --only 04.")
    note = "".join(f"<p class='note'>{html.escape(text)}</p>" for text in notes)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>cxr-compare: {html.escape(summary['profile'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }} td, th {{ padding: .3rem .8rem; border-bottom: 1px solid #ddd; }}
th {{ text-align: left; }} .note {{ background: #fff3cd; padding: .6rem 1rem; border-left: 4px solid #e0a800; }}
</style></head><body>
<h1>cxr-compare reports: profile <code>{html.escape(summary['profile'])}</code></h1>
<p>{html.escape(profile_description(summary["profile_file"]))}</p>
{note}
<h2>Headline comparison (test set, 95% bootstrap CI)</h2>
{headline_table(report_dir / "comparison.csv")}
<p>Full table: <a href="comparison.csv">comparison.csv</a>; details and caveats in the
<a href="04_compare_models.html">comparison report</a>.</p>
<h2>Reports</h2>
<table><tr><th>notebook</th><th>run time</th><th>finished</th></tr>{rows}</table>
<h2>This run</h2>
<table>
<tr><td>notebooks run</td><td>{html.escape(", ".join(summary["ran"]))}</td></tr>
<tr><td>wall time</td><td>{summary["wall_seconds"] / 60:.1f} min</td></tr>
<tr><td>peak memory (runner + kernels)</td><td>{summary["peak_memory_mb"]:.0f} MB</td></tr>
<tr><td>started</td><td>{html.escape(summary["started"])}</td></tr>
<tr><td>code version</td><td><code>{html.escape(summary["commit"])}</code></td></tr>
<tr><td>CPU cores</td><td>{os.cpu_count()}</td></tr>
<tr><td>profile file</td><td><code>{html.escape(summary["profile_file"])}</code></td></tr>
<tr><td>changed with --set</td><td><code>{html.escape(repr(summary.get("overrides") or "nothing"))}</code></td></tr>
</table>
<h2>Profile parameters</h2>
<table>{params}</table>
</body></html>
"""
    (report_dir / "index.html").write_text(page, encoding="utf-8")


# --- the run -------------------------------------------------------------------------------------------

def run_profile(profile: str, only: list[str] | None, reports_dir: Path, runs_dir: Path, note: str = "",
                overrides: dict | None = None) -> Path:
    """Execute the selected notebooks of ``profile`` (``overrides`` replace its values); return the report dir."""
    check_kernel()
    profile_file = profile_path(profile)
    name = profile_file.stem
    profile_params = load_profile(profile_file, overrides)
    check_profile_is_used(profile_params, profile_file)
    notebooks = select_notebooks(only)

    final, failed = reports_dir / name, reports_dir / f"{name}-failed"
    runs = RunsGuard((runs_dir / name).resolve(),
                     [m.group(1) for nb in notebooks if (m := TRAIN_NOTEBOOK.match(nb.name))])
    staging = start_staging(final)
    runner_params = {"profile": name, "runs_dir": str(runs.live), "report_dir": str(staging.resolve())}
    previous = staging / "runner.json"
    done = json.loads(previous.read_text())["notebooks"] if previous.is_file() else {}
    started, clock, commit = dt.datetime.now().isoformat(timespec="seconds"), time.perf_counter(), git_commit()
    runs.begin()
    log.info(f"profile {name} ({profile_file}): {', '.join(nb.name for nb in notebooks)}; "
             f"reports -> {final}, runs -> {runs.live}")
    with PeakMemory() as memory:
        for notebook in notebooks:
            executed = staging / "executed" / notebook.name
            html_path = staging / f"{notebook.stem}.html"
            log.info(f"==> {notebook.name}")
            tick = time.perf_counter()
            try:
                papermill.execute_notebook(
                    str(notebook), str(executed), parameters=parameters_for(notebook, profile_params, runner_params),
                    kernel_name=KERNEL_NAME, cwd=str(NOTEBOOKS_DIR), log_output=True, progress_bar=False,
                    extra_arguments=KERNEL_ARGUMENTS)
                render_html(executed, html_path)
            except Exception as err:  # a failed cell, a dead kernel, a missing kernel: report, keep old results
                message = describe_failure(notebook, err)
                runs.rollback()
                if executed.is_file():
                    try:
                        render_html(executed, html_path)
                    except Exception as render_err:  # keep the original error as the one reported
                        log.warning(f"could not render {html_path.name}: {render_err}")
                shutil.rmtree(failed, ignore_errors=True)
                staging.rename(failed)
                raise RunError(f"{message}\nreport of the failed notebook: {failed / html_path.name}\n"
                               f"earlier results in {final} and {runs.live} were kept") from err
            done[notebook.stem] = {"seconds": round(time.perf_counter() - tick, 1),
                                   "finished": dt.datetime.now().isoformat(timespec="seconds")}
    summary = {"profile": name, "profile_file": str(profile_file), "parameters": profile_params,
               "overrides": overrides or {}, "ran": [nb.stem for nb in notebooks], "notebooks": done, "started": started,
               "wall_seconds": round(time.perf_counter() - clock, 1), "peak_memory_mb": round(memory.peak_mb),
               "commit": commit, "note": note}
    (staging / "runner.json").write_text(json.dumps(summary, indent=2))
    write_index(staging, summary)
    replace_dir(staging, final)
    runs.commit()
    shutil.rmtree(failed, ignore_errors=True)
    log.info(f"done in {summary['wall_seconds'] / 60:.1f} min, peak memory {summary['peak_memory_mb']} MB: "
             f"{final / 'index.html'}")
    return final


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="run_all.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", help="profile name in profiles/ or a YAML file "
                        "(default: full if ImageNet weights can be had, else cpu)")
    parser.add_argument("--only", action="append", metavar="PREFIX",
                        help="run only notebooks whose name starts with PREFIX (repeatable), e.g. --only 02")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", dest="overrides",
                        help="replace one profile parameter for this run (repeatable), e.g. --set seed=43; "
                             "checked like the profile's own values")
    parser.add_argument("--reports-dir", type=Path, default=REPO_ROOT / "reports",
                        help="where <profile>/ reports go (default: reports/)")
    parser.add_argument("--runs-dir", type=Path, default=REPO_ROOT / "runs",
                        help="where <profile>/<arch> run directories go (default: runs/)")
    parser.add_argument("--strip", action="store_true",
                        help="remove outputs and execution counts from notebooks/*.ipynb and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout, force=True)
    args = parse_args(argv)
    if args.strip:
        changed = strip_notebooks(sorted(NOTEBOOKS_DIR.glob("*.ipynb")))
        log.info(f"stripped {len(changed)} notebook(s): {', '.join(p.name for p in changed) or 'none needed it'}")
        return 0
    note = ""
    if args.profile is None:
        args.profile = default_profile()
        if args.profile == "cpu":
            note = ("Profile 'cpu' was chosen automatically because ImageNet weights could not be had: "
                    "models are trained from scratch at reduced resolution; this is not the study's protocol.")
    try:
        run_profile(args.profile, args.only, args.reports_dir.resolve(), args.runs_dir.resolve(), note,
                    parse_overrides(args.overrides))
    except RunError as err:
        log.error(f"error: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
