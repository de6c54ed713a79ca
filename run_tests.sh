#!/usr/bin/env bash
# Run the test suite (creates/updates the project environment first). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_env.sh
if [[ "${CI:-}" == "true" ]]; then scripts/install_chromium.sh; fi  # for the browser tests
"$CXR_PYTHON" -m pytest "$@"
