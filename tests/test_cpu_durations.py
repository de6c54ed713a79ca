"""``--cpu-durations N`` (tests/conftest.py) lists the N tests that cost the most CPU seconds."""
import re
import subprocess
import sys

from cxrlib.contract import REPO_ROOT


def test_cpu_durations_lists_the_costliest_tests_with_their_seconds():
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--cpu-durations", "2",
                             "tests/test_params.py", "-k", "committed_profiles"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:]
    summary = result.stdout[result.stdout.index("most CPU seconds"):]
    rows = re.findall(r"^\s+(\d+\.\d)s  (tests/test_params\.py::\S+)$", summary, flags=re.MULTILINE)
    assert len(rows) == 2 and float(rows[0][0]) >= float(rows[1][0])
