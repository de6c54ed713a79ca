"""One run of a profile from start to finish: check, execute the notebooks, render, record, swap the reports in."""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager

from cxrlib.contract import (DATA_ENV_VAR, EXECUTED_DIR, INDEX_PAGE, NOTEBOOKS_DIR, REPORTS_DIR, RUN_LOG_FILE,
                             RUNNER_RECORD_FILE, RUNS_DIR, repo_relative)
from cxrlib.runner import KERNEL_NAME, RunError
from cxrlib.runner.console import Progress, elapsed_text, run_log
from cxrlib.runner.index import write_comparison_page, write_index, write_record
from cxrlib.runner.machine import Machine, look
from cxrlib.runner.notebooks import (check_profile_is_used, describe_failure, execute, notebook_kind,
                                     notebook_title, parameters_for, select_notebooks)
from cxrlib.runner.pages import shown_path
from cxrlib.runner.profiles import expected_duration, load_profile, profile_description, profile_path
from cxrlib.runner.render import render_all, scrub_map
from cxrlib.runner.transaction import ReportStaging, RetrainGuard, check_dirs
from cxrlib.runtime import code_version, peak_memory_mb

log = logging.getLogger("cxrlib.runner")


def check_kernel() -> None:
    """Fail early with the fix when the project's Jupyter kernel is not registered."""
    if KERNEL_NAME not in KernelSpecManager().find_kernel_specs():
        raise RunError(f"Jupyter kernel {KERNEL_NAME!r} is not registered; run `source scripts/ensure_env.sh` "
                       f"or `python -m ipykernel install --sys-prefix --name {KERNEL_NAME}`")


def shown_folders(name: str, report_dir: Path, staging: Path, runs: Path, profile_params: dict) -> dict:
    """The folders a report must not show as they are on this machine, and what it shows instead."""
    report = shown_path(report_dir, f"[reports dir]/{name}")
    folders = {staging: report, report_dir: report, runs: shown_path(runs, f"[runs dir]/{name}")}
    if os.environ.get(DATA_ENV_VAR):
        folders[os.environ[DATA_ENV_VAR]] = f"${DATA_ENV_VAR}"
    if profile_params.get("data_dir"):
        folders[profile_params["data_dir"]] = shown_path(profile_params["data_dir"], "[data dir]")
    return folders


def execute_all(notebooks: list[Path], work: Path, parameters: dict, runner_params: dict, verbose: bool,
                done: dict) -> None:
    """Execute ``notebooks`` in order into ``work/executed``, recording each one's title, kind and timing in
    ``done``; a notebook that fails raises RunError naming it, its cell and the error."""
    for position, notebook in enumerate(notebooks, 1):
        executed = work / EXECUTED_DIR / notebook.name
        log.info(f"[{position}/{len(notebooks)}] {notebook.stem}")
        tick = time.perf_counter()
        try:
            execute(notebook, executed, parameters_for(notebook, parameters, runner_params),
                    Progress(position, len(notebooks), notebook.stem), verbose)
        except Exception as err:  # a failed cell, a dead kernel: the run stops, earlier results stay
            raise RunError(describe_failure(notebook, err)) from err
        done[notebook.stem] = {"title": notebook_title(executed), "kind": notebook_kind(notebook),
                               "seconds": round(time.perf_counter() - tick, 1),
                               "finished": dt.datetime.now().isoformat(timespec="seconds")}


def publish(work: Path, record: dict, replacements: dict[str, str], description: str) -> None:
    """Render every executed notebook in ``work`` and write runner.json, comparison.html (when notebook 04 left
    comparison.csv) and index.html there."""
    render_all(work, record["profile"], replacements)
    write_record(work, record)
    write_comparison_page(work)
    write_index(work, record, description)


