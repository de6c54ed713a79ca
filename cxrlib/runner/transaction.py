"""A run changes the disk all at once or not at all.

Reports are built in ``<reports>/<profile>.staging/`` (a copy of the current reports, so reports and run
records of notebooks not run this time are kept) and swapped in on success; a failed run's staging dir
becomes ``<profile>-failed/``. Run directories stay where they are by default (the training notebooks skip
finished replicates and resume interrupted ones); with ``--retrain`` the whole ``<runs>/<profile>`` is moved
to ``<profile>.previous`` for the run, deleted on success and put back on failure.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from cxrlib.contract import EXECUTED_DIR, FAILED_SUFFIX, REPO_ROOT, repo_relative
from cxrlib.runner import RunError

log = logging.getLogger("cxrlib.runner")


def check_dirs(report_dir: Path, runs_dir: Path) -> None:
    """Refuse a report or run directory the runner could not safely replace, move or delete."""
    for option, folder in (("--reports-dir", report_dir), ("--runs-dir", runs_dir)):
        if REPO_ROOT.is_relative_to(folder):
            raise RunError(f"{option} puts the profile's folder at {folder}, which contains the repository; "
                           "the runner replaces that folder: choose a folder inside or beside the repository")
    if report_dir.is_relative_to(runs_dir) or runs_dir.is_relative_to(report_dir):
        raise RunError(f"the report folder {repo_relative(report_dir)} and the run folder {repo_relative(runs_dir)} "
                       "overlap; the runner swaps the report folder as a whole: give --reports-dir and --runs-dir "
                       "separate folders")


def replace_dir(source: Path, target: Path) -> None:
    """Move ``source`` to ``target``, replacing it; the old ``target`` is deleted only after the move."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    source.rename(target)
    shutil.rmtree(old, ignore_errors=True)


class ReportStaging:
    """The report directory of one run: built in ``.staging``, swapped in on success, kept as ``-failed``."""

    def __init__(self, final: Path):
        self.final = final
        self.staging = final.with_name(final.name + ".staging")
        self.failed = final.with_name(final.name + FAILED_SUFFIX)

    def begin(self) -> Path:
        """A fresh staging copy of the reports (recovering them if a swap was interrupted); return it."""
        old = self.final.with_name(self.final.name + ".old")
        if old.exists() and not self.final.exists():
            log.warning(f"restoring the reports left in {repo_relative(old)} by an interrupted run")
            old.rename(self.final)
        shutil.rmtree(self.staging, ignore_errors=True)
        if self.final.exists():
            shutil.copytree(self.final, self.staging)
        (self.staging / EXECUTED_DIR).mkdir(parents=True, exist_ok=True)
        return self.staging

    def commit(self) -> None:
        """The run succeeded: its reports replace the earlier ones; an earlier failure's reports go."""
        replace_dir(self.staging, self.final)
        shutil.rmtree(self.failed, ignore_errors=True)

    def fail(self) -> None:
        """The run failed: keep what it made as ``-failed`` (replacing an earlier failure), the reports unchanged."""
        shutil.rmtree(self.failed, ignore_errors=True)
        self.staging.rename(self.failed)


class RetrainGuard:
    """``--retrain``: move ``<runs>/<profile>`` aside for the run; restore it if the run fails."""

    def __init__(self, live: Path):
        self.live = live
        self.previous = live.with_name(live.name + ".previous")
        self.failed = live.with_name(live.name + FAILED_SUFFIX)

    def recover(self) -> None:
        """Put back run directories that an interrupted --retrain run left aside (its own go to ``-failed``)."""
        if self.previous.exists():
            log.warning(f"restoring the run directories left in {repo_relative(self.previous)} by an interrupted "
                        f"--retrain run; its partial runs go to {repo_relative(self.failed)}")
            self.rollback()

    def begin(self) -> None:
        """Move the profile's run directories aside (after recovering an interrupted run)."""
        self.recover()
        if self.live.exists():
            self.live.rename(self.previous)

    def commit(self) -> None:
        """The run succeeded: the old run directories go."""
        shutil.rmtree(self.previous, ignore_errors=True)

    def rollback(self) -> None:
        """The run failed: its run directories go to ``-failed``, the previous ones come back."""
        shutil.rmtree(self.failed, ignore_errors=True)
        if self.live.exists():
            self.live.rename(self.failed)
        if self.previous.exists():
            self.previous.rename(self.live)
