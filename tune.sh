#!/usr/bin/env bash
# Hyperparameter search (creates/updates the project environment first). Arguments go to python -m cxrlib.tune:
#   ./tune.sh run cpu                      # work on searches/cpu.yaml until it is done (resumes where it stopped)
#   ./tune.sh run cpu --storage URL        # share one search between processes or machines
#   ./tune.sh status cpu | ./tune.sh export cpu
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_env.sh
exec "$CXR_PYTHON" -m cxrlib.tune "$@"
