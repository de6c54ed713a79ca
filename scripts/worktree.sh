# Sourced by run_study.sh and run_tuning.sh: pinned_worktree DIR COMMIT WHAT checks out COMMIT (detached) in the
# git worktree DIR, creating it when absent, and refuses a DIR at another commit; WHAT names the commit in errors.
# Long work runs there so that later edits to the repository cannot touch it.
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
