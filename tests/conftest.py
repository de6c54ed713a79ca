"""Shared fixtures (what tests share that is not a fixture is in tests/helpers.py): the real data set (skipped with
a reason when absent), small generated image trees, and the smoke profile run once per session
(tests/test_notebooks.py and tests/test_reports.py read it); ``--cpu-durations N``, the tests that cost the most CPU
seconds; and what lets pytest-xdist run the suite on several cores (run_tests.sh: ``-n auto --dist loadfile``): the
smoke run starts first and its workers share it."""
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock
from helpers import write_tree

from cxrlib.contract import ONEDNN_ENV, REPO_ROOT, configured_data_dir

# The test session is a process start: TensorFlow (imported later, by the test modules) starts as the runner's
# kernels and the command lines start it, whether or not scripts/ensure_env.sh set the environment.
for name, value in ONEDNN_ENV.items():
    os.environ.setdefault(name, value)

REPORTED_CPU: dict[str, float] = {}  # test id -> CPU seconds, for --cpu-durations (filled where reports arrive)
CPU_STARTED = pytest.StashKey[float]()  # a test's CPU seconds when its setup began
SMOKE_FIXTURES = {"smoke_result", "smoke_run"}


def pytest_addoption(parser):
    parser.addoption("--cpu-durations", type=int, metavar="N", default=None,
                     help="show the N tests that used the most CPU seconds (setup, call and teardown; their process "
                          "and its finished subprocesses): less inflated than --durations by other work beside them "
                          "(threads spinning while they wait for a busy core still count)")


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children that have finished."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def pytest_collection_modifyitems(config, items):
    """Start with the first test file that reads the smoke run, the longest piece of work, so that under xdist it
    begins at once and the other files fill the other cores meanwhile."""
    first = next((item.path for item in items if SMOKE_FIXTURES & set(item.fixturenames)), None)
    items.sort(key=lambda item: item.path != first)  # stable: every file keeps its own order


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Note the CPU seconds spent before the test's setup."""
    item.stash[CPU_STARTED] = cpu_seconds()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """The teardown report carries the test's CPU seconds (setup + call + teardown), also from an xdist worker."""
    outcome = yield
    if call.when == "teardown":
        outcome.get_result().user_properties.append(("cpu_seconds", cpu_seconds() - item.stash[CPU_STARTED]))


def pytest_runtest_logreport(report):
    """Collect each test's CPU seconds where the reports arrive (the controller, under xdist)."""
    if report.when == "teardown":
        spent = dict(report.user_properties).get("cpu_seconds")
        if spent is not None:
            REPORTED_CPU[report.nodeid] = spent


def pytest_terminal_summary(terminalreporter, config):
    count = config.getoption("--cpu-durations")
    if count is None:
        return
    terminalreporter.section(f"most CPU seconds ({sum(REPORTED_CPU.values()):.0f} s in all)")
    for nodeid, seconds in sorted(REPORTED_CPU.items(), key=lambda item: -item[1])[:count]:
        terminalreporter.write_line(f"{seconds:8.1f}s  {nodeid}")


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    path = configured_data_dir()
    if not (path / "train").is_dir():
        pytest.skip(f"real data set not found at {path} (set CXR_DATA_DIR)")
    return path


@pytest.fixture
def image_tree(tmp_path) -> Path:
    """A fresh tiny Kaggle-layout tree (12/2/4 images per class in train/val/test)."""
    return write_tree(tmp_path / "chest_xray")


@pytest.fixture(scope="session")
def shared_tree(tmp_path_factory) -> Path:
    """One tiny Kaggle-layout tree (12/2/4 images per class) for every test of the session that only reads it (a
    test that changes its tree takes image_tree)."""
    return write_tree(tmp_path_factory.mktemp("shared") / "chest_xray")


@dataclass(frozen=True)
class SmokeRun:
    """The smoke profile run once per test session: where its reports and runs went, what the terminal showed."""

    reports: Path  # <tmp>/reports/smoke
    runs: Path  # <tmp>/runs/smoke
    console: str  # the runner's stdout and stderr
    tmp: Path  # the session folder holding reports, runs (and the generated data when the real set is absent)


def run_smoke_profile(tmp: Path) -> SmokeRun:
    """``python -m cxrlib.runner --profile smoke`` into `tmp`, on the real data (or a generated tree)."""
    data_dir = configured_data_dir()
    if not (data_dir / "train").is_dir():
        data_dir = write_tree(tmp / "chest_xray", {"train": 30, "val": 4, "test": 12})
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "cxrlib.runner", "--profile", "smoke", "--reports-dir", str(tmp / "reports"),
         "--runs-dir", str(tmp / "runs")], env={**os.environ, "CXR_DATA_DIR": str(data_dir)}, cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=1800)
    print(f"smoke run: {time.perf_counter() - started:.0f} s")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return SmokeRun(tmp / "reports" / "smoke", tmp / "runs" / "smoke", result.stdout + result.stderr, tmp)


@pytest.fixture(scope="session")
def smoke_result(tmp_path_factory, pytestconfig) -> SmokeRun:
    """The session's smoke run; under xdist the first worker that needs it runs it and the others wait and read
    where it went (the pattern of pytest-xdist's documentation)."""
    if not hasattr(pytestconfig, "workerinput"):  # not an xdist worker
        return run_smoke_profile(tmp_path_factory.mktemp("smoke"))
    shared = tmp_path_factory.getbasetemp().parent / "smoke-run.json"  # the folder all workers' tmp dirs share
    with FileLock(f"{shared}.lock"):
        if shared.is_file():
            return SmokeRun(**{key: value if key == "console" else Path(value)
                               for key, value in json.loads(shared.read_text()).items()})
        smoke = run_smoke_profile(tmp_path_factory.mktemp("smoke"))
        shared.write_text(json.dumps({key: str(value) for key, value in vars(smoke).items()}))
        return smoke


@pytest.fixture(scope="session")
def smoke_run(smoke_result) -> tuple[Path, Path]:
    """(reports, runs) of the session's smoke run."""
    return smoke_result.reports, smoke_result.runs
