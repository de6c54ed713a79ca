# Sourced by the scripts that run long work (run_planned_study.sh, run_tuning.sh, run_bf16_parity.sh).
# pinned_worktree DIR COMMIT WHAT: checks out COMMIT (detached) in the git worktree DIR, creating it when absent,
# and refuses a DIR at another commit (WHAT names the commit in errors). Long work runs there so that later edits
# to the repository cannot touch it.
pinned_worktree() {
    local dir="$1" commit="$2" what="$3"
    if [[ ! -d "$dir" ]]; then
        git worktree add --detach "$dir" "$commit"
    fi
    if [[ "$(git -C "$dir" rev-parse HEAD)" != "$commit" ]]; then
        echo "error: $dir is not at $what ($commit); remove it (git worktree remove --force $dir)" \
             "or pass another directory" >&2
        exit 1
    fi
}

# commit_paths MESSAGE PATH...: commit exactly PATHs (staged first; nothing else that is staged), retrying while
# another git command holds the index lock; a warning, not a failure, when it cannot: the files stay for the next.
commit_paths() {
    local message="$1"; shift
    git add -- "$@"
    if git diff --cached --quiet -- "$@"; then return 0; fi
    for attempt in 1 2 3 4 5; do
        if git commit -q -m "$message" -- "$@"; then return 0; fi
        sleep 10
    done
    echo "warning: could not commit $*; the files stay in the working tree for the next commit" >&2
}
