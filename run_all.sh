#!/usr/bin/env bash
# Run the notebooks of one profile and render HTML reports into reports/<profile>/ (complete log: run.log there).
#   ./run_all.sh [--profile full|cpu|smoke|FILE.yaml] [--only 02] [--set KEY=VALUE] [--retrain] [--verbose]
#                [--reports-dir DIR] [--runs-dir DIR]
# Without --profile: full when a GPU is visible and ImageNet weights can be had, else cpu (it says which and why).
# Details: ./run_all.sh -h
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_env.sh
exec "$CXR_PYTHON" -m cxrlib.runner "$@"