def announce(name: str, profile_file: Path, count: int, machine: Machine, report_dir: Path, runs: Path,
             note: str, retrain: bool, only: list[str] | None = None) -> None:
    """Say before anything runs: why this profile, how many notebooks, how long, where everything goes."""
    if note:
        log.info(note)
    duration = expected_duration(profile_file, machine)
    log.info(f"profile {name} ({repo_relative(profile_file)}): {count} notebook(s); " +
             (f"expected duration {duration}" if only is None else f"the whole profile takes {duration}; "
              "this run executes only the notebooks chosen with --only"))
    log.info(f"reports -> {repo_relative(report_dir)} (complete log: {RUN_LOG_FILE} there); runs -> {repo_relative(runs)}"
             + (" (the previous ones moved aside: --retrain)" if retrain else ""))


def conclude(failure: RunError | None, staging: ReportStaging, guard: RetrainGuard, retrain: bool) -> None:
    """Swap the reports (and, with --retrain, the runs) in, or keep the earlier ones and raise the failure."""
    if failure is None:
        staging.commit()
        if retrain:
            guard.commit()
        return
    staging.fail()
    if retrain:
        guard.rollback()
    kept = ("were restored as they were" if retrain else "were left in place: the next run skips finished "
            "replicates and resumes an interrupted one")
    raise RunError(f"{failure}\nreports of the failed run: {repo_relative(staging.failed)}; earlier reports in "
                   f"{repo_relative(staging.final)} were kept; run directories in {repo_relative(guard.live)} "
                   f"{kept}") from failure


def run_profile(profile: str, only: list[str] | None = None, reports_dir: Path = REPORTS_DIR,
                runs_dir: Path = RUNS_DIR, *, note: str = "", overrides: dict | None = None, retrain: bool = False,
                verbose: bool = False, machine: Machine | None = None, notebooks_dir: Path = NOTEBOOKS_DIR) -> Path:
    """Execute the selected notebooks of ``profile`` (``overrides`` replace its values); return the report dir."""
    check_kernel()
    profile_file = profile_path(profile)
    name = profile_file.stem
    parameters = load_profile(profile_file, overrides)
    check_profile_is_used(parameters, profile_file, select_notebooks(None, notebooks_dir))
    notebooks = select_notebooks(only, notebooks_dir)
    report_dir, runs = (Path(reports_dir) / name).resolve(), (Path(runs_dir) / name).resolve()
    check_dirs(report_dir, runs)
    machine, version, started = machine or look(), code_version(), dt.datetime.now().isoformat(timespec="seconds")
    staging, guard, clock, failure = ReportStaging(report_dir), RetrainGuard(runs), time.perf_counter(), None
    work = staging.begin()
    with run_log(work / RUN_LOG_FILE):
        announce(name, profile_file, len(notebooks), machine, report_dir, runs, note, retrain, only)
        if retrain:
            guard.begin()
        else:
            guard.recover()
        previous = work / RUNNER_RECORD_FILE
        done = json.loads(previous.read_text())["notebooks"] if previous.is_file() else {}
        try:
            execute_all(notebooks, work, parameters, {"profile": name, "runs_dir": str(runs), "report_dir": str(work)},
                        verbose, done)
        except RunError as err:
            failure = err
        record = {"profile": name, "profile_file": shown_path(profile_file), "parameters": parameters,
                  "overrides": overrides or {}, "retrain": retrain, "ran": [nb.stem for nb in notebooks],
                  "notebooks": done, "started": started, "wall_seconds": round(time.perf_counter() - clock, 1),
                  "peak_memory_mb": round(peak_memory_mb(children=True)), "code_version": version,
                  "machine": machine.describe(), "reports_dir": shown_path(report_dir, f"[reports dir]/{name}"),
                  "runs_dir": shown_path(runs, f"[runs dir]/{name}"), "note": note,
                  "failure": str(failure) if failure else None}
        try:
            publish(work, record, scrub_map(shown_folders(name, report_dir, work, runs, parameters)),
                    profile_description(profile_file))
        except Exception as err:  # keep a notebook's failure as the one reported
            log.exception("rendering the reports failed")
            failure = failure or RunError(f"rendering the reports failed: {type(err).__name__}: {err}")
    conclude(failure, staging, guard, retrain)
    log.info(f"done in {elapsed_text(record['wall_seconds'])}, peak memory {record['peak_memory_mb']:,} MB "
             f"(largest notebook kernel): {repo_relative(report_dir / INDEX_PAGE)}")
    return report_dir
