"""The notebooks: which to run, what each declares, executing one with papermill, stripping outputs for commits.

The kernel runs with encrypted transport, and its process output (TensorFlow's C++ logs, which cannot all be
switched off, and the kernel's own warnings) is read from a pipe and logged to ``cxrlib.runner.kernel``: run.log
keeps it, the terminal shows it only with --verbose. What the notebook's code prints still reaches papermill (and
the report) as cell output. nbclient builds the kernel manager from the class given as ``kernel_manager_class``.
"""
from __future__ import annotations

import re
import subprocess
import threading
from pathlib import Path
from typing import IO

import nbformat
import papermill
import zmq
from jupyter_client import AsyncKernelManager
from nbconvert.preprocessors import ClearOutputPreprocessor
from papermill.exceptions import PapermillExecutionError

from cxrlib.contract import NOTEBOOKS_DIR, repo_relative
from cxrlib.params import NOTEBOOK_PARAMETERS
from cxrlib.runner import KERNEL_NAME, RunError
from cxrlib.runner.console import KERNEL_LOG, Progress, quiet_environment, tensorflow_environment

# Execution records that papermill and Jupyter leave in a notebook; none belongs in a committed one.
EXECUTION_METADATA = {"collapsed", "scrolled", "execution", "papermill"}
NOTEBOOK_EXECUTION_METADATA = ("papermill", "widgets")
HEADING = re.compile(r"^(?P<marks>#{1,6})\s+(?P<text>.+?)\s*#*\s*$", re.MULTILINE)
MARKUP = re.compile(r"\*\*?([^*]+)\*\*?|\[([^]]*)\]\([^)]*\)")  # emphasis and links, kept as their text
# C-level output stays out of the cells (and so out of the reports): the kernel process's stdout goes to our pipe.
KERNEL_ARGUMENTS = ["--IPKernelApp.capture_fd_output=False"]


def select_notebooks(only: list[str] | None, folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The numbered notebooks in run order, limited to names starting with any of ``only``."""
    notebooks = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not only:
        return notebooks
    chosen = [nb for nb in notebooks if any(nb.name.startswith(prefix) for prefix in only)]
    if not chosen:
        raise RunError(f"--only {' '.join(only)} matches no notebook in {repo_relative(folder)}: "
                       f"{', '.join(nb.name for nb in notebooks)}")
    return chosen


def declared_parameters(notebook: Path) -> set[str]:
    """Names declared in the notebook's cell tagged ``parameters``."""
    return set(papermill.inspect_notebook(str(notebook)))


def notebook_kind(notebook: Path) -> str | None:
    """``explore``, ``train`` or ``compare``: the kind whose parameters the notebook declares (None: no kind)."""
    declared = declared_parameters(notebook)
    return next((kind for kind, names in NOTEBOOK_PARAMETERS.items() if set(names) == declared), None)


def markdown_headings(text: str) -> list[tuple[int, str]]:
    """The headings of a Markdown text as (level, plain text)."""
    return [(len(match["marks"]), MARKUP.sub(lambda m: m[1] or m[2] or "", match["text"]).replace("`", "").strip())
            for match in HEADING.finditer(text)]


def notebook_title(notebook: Path) -> str:
    """The first level-1 heading, preferring one the code displayed ("Training ResNet-50"); else the stem."""
    cells = nbformat.read(notebook, as_version=4).cells
    shown = [text for cell in cells for output in cell.get("outputs", [])
             for level, text in markdown_headings(output.get("data", {}).get("text/markdown", "")) if level == 1]
    written = [text for cell in cells if cell.cell_type == "markdown"
               for level, text in markdown_headings(cell.source) if level == 1]
    return [*shown, *written, notebook.stem][0]


def parameters_for(notebook: Path, profile_params: dict, runner_params: dict) -> dict:
    """The profile and runner values this notebook declares (papermill injects only these)."""
    wanted = declared_parameters(notebook)
    values = {**profile_params, **runner_params}
    return {name: value for name, value in values.items() if name in wanted}


def check_profile_is_used(profile_params: dict, profile_file: Path, notebooks: list[Path]) -> None:
    """Fail when a profile sets a parameter that no notebook declares (it would be silently ignored)."""
    declared = set().union(*(declared_parameters(nb) for nb in notebooks))
    unused = sorted(set(profile_params) - declared)
    if unused:
        raise RunError(f"{repo_relative(profile_file)} sets {unused}, which no notebook declares; remove them")


def forward_lines(stream: IO[bytes]) -> None:
    """Log each line of a kernel's process output until the kernel exits."""
    with stream:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            if line:
                KERNEL_LOG.info(line)


class LoggedKernelManager(AsyncKernelManager):
    """A kernel with CurveZMQ transport encryption whose process output goes to the log (--verbose runs)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if zmq.has("curve"):  # used when the kernelspec declares Curve support; else the kernel warns of plain TCP
            self.transport_encryption = "auto"

    def environment(self) -> dict[str, str]:
        """The kernel's environment variables (``ONEDNN_ENV`` where unset)."""
        return tensorflow_environment()

    async def start_kernel(self, **kw) -> None:
        """Start the kernel with its stdout and stderr on a pipe that a thread forwards to the log."""
        kw.update(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.environment())
        await super().start_kernel(**kw)
        threading.Thread(target=forward_lines, args=(self.provisioner.process.stdout,), daemon=True).start()


class QuietKernelManager(LoggedKernelManager):
    """``LoggedKernelManager`` with TensorFlow's C++ logging cut to errors (the default, without --verbose)."""

    def environment(self) -> dict[str, str]:
        """The kernel's environment variables, with ``QUIET_ENV``."""
        return quiet_environment()


def execute(notebook: Path, executed: Path, parameters: dict, progress: Progress, verbose: bool = False) -> None:
    """Run ``notebook`` into ``executed`` on the project kernel, reporting each finished cell to ``progress``."""
    papermill.execute_notebook(
        str(notebook), str(executed), parameters=parameters, kernel_name=KERNEL_NAME, cwd=str(notebook.parent),
        log_output=True, progress_bar=False, extra_arguments=KERNEL_ARGUMENTS,
        kernel_manager_class=LoggedKernelManager if verbose else QuietKernelManager,
        on_notebook_start=progress.notebook_started, on_cell_executed=progress.cell_executed)
    progress.finish()


def describe_failure(notebook: Path, err: Exception) -> str:
    """Name the notebook, the failing cell and the error."""
    if isinstance(err, PapermillExecutionError):
        first_line = next((line for line in err.source.splitlines() if line.strip()), "")
        return (f"notebook {notebook.name} failed in cell In [{err.exec_count}] (cell #{err.cell_index} "
                f"of the executed notebook, starting {first_line!r}):\n{err.ename}: {err.evalue}")
    return f"notebook {notebook.name} did not finish: {type(err).__name__}: {err}"


def strip_notebook(nb: nbformat.NotebookNode) -> bool:
    """Remove outputs, execution counts and execution metadata in place; True if anything changed."""
    before = nbformat.writes(nb)
    ClearOutputPreprocessor(remove_metadata_fields=EXECUTION_METADATA).preprocess(nb, {})
    for cell in nb.cells:  # the preprocessor cleans code cells only; papermill also marks Markdown cells
        for key in EXECUTION_METADATA:
            cell.metadata.pop(key, None)
    for key in NOTEBOOK_EXECUTION_METADATA:
        nb.metadata.pop(key, None)
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
