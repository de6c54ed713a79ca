"""scripts/worktree.sh: long work (a study, a search) runs from a pinned commit in a git worktree."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

HELPER = Path(__file__).resolve().parents[1] / "scripts" / "worktree.sh"


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` and return its stdout."""
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture()
def two_commits(tmp_path):
    """A repository with two commits; returns (repo, first commit, second commit)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "test@example.org")
    git(repo, "config", "user.name", "test")
    commits = []
    for text in ("plan v1", "plan v2"):
        (repo / "plan.md").write_text(text)
        git(repo, "add", "plan.md")
        git(repo, "commit", "-q", "-m", text)
        commits.append(git(repo, "rev-parse", "HEAD"))
    return repo, *commits


def pin(repo: Path, worktree: Path, commit: str) -> subprocess.CompletedProcess:
    """Source the helper in `repo` and pin `worktree` to `commit`."""
    script = f'set -euo pipefail; source "{HELPER}"; pinned_worktree "{worktree}" {commit} "the plan\'s commit"'
    return subprocess.run(["bash", "-c", script], cwd=repo, capture_output=True, text=True)


def test_pinned_worktree_checks_out_the_commit_and_reuses_it(two_commits, tmp_path):
    repo, first, _ = two_commits
    worktree = tmp_path / "pinned"
    for _ in range(2):  # created, then found at the right commit
        assert pin(repo, worktree, first).returncode == 0
        assert git(worktree, "rev-parse", "HEAD") == first
        assert (worktree / "plan.md").read_text() == "plan v1"


def test_pinned_worktree_refuses_a_directory_at_another_commit(two_commits, tmp_path):
    repo, first, second = two_commits
    worktree = tmp_path / "pinned"
    assert pin(repo, worktree, first).returncode == 0
    refused = pin(repo, worktree, second)
    assert refused.returncode == 1
    assert f"is not at the plan's commit ({second})" in refused.stderr
    assert f"git worktree remove --force {worktree}" in refused.stderr
    assert git(worktree, "rev-parse", "HEAD") == first  # left as it was


def test_commit_paths_commits_only_the_named_files(two_commits):
    repo, *_ = two_commits
    (repo / "record.csv").write_text("seed,value\n1,0.9\n")
    (repo / "plan.md").write_text("an unrelated edit")
    (repo / "staged.txt").write_text("staged by someone else")
    git(repo, "add", "staged.txt")
    script = f'set -euo pipefail; source "{HELPER}"; commit_paths "records of seed 1" record.csv'
    subprocess.run(["bash", "-c", script], cwd=repo, check=True)
    assert git(repo, "log", "-1", "--format=%s") == "records of seed 1"
    assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == ["record.csv"]
    assert {line.strip() for line in git(repo, "status", "--porcelain").splitlines()} == {"M plan.md", "A  staged.txt"}
    subprocess.run(["bash", "-c", script], cwd=repo, check=True)  # nothing new: no empty commit
    assert git(repo, "rev-list", "--count", "HEAD") == "3"
