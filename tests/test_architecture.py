"""The layering written in pyproject.toml's [tool.importlinter] holds: import-linter checks every contract."""
import shutil
import subprocess
import sys
from pathlib import Path

from cxrlib.contract import REPO_ROOT


def test_import_linter_contracts_are_kept(tmp_path):
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, f"lint-imports is not installed beside {sys.executable}: pip install -e '.[dev]'"
    result = subprocess.run([lint_imports, "--no-logo", "--cache-dir", str(tmp_path)], cwd=REPO_ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
