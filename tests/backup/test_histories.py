"""History repositories in a backup (ipydoc.backup.histories): real git, real bundles."""

from __future__ import annotations

import pytest

from ipydoc.backup import histories
from ipydoc.history.repo import Change, GitError, GitRepo


def _repo(state, name: str) -> GitRepo:
    return GitRepo(histories.history_root(state) / f"{name}.git")


def test_bundle_and_unbundle_keep_every_version(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    repo = _repo(old, "alice")
    for i in range(3):
        blob = repo.write_blob(f"version {i}\n".encode())
        repo.commit([Change("notes/a.txt", blob)], author="alice", message=f"Save {i}",
                    when=1700000000 + i)
    _repo(old, "empty").ensure()  # a repository with no commit yet
    (histories.history_root(old) / "Not-A-Name.git").mkdir()
    assert histories.users(old) == ["alice", "empty"]

    assert histories.bundle(old, "alice", tmp_path / "alice.bundle") is True
    assert histories.bundle(old, "empty", tmp_path / "empty.bundle") is False
    histories.unbundle(new, "alice", tmp_path / "alice.bundle")
    histories.unbundle(new, "empty", None)

    restored = _repo(new, "alice")
    assert restored.head() == repo.head()
    assert [v.as_dict() for v in restored.log("notes/a.txt")] == \
        [v.as_dict() for v in repo.log("notes/a.txt")]
    assert restored.read(restored.head(), "notes/a.txt") == b"version 2\n"
    assert _repo(new, "empty").exists() and _repo(new, "empty").head() is None
    # the daemon goes on committing in the restored repository
    blob = restored.write_blob(b"version 3\n")
    assert restored.commit([Change("notes/a.txt", blob)], author="alice", message="Save 3",
                           when=1700000010)
    with pytest.raises(GitError, match="exists already"):
        histories.unbundle(new, "alice", tmp_path / "alice.bundle")


def test_a_damaged_bundle_is_refused(tmp_path):
    repo = _repo(tmp_path / "old", "bob")
    repo.commit([Change("a", repo.write_blob(b"a"))], author="bob", message="m", when=1.0)
    bundle = tmp_path / "bob.bundle"
    histories.bundle(tmp_path / "old", "bob", bundle)
    bundle.write_bytes(bundle.read_bytes()[:-40])
    with pytest.raises(GitError):
        histories.unbundle(tmp_path / "new", "bob", bundle)
