#!/usr/bin/env bash
# Runs a pre-registered study from its plan: studies/<name>.yaml (seeds, profile, the two architectures, where the
# records go) and the plan's document in docs/, with the code of the commit that added that document (checked out
# in a git worktree, so later changes to the repository cannot touch the study). Per replicate k it trains both
# models on one patient split (split seed = training seed = k), copies the small records (run.json, history.csv,
# predictions.csv; no model files) to the plan's `records` folder and commits them with the replicate's CPU in
# the message. Replicates whose records are committed are skipped: run it again to continue after an interruption,
# on this machine or another.
#   scripts/run_planned_study.sh NAME [WORKTREE_DIR]      (default worktree: ../cxr-study-<name>)
# The worktree gets its own environment (its .venv, installed on the first run in a few minutes), so the notebooks
# import the plan's cxrlib, not this checkout's.
# Hours long: run it in the background with a log, e.g.  nohup scripts/run_planned_study.sh NAME > study.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
name="${1:?usage: scripts/run_planned_study.sh NAME [WORKTREE_DIR] (a plan in studies/NAME.yaml)}"
plan_file="studies/$name.yaml"
worktree="${2:-$repo/../cxr-study-$name}"

if ! git ls-files --error-unmatch "$plan_file" > /dev/null 2>&1; then
    echo "error: $plan_file is not committed; a study runs only from a committed plan" >&2
    exit 1
fi
source scripts/ensure_env.sh
# The plan's facts, read by this repository's cxrlib (the file is checked; errors name the key and the fix).
facts="$("$CXR_PYTHON" -m cxrlib.plan "$name")"
eval "$facts"  # set apart so that a plan error stops the script (set -e does not see inside eval's argument)
plan_commit="$(git log --diff-filter=A --format=%H -- "$document" | tail -n 1)"
if [[ -z "$plan_commit" ]]; then
    echo "error: no commit adds $document (the plan of $plan_file); commit the plan before the study runs" >&2
    exit 1
fi
if ! git cat-file -e "$plan_commit:$plan_file" 2> /dev/null; then
    echo "error: $plan_file is not in the plan's commit $plan_commit; commit both together, before any run" >&2
    exit 1
fi
source scripts/worktree.sh
pinned_worktree "$worktree" "$plan_commit" "the plan's commit"
# The pinned code finds the data this repository's cxrlib finds.
CXR_DATA_DIR="${CXR_DATA_DIR:-$("$CXR_PYTHON" -c 'from cxrlib import data; print(data.locate_data())')}"
export CXR_DATA_DIR
cpu="$("$CXR_PYTHON" -c 'from cxrlib import runtime; print(runtime.cpu_kind())')"

for seed in "${seeds[@]}"; do
    done_already=true
    for arch in "${archs[@]}"; do
        git ls-files --error-unmatch "$records/$arch/seed-$seed/predictions.csv" > /dev/null 2>&1 || done_already=false
    done
    if $done_already; then
        echo "replicate seed $seed: records committed, skipped"
        continue
    fi
    echo "replicate seed $seed: training ${archs[*]} on $cpu, started $(date -u '+%Y-%m-%d %H:%M') UTC"
    (cd "$worktree" && ./run_all.sh --profile "$profile" --set "seeds=[$seed]" --set split_seed=null --only 02 \
        --only 03 --runs-dir "runs/$name/seed-$seed" --reports-dir "reports/$name/seed-$seed")
    for arch in "${archs[@]}"; do
        mkdir -p "$records/$arch/seed-$seed"
        cp "$worktree/reports/$name/seed-$seed/$profile/runs/$arch/seed-$seed/"{run.json,history.csv,predictions.csv} \
           "$records/$arch/seed-$seed/"
    done
    cp "$worktree/reports/$name/seed-$seed/$profile/runner.json" "$records/runner-seed-$seed.json"
    commit_paths "Study $name: replicate seed $seed ($cpu, finished $(date -u '+%Y-%m-%d %H:%M') UTC)" \
        "$records"/*/"seed-$seed" "$records/runner-seed-$seed.json"
    echo "replicate seed $seed: committed $(git rev-parse --short HEAD)"
done
echo "study $name: every replicate committed; render it with ./run_all.sh --profile $profile --only 04 --set study=$name"
