"""ropelib.provenance: what every result records about where it came from."""

from __future__ import annotations

import subprocess

from ropelib.provenance import environment, git_commit, provenance, uncommitted


def test_commit_and_uncommitted_files(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.email=a@b", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "start")
    (tmp_path / "a.txt").write_text("one")
    git("add", "a.txt")
    git("-c", "user.email=a@b", "-c", "user.name=t", "commit", "-q", "-m", "a")
    clean = git_commit(tmp_path)
    assert len(clean) == 40 and uncommitted(tmp_path) == []
    (tmp_path / "a.txt").write_text("two")
    (tmp_path / "new.txt").write_text("untracked files do not count")
    assert git_commit(tmp_path) == clean + "+dirty"
    assert uncommitted(tmp_path) == ["a.txt"]


def test_provenance_record():
    record = provenance(extra="value")
    assert record["extra"] == "value" and "T" in record["date"]
    env = environment()
    assert {"python", "torch", "ropelib", "cpu", "cpu_count", "torch_threads"} <= set(env)


def test_outside_a_checkout_there_is_no_commit(tmp_path):
    assert git_commit(tmp_path) is None and uncommitted(tmp_path) == []


def test_a_declared_commit_wins(tmp_path, monkeypatch):
    """A tree copied to a GPU machine may carry a stale .git: the caller's ROPELIB_COMMIT is used."""
    monkeypatch.setenv("ROPELIB_COMMIT", "abc1234")
    assert git_commit(tmp_path) == "abc1234+declared"
    assert provenance()["commit"] == "abc1234+declared"
