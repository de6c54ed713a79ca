#!/usr/bin/env bash
# The pre-registered five-replicate study (docs/PREREGISTRATION.md). Each replicate trains both models of the
# cpu profile with the code of the plan's commit (checked out in a git worktree, so later changes to the
# repository cannot touch the study), then copies the replicate's small records (run.json, history.csv,
# predictions.csv; no model files) to reports/cpu/runs/<arch>/seed-<k>/ for committing.
# Replicates whose records are already there are skipped: run it again to continue after an interruption.
#   scripts/run_study.sh [WORKTREE_DIR]        (default: ../cxr-study beside the repository)
# About 75 minutes per replicate on a 2-core CPU; long: run it in the background with a log, e.g.
#   nohup scripts/run_study.sh > study.log 2>&1 &
# The architectures, notebooks and record files below are written out on purpose, not read from cxrlib.contract:
# they are the pre-registered study's (the plan's commit), and a later change to the code's registry (another
# backbone, another record file) must not change what this finished study's script does.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
seeds=(1 2 3 4 5)  # the replicates of docs/PREREGISTRATION.md: split seed = training seed = k, float32
records="$repo/reports/cpu/runs"
plan_commit="$(git log --diff-filter=A --format=%H -- docs/PREREGISTRATION.md | tail -n 1)"
worktree="${1:-$repo/../cxr-study}"

if [[ -z "$plan_commit" ]]; then
    echo "error: no commit adds docs/PREREGISTRATION.md; the study runs only from a committed plan" >&2
    exit 1
fi
source scripts/worktree.sh
pinned_worktree "$worktree" "$plan_commit" "the plan's commit"

for seed in "${seeds[@]}"; do
    if [[ -f "$records/resnet50/seed-$seed/run.json" && -f "$records/densenet121/seed-$seed/run.json" ]]; then
        echo "replicate seed $seed: records present, skipped"
        continue
    fi
    echo "replicate seed $seed: training both models, started $(date -u '+%Y-%m-%d %H:%M') UTC"
    (cd "$worktree" && ./run_all.sh --profile cpu --set "seed=$seed" --set precision=float32 --only 02 --only 03 \
        --runs-dir "runs/study/seed-$seed" --reports-dir "reports/study/seed-$seed")
    for arch in resnet50 densenet121; do
        mkdir -p "$records/$arch/seed-$seed"
        cp "$worktree/runs/study/seed-$seed/cpu/$arch/"{run.json,history.csv,predictions.csv} "$records/$arch/seed-$seed/"
    done
    cp "$worktree/reports/study/seed-$seed/cpu/runner.json" "$records/runner-seed-$seed.json"
    echo "replicate seed $seed: finished $(date -u '+%Y-%m-%d %H:%M') UTC; records in reports/cpu/runs/*/seed-$seed"
done
