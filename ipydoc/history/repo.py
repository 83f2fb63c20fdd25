"""One user's history repository: a bare git repository driven through the ``git`` CLI.

Where: ``state_dir/history/NAME.git``, bare (no work tree: nothing there can be confused
with the user's real files, and nothing but git objects lands on the daemon's disk).
One branch, ``main``.

How commits are made: plumbing only, so no work tree is ever needed.  A private index
file (``NAME.git/ipydoc-index``) is loaded from ``main`` (``read-tree``), edited with
``update-index -z --index-info`` (add, remove, move whole folders), turned into a tree
(``write-tree``) and a commit (``commit-tree``, author = the user), and ``main`` is moved
with ``update-ref NEW OLD`` (compare-and-swap).  A change that leaves the tree as it was
makes no commit.  Paths are literal (``GIT_LITERAL_PATHSPECS``), never globs.

Why the ``git`` CLI and not dulwich: git is on every host that runs Docker, it is what
people inspect the repository with anyway, its plumbing is a stable interface, and no
new dependency is needed.  The calls are blocking ``subprocess.run``\\ s; the history
service runs them in the reactor's thread pool (``deferToThread``), one operation at a
time per user, so the reactor never waits for git.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import defer, threads

BRANCH = "refs/heads/main"
ZERO = "0" * 40


class GitError(Exception):
    """git refused or failed; the message is git's own, first lines."""


@dataclass(frozen=True)
class Version:
    rev: str
    time: float
    author: str
    message: str
    change: str = ""   # A(dded), M(odified), D(eleted) for a path's log

    def as_dict(self) -> dict[str, object]:
        return {"rev": self.rev, "time": self.time, "author": self.author,
                "message": self.message, "change": self.change}


@dataclass(frozen=True)
class Change:
    """One edit of the tree: ``blob`` None removes ``path`` (and everything under it)."""
    path: str
    blob: str | None = None
    mode: str = "100644"


