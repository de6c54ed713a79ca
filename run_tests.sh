#!/usr/bin/env bash
# Run the test suite (creates/updates the project environment first). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_env.sh
if [[ "${CI:-}" == "true" ]]; then scripts/install_chromium.sh; fi  # for the browser tests
# One pytest-xdist worker per core, each taking whole test files (so module fixtures are built once), in the order
# tests/conftest.py gives (the smoke run's file first). Later arguments win: ./run_tests.sh -n 0 runs in one process.
"$CXR_PYTHON" -m pytest -n auto --dist loadfile --no-loadscope-reorder "$@"
