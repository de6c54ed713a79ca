#!/usr/bin/env bash
# Runs the bf16 parity and time-to-quality benchmark (docs/BF16_PARITY.md) one training run at a time, committing its
# record (reports/bf16-parity/) after every run; run it again to continue after an interruption, on any machine with
# native bf16 (the benchmark refuses another CPU). When every run is recorded it appends the tables to
# reports/benchmarks.md and commits that too. About 3 hours on a 2-core AVX-512 BF16 EPYC with nothing else running.
#   nohup scripts/run_bf16_parity.sh > bf16.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure_env.sh
source scripts/worktree.sh  # commit_paths
while true; do
    status=0
    "$CXR_PYTHON" benchmarks/bench_time_to_quality.py run --max-runs 1 || status=$?
    [[ $status == 3 ]] && break
    [[ $status == 0 ]] || exit "$status"
    commit_paths "bf16 parity: record after a run ($(tail -n 1 reports/bf16-parity/runs.csv | cut -d, -f1-5))" \
        reports/bf16-parity
done
"$CXR_PYTHON" benchmarks/bench_time_to_quality.py report
commit_paths "bf16 parity and time to quality: the tables (reports/benchmarks.md)" reports/benchmarks.md