def blob_id(data: bytes) -> str:
    """The id git gives ``data`` as a blob (to compare without writing)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def check_path(path: str) -> str:
    """A repository path: relative, ``/``-separated, no empty, ``.``, ``..`` or ``.git`` part."""
    parts = path.split("/")
    if not path or any(p in ("", ".", "..") or p.lower() == ".git" for p in parts) \
            or "\0" in path or "\\" in path:
        raise ValueError(f"not a path that can be versioned: {path!r}")
    return path


class GitRepo:
    def __init__(self, path: Path, git: str = "git") -> None:
        self.path = path
        self.git = git
        self._index = path / "ipydoc-index"

    # -- running git -----------------------------------------------------------------------
    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update({"GIT_DIR": str(self.path), "GIT_INDEX_FILE": str(self._index),
                    "GIT_LITERAL_PATHSPECS": "1", "GIT_CONFIG_NOSYSTEM": "1",
                    "GIT_TERMINAL_PROMPT": "0", "HOME": str(self.path), "LC_ALL": "C"})
        env.update(extra or {})
        return env

    def run(self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None,
            ok: tuple[int, ...] = (0,), timeout: float = 120) -> bytes:
        out = subprocess.run([self.git, *args], input=input, capture_output=True,
                             env=self._env(env), timeout=timeout)
        if out.returncode not in ok:
            why = out.stderr.decode(errors="replace").strip().splitlines()
            raise GitError(f"git {args[0]}: " + " / ".join(why[:3]) if why
                           else f"git {args[0]} exited {out.returncode}")
        return out.stdout

    # -- repository ------------------------------------------------------------------------
    def exists(self) -> bool:
        return (self.path / "HEAD").is_file()

    def ensure(self) -> None:
        if self.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([self.git, "init", "--quiet", "--bare", str(self.path)],
                       check=True, capture_output=True, env=self._env())
        self.run("symbolic-ref", "HEAD", BRANCH)
        self.run("config", "gc.auto", "256")

    def head(self) -> str | None:
        if not self.exists():
            return None
        out = self.run("rev-parse", "-q", "--verify", BRANCH + "^{commit}", ok=(0, 1))
        return out.decode().strip() or None

    def resolve(self, rev: str) -> str | None:
        """The full id of commit ``rev`` (hex, 4 to 40 digits), or None."""
        if not (4 <= len(rev) <= 40) or any(c not in "0123456789abcdef" for c in rev.lower()):
            return None
        if not self.exists():
            return None
        out = self.run("rev-parse", "-q", "--verify", rev + "^{commit}", ok=(0, 1, 128))
        return out.decode().strip() or None

    def write_blob(self, data: bytes) -> str:
        self.ensure()
        return self.run("hash-object", "-w", "--stdin", input=data).decode().strip()

    def entries(self, path: str, rev: str | None = None) -> list[tuple[str, str, str]]:
        """(mode, blob, path) of ``path`` itself or everything under it, at ``rev``."""
        rev = rev or self.head()
        if rev is None:
            return []
        out = self.run("ls-tree", "-r", "-z", "--full-tree", rev, "--", path)
        found = []
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, name = record.split(b"\t", 1)
            mode, kind, blob = meta.decode().split()
            if kind == "blob":
                found.append((mode, blob, name.decode("utf-8", "surrogateescape")))
        return found

    def files(self, rev: str | None = None) -> dict[str, tuple[str, int]]:
        """Every file at ``rev``: path → (blob, size)."""
        rev = rev or self.head()
        if rev is None:
            return {}
        out = self.run("ls-tree", "-r", "-z", "--long", "--full-tree", rev)
        found = {}
        for record in out.split(b"\0"):
            if record:
                meta, name = record.split(b"\t", 1)
                _mode, _kind, blob, size = meta.decode().split()
                found[name.decode("utf-8", "surrogateescape")] = \
                    (blob, int(size) if size.isdigit() else 0)
        return found

    def read(self, rev: str, path: str) -> bytes | None:
        found = [e for e in self.entries(path, rev) if e[2] == path]
        if not found:
            return None
        return self.run("cat-file", "blob", found[0][1])

    # -- committing ------------------------------------------------------------------------
    def commit(self, changes: list[Change], *, author: str, message: str, when: float,
               moves: list[tuple[str, str]] = ()) -> str | None:
        """Apply ``moves`` (old → new, files or folders) then ``changes``; commit as
        ``author``.  The new commit id, or None when the tree did not change."""
        self.ensure()
        head = self.head()
        if head:
            self.run("read-tree", head)
        else:
            self.run("read-tree", "--empty")
        records: list[bytes] = []
        for old, new in moves:
            for mode, blob, path in self.entries(old, head):
                target = new + path[len(old):]
                records.append(f"0 {ZERO}\t{path}".encode() + b"\0")
                records.append(f"{mode} {blob}\t{check_path(target)}".encode() + b"\0")
        for ch in changes:
            if ch.blob is None:
                for _mode, _blob, path in self.entries(ch.path, head):
                    records.append(f"0 {ZERO}\t{path}".encode() + b"\0")
            else:
                records.append(f"{ch.mode} {ch.blob}\t{check_path(ch.path)}".encode() + b"\0")
        if records:
            self.run("update-index", "-z", "--index-info", input=b"".join(records))
        tree = self.run("write-tree").decode().strip()
        if head and tree == self.run("rev-parse", head + "^{tree}").decode().strip():
            return None
        if not head and not records:
            return None
        stamp = f"@{int(when)} +0000"
        ident = {"GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": f"{author}@ipydoc",
                 "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_NAME": "ipydoc",
                 "GIT_COMMITTER_EMAIL": "ipydoc@localhost", "GIT_COMMITTER_DATE": stamp}
        parents = ["-p", head] if head else []
        commit = self.run("commit-tree", tree, *parents, input=message.encode(),
                          env=ident).decode().strip()
        self.run("update-ref", BRANCH, commit, head or ZERO)
        return commit

    # -- reading history -------------------------------------------------------------------
    def log(self, path: str | None = None, limit: int = 500) -> list[Version]:
        """Commits touching ``path`` (or all), newest first."""
        head = self.head()
        if head is None:
            return []
        fmt = "%x1e%H%x1f%at%x1f%an%x1f%s"
        args = ["log", f"--format={fmt}", f"-n{limit}", "--no-renames", head]
        if path:
            args = ["log", f"--format={fmt}", f"-n{limit}", "--no-renames", "--name-status",
                    "-z", head, "--", path]
        out = self.run(*args).decode("utf-8", "replace")
        versions = []
        for record in out.split("\x1e"):
            if not record.strip():
                continue
            head_line, _, rest = record.partition("\n")
            rev, at, author, subject = (head_line.split("\x1f") + ["", "", "", ""])[:4]
            subject = subject.rstrip("\0")
            change = ""
            if path:
                statuses = [s for s in rest.split("\0") if s.strip()]
                # name-status -z: STATUS\0PATH\0...; the exact path first if present
                pairs = list(zip(statuses[::2], statuses[1::2]))
                exact = [s for s, p in pairs if p == path]
                change = (exact or [s for s, _ in pairs] or [""])[0].strip()
            versions.append(Version(rev, float(at or 0), author, subject, change))
        return versions

    def summary(self, limit: int = 2000) -> dict[str, dict[str, object]]:
        """Every path ever versioned: versions, last change time, present at ``main``."""
        head = self.head()
        if head is None:
            return {}
        out = self.run("log", "--format=%x1e%at", f"-n{limit}", "--no-renames",
                       "--name-only", "-z", head).decode("utf-8", "surrogateescape")
        result: dict[str, dict[str, object]] = {}
        for record in out.split("\x1e"):
            if not record.strip():
                continue
            at, _, rest = record.partition("\n")
            at = at.strip("\0\n") or "0"
            for name in rest.split("\0"):
                name = name.strip("\n")
                if not name:
                    continue
                item = result.setdefault(name, {"path": name, "versions": 0, "last": 0.0})
                item["versions"] = int(item["versions"]) + 1  # type: ignore[call-overload]
                item["last"] = max(float(item["last"]), float(at))  # type: ignore[arg-type]
        present = self.files(head)
        for name, item in result.items():
            item["present"] = name in present
            item["size"] = present[name][1] if name in present else None
        return result


class Repositories:
    """Every user's repository (``root/NAME.git``), and the thread pool git runs in: the
    one place the queue, the read side and the mirror get repositories from."""

    def __init__(self, root: Path, git: str, reactor: Any) -> None:
        self.root = root
        self.git = git
        self.reactor = reactor

    def repo(self, name: str) -> GitRepo:
        return GitRepo(self.root / f"{name}.git", self.git)

    def names(self) -> list[str]:
        """The users who have a repository, in the order of their directories' names."""
        return [p.name[:-4] for p in sorted(self.root.glob("*.git"))]

    def thread(self, fn: Any, *args: Any, **kw: Any) -> defer.Deferred[Any]:
        """``fn(*args, **kw)`` in the reactor's thread pool (git blocks)."""
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                         fn, *args, **kw)
