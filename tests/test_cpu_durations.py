"""``--cpu-durations N`` (tests/conftest.py) lists the N tests that cost the most CPU seconds, in one process or
from pytest-xdist workers; under xdist each test file runs on one worker and the smoke run's file starts first."""
import re
import subprocess
import sys

import pytest

from cxrlib.contract import REPO_ROOT


def pytest_run(*args: str) -> str:
    """`python -m pytest ARGS` from the repository root; its stdout (the run must pass)."""
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:]
    return result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("workers", [[], ["-n", "2", "--dist", "loadfile"]], ids=["one process", "two workers"])
def test_cpu_durations_lists_the_costliest_tests_with_their_seconds(workers):
    output = pytest_run("-q", *workers, "--cpu-durations", "2", "tests/test_params.py", "-k", "committed_profiles")
    summary = output[output.index("most CPU seconds"):]
    rows = re.findall(r"^\s+(\d+\.\d)s  (tests/test_params\.py::\S+)$", summary, flags=re.MULTILINE)
    assert len(rows) == 2 and float(rows[0][0]) >= float(rows[1][0])


@pytest.mark.slow
def test_each_test_file_runs_on_one_worker(tmp_path):
    output = pytest_run("-n", "2", "--dist", "loadfile", "-v", "tests/test_params.py", "tests/test_evaluate.py")
    workers = {}
    for worker, path in re.findall(r"^\[(gw\d+)\].*? (tests/test_\w+\.py)::", output, flags=re.MULTILINE):
        workers.setdefault(path, set()).add(worker)
    assert set(workers) == {"tests/test_params.py", "tests/test_evaluate.py"}
    assert all(len(names) == 1 for names in workers.values()), workers


def test_the_file_that_reads_the_smoke_run_is_collected_first():
    output = pytest_run("--collect-only", "-q", "tests/test_params.py", "tests/test_notebooks.py")
    assert output.splitlines()[0].startswith("tests/test_notebooks.py::")
