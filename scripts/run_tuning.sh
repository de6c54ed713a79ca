#!/usr/bin/env bash
# Runs a declared search into this repository's record (reports/tune-<search>/journal.log), one trial at a time,
# with the code of the commit that last changed its declaration (checked out in a git worktree, so later edits to
# the repository cannot touch a running search), and commits the record (journal.log, trials.csv) after every
# trial. Run it again to continue after an interruption, on this machine or another: lost trials run again.
#   scripts/run_tuning.sh [SEARCH] [WORKTREE_DIR]      (default: cpu, ../cxr-tune-<search> beside the repository)
# Hours long: run it in the background with a log, e.g.  nohup scripts/run_tuning.sh cpu > tune.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
search="${1:-cpu}"
declaration="searches/$search.yaml"
record="reports/tune-$search"
code_commit="$(git log -1 --format=%H -- "$declaration")"
worktree="${2:-$repo/../cxr-tune-$search}"

if [[ -z "$code_commit" ]]; then
    echo "error: $declaration is not committed; a search runs only from a committed declaration" >&2
    exit 1
fi
source scripts/worktree.sh
pinned_worktree "$worktree" "$code_commit" "the last change of $declaration"
source scripts/ensure_env.sh
# The pinned code may predate how this repository finds the data: the search reads what this repository's
# cxrlib finds (data_dir > CXR_DATA_DIR > data/chest_xray > the shared copy beside the repository > download).
CXR_DATA_DIR="${CXR_DATA_DIR:-$("$CXR_PYTHON" -c 'from cxrlib import data; print(data.locate_data())')}"
export CXR_DATA_DIR
mkdir -p "$record"
tune() {  # the worktree's cxrlib (python -m runs the package of the current directory) on this repository's record
    (cd "$worktree" && "$CXR_PYTHON" -m cxrlib.tune "$@" --storage "$repo/$record/journal.log")
}
commit_record() {
    tune export "$search" > /dev/null
    cp "$worktree/$record/trials.csv" "$record/trials.csv"
    commit_paths "$1" "$record/journal.log" "$record/trials.csv"
}

while true; do
    status=0
    tune status "$search" || status=$?
    if [[ $status == 0 ]]; then echo "search $search: finished"; break; fi
    [[ $status == 3 ]] || exit "$status"
    status=0
    tune run "$search" --max-trials 1 || status=$?
    if [[ $status == 3 ]]; then sleep 300; continue; fi  # the remaining trials run on other workers
    [[ $status == 0 ]] || exit "$status"
    commit_record "Search $search: record after trial ($(date -u '+%Y-%m-%d %H:%M') UTC, $(tune status "$search" | tr '\n' ' ' | cut -c1-200))" || true
done
commit_record "Search $search: finished" || true
