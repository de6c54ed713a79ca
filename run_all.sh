#!/usr/bin/env bash
# Run the notebooks of one profile and render HTML reports into reports/<profile>/.
#   ./run_all.sh [--profile full|cpu|smoke|FILE.yaml] [--only 02] [--reports-dir DIR] [--runs-dir DIR]
# Without --profile: full when ImageNet weights can be had, else cpu. Details: python -m cxrlib.runner -h
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_env.sh
exec "$CXR_PYTHON" -m cxrlib.runner "$@"
