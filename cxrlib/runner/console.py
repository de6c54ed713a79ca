"""What a run shows on the terminal (a progress line per notebook, Keras epoch lines) and what goes to run.log.

Everything is logged; the ``Console`` handler decides what the terminal shows, ``run_log`` writes it all to
``run.log``. Without ``--verbose`` the terminal shows the runner's own messages, one progress line per
notebook (``[2/4] 02_train_resnet50  cell 9/28  12:31 elapsed``) and the epoch lines the kernels print;
papermill's per-cell messages, the kernels' other output and their own logs go to run.log only.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, TextIO

from cxrlib.contract import ONEDNN_ENV, QUIET_ENV  # in the kernels' environment (QUIET_ENV unless --verbose)

log = logging.getLogger("cxrlib.runner")
KERNEL_LOG = logging.getLogger("cxrlib.runner.kernel")  # the kernels' own stdout/stderr: C++ logs, kernel warnings
PROGRESS_LOG = logging.getLogger("cxrlib.runner.progress")  # progress records, drawn as the status line only
PAPERMILL_LOG = logging.getLogger("papermill")  # papermill's messages and the notebooks' printed output
# Keras' epoch lines: "Epoch 3/8", "Epoch 3: ReduceLROnPlateau ...", "150/150 - 41s - 270ms/step - ... loss: ...".
EPOCH_LINE = re.compile(r"^(Epoch \d+[/:].*|\d+/\d+ - .*\bloss: .*)$")
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


def tensorflow_environment() -> dict[str, str]:
    """This process's environment for a child process that imports TensorFlow: ``ONEDNN_ENV`` where unset."""
    return {**ONEDNN_ENV, **os.environ}


def quiet_environment() -> dict[str, str]:
    """``tensorflow_environment()`` with ``QUIET_ENV`` (TensorFlow's C++ logging cut to errors)."""
    return {**tensorflow_environment(), **QUIET_ENV}


def elapsed_text(seconds: float) -> str:
    """``12:31`` (minutes:seconds), ``1:02:31`` from an hour on."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def epoch_lines(text: str) -> list[str]:
    """The Keras epoch lines in a chunk of kernel output (progress bars may separate updates with ``\\r``)."""
    return [line.strip() for line in re.split(r"[\r\n]+", text) if EPOCH_LINE.match(line.strip())]


@dataclass
class Progress:
    """Where one notebook is: its place in the run, code cells done of all, time since it started."""

    position: int
    total: int
    name: str
    cells_total: int = 0
    cells_done: int = 0
    finished: bool = False
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)

    def __post_init__(self):
        self.started = self.clock()

    def notebook_started(self, notebook, **_) -> None:
        """nbclient hook: count the code cells of the parameterised notebook."""
        self.cells_total = sum(cell.cell_type == "code" and bool(cell.source.strip()) for cell in notebook.cells)
        self.report()

    def cell_executed(self, **_) -> None:
        """nbclient hook: one more code cell done."""
        self.cells_done += 1
        self.report()

    def finish(self) -> None:
        """The notebook ran to its end."""
        self.finished = True
        self.report()

    def line(self) -> str:
        """``[2/4] 02_train_resnet50  cell 9/28  12:31 elapsed`` (``done in 41:07`` at the end)."""
        elapsed = elapsed_text(self.clock() - self.started)
        where = f"done in {elapsed}" if self.finished else f"cell {self.cells_done}/{self.cells_total}  {elapsed} elapsed"
        return f"[{self.position}/{self.total}] {self.name}  {where}"

    def report(self) -> None:
        """Log this state for the console's status line."""
        PROGRESS_LOG.info(self.line(), extra={"progress": self})


class Console(logging.Handler):
    """The terminal: filtered messages, plus a status line redrawn in place (a new line now and then off a tty)."""

    def __init__(self, stream: TextIO | None = None, verbose: bool = False, interval: float = 60.0,
                 clock=time.monotonic):
        super().__init__()
        stream = stream or sys.stdout
        self.stream, self.verbose, self.interval, self.clock = stream, verbose, interval, clock
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.status, self.last_status = "", float("-inf")

    def shown(self, record: logging.LogRecord) -> str | None:
        """The text the terminal shows for ``record``, or None."""
        if self.verbose:
            return self.format(record)
        if record.name == PAPERMILL_LOG.name or record.name.startswith(PAPERMILL_LOG.name + "."):
            return "\n".join(f"    {line}" for line in epoch_lines(record.getMessage())) or None
        if record.name == KERNEL_LOG.name:
            return None
        if record.name.startswith(log.name) or record.levelno >= logging.WARNING:
            return self.format(record)
        return None

    def emit(self, record: logging.LogRecord) -> None:
        """Print what is shown of ``record``; progress records update the status line instead."""
        try:
            progress = getattr(record, "progress", None)
            if progress is not None:
                self.update_status(progress)
                return
            text = self.shown(record)
            if text:
                self.write(text)
        except Exception:  # a logging handler must not raise (logging's own convention)
            self.handleError(record)

    def update_status(self, progress: Progress) -> None:
        """Redraw the status line on a tty; elsewhere print it every ``interval`` seconds and at the end."""
        line = progress.line()
        if self.tty:
            self.status = "" if progress.finished else line
            self.stream.write(f"\r\x1b[K{line}" + ("\n" if progress.finished else ""))
            self.stream.flush()
            return
        now = self.clock()
        if progress.cells_done == 0 and not progress.finished:
            self.last_status = now  # the runner's own line announced the notebook
        elif progress.finished or now - self.last_status >= self.interval:
            self.last_status = now
            self.stream.write(line + "\n")
            self.stream.flush()

    def write(self, text: str) -> None:
        """Print ``text`` above the status line."""
        if self.tty and self.status:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        if self.tty and self.status:
            self.stream.write(self.status)
        self.stream.flush()


class NotProgress(logging.Filter):
    """Keeps progress records (the console's status line) out of run.log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not hasattr(record, "progress")


@contextlib.contextmanager
def run_log(path: Path) -> Iterator[Path]:
    """Send everything logged (at INFO and above) to ``path`` while the block runs."""
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    handler.addFilter(NotProgress())
    root = logging.getLogger()
    for logger in (log, PAPERMILL_LOG):
        logger.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()


def start_console(verbose: bool, stream: TextIO | None = None) -> Console:
    """Log INFO and above to a ``Console`` on ``stream`` (the command line's setup)."""
    console = Console(stream, verbose)
    console.setFormatter(logging.Formatter("%(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[console], force=True)
    return console
