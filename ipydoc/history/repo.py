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
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from twisted.internet import defer, threads

BRANCH = "refs/heads/main"
ZERO = "0" * 40


class GitError(Exception):
    """git refused or failed; the message is git's own, first lines."""


#: ``git log`` records: RS, then id, author time, author, subject (US-separated), NUL.
LOG_FORMAT = "%x1e%H%x1f%at%x1f%an%x1f%s"
#: Rename detection: git's default similarity (50%).  The history worker commits a
#: rename or move on its own (``Rename A to B``: the same blobs at new paths), so its
#: renames are exact (R100) and always found; the threshold only matters for histories
#: whose commits rename and edit at once.
RENAMES = "-M50%"


@dataclass(frozen=True)
class Version:
    rev: str
    time: float
    author: str
    message: str
    change: str = ""     # A(dded), M(odified), D(eleted), R(enamed) for a path's log
    path: str = ""       # the path the file had in this version (a path's log)
    from_path: str = ""  # R: the path it had before

    def as_dict(self) -> dict[str, object]:
        return {"rev": self.rev, "time": self.time, "author": self.author,
                "message": self.message, "change": self.change, "path": self.path,
                "from_path": self.from_path}


@dataclass(frozen=True)
class Entry:
    """One path a commit changed: ``status`` A/M/D/R/T; ``from_path`` for a rename."""
    status: str
    path: str
    from_path: str = ""


@dataclass(frozen=True)
class Commit:
    rev: str
    time: float
    author: str
    message: str
    entries: tuple[Entry, ...] = ()


def parse_log(out: bytes) -> list[Commit]:
    """The commits of ``git log --format=LOG_FORMAT [--name-status] -z``."""
    commits = []
    for record in out.decode("utf-8", "surrogateescape").split("\x1e"):
        if not record.strip("\0\n"):
            continue
        head, _, rest = record.partition("\0")
        rev, at, author, subject = (head.split("\x1f") + ["", "", "", ""])[:4]
        commits.append(Commit(rev, float(at or 0), author, subject,
                              tuple(parse_entries(rest.lstrip("\n")))))
    return commits


def parse_entries(text: str) -> list[Entry]:
    """The changes of ``--name-status -z``: ``STATUS\\0PATH\\0`` or, for a rename or
    copy, ``STATUS\\0OLD\\0NEW\\0``."""
    tokens = text.split("\0")
    entries, i = [], 0
    while i < len(tokens):
        status = tokens[i].strip()
        if not status:
            i += 1
        elif status[0] in "RC" and i + 2 < len(tokens):
            entries.append(Entry(status[0], tokens[i + 2], tokens[i + 1]))
            i += 3
        elif i + 1 < len(tokens):
            entries.append(Entry(status[0], tokens[i + 1]))
            i += 2
        else:
            break
    return entries


def lineages(commits: list[Commit], present: dict[str, tuple[str, int]]
             ) -> dict[str, dict[str, object]]:
    """Every file of ``commits`` (newest first) by its latest path: ``versions`` (commits
    of the file, through renames), ``last`` (time of the latest), ``rev`` (the newest
    commit in which the file exists: what a restore brings back), ``present`` and
    ``size`` at ``present`` (the files at ``main``), ``deleted`` (when, or None).
    A path renamed away is not listed (its versions count under the new path)."""
    files: dict[str, dict[str, object]] = {}
    for c in reversed(commits):
        for e in c.entries:
            item = files.pop(e.from_path, None) if e.status in "RC" and e.from_path \
                else None
            item = item or files.get(e.path) or {"path": e.path, "versions": 0, "last": 0.0,
                                                 "rev": "", "deleted": None}
            item["path"] = e.path
            item["versions"] = int(item["versions"]) + 1  # type: ignore[call-overload]
            item["last"] = c.time
            if e.status == "D":
                item["deleted"] = c.time
            else:
                item["rev"], item["deleted"] = c.rev, None
            files[e.path] = item
    for name, item in files.items():
        item["present"] = name in present
        item["size"] = present[name][1] if name in present else None
        if item["present"]:
            item["deleted"] = None
        elif item["deleted"] is None:
            item["deleted"] = item["last"]  # removed in a commit older than the log read
    return files


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
        """Create the repository if it is missing, atomically.

        ``git init`` writes ``HEAD`` before ``objects/``: a reader that ran in between
        would find a ``HEAD`` (so :meth:`exists`) and then fail with "not a git
        repository".  So the repository is built in a private folder beside its place and
        renamed into it whole; a reader sees no repository or a complete one."""
        if self.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        try:
            there = {"GIT_DIR": str(building)}
            subprocess.run([self.git, "init", "--quiet", "--bare", str(building)],
                           check=True, capture_output=True, env=self._env(there))
            self.run("symbolic-ref", "HEAD", BRANCH, env=there)
            self.run("config", "gc.auto", "256", env=there)
            try:
                building.rename(self.path)
            except OSError:
                if not self.exists():  # not a lost race: a real failure
                    raise
        finally:
            shutil.rmtree(building, ignore_errors=True)

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
        self.tidy()
        return commit

    def tidy(self) -> bool:
        """Pack loose objects once there are enough (``git gc --auto``, ``gc.auto`` = 256).

        The plumbing that :meth:`commit` uses never runs git's automatic gc, and a
        repository of loose objects makes every read of the history 5-20x slower.  The
        check costs ~2 ms; the pack runs in this (worker) thread, not detached, so it is
        bounded and never races the daemon's exit.  Best effort: a failure leaves the
        objects loose, never loses a commit.  True when git did not complain."""
        try:
            self.run("-c", "gc.autoDetach=false", "gc", "--auto", "--quiet", timeout=300)
        except (GitError, subprocess.TimeoutExpired):
            return False
        return True

    # -- reading history -------------------------------------------------------------------
    def log(self, path: str | None = None, limit: int = 500) -> list[Version]:
        """Commits touching ``path`` (or all), newest first.  With a path, the file is
        followed back through renames and moves: each version carries the path the file
        had then, a rename its old path (``from_path``) and change ``R``.

        Not ``git log --follow``: that also takes a *copy* of any unchanged file for the
        file's origin (``--find-copies-harder``), and two small notebooks are over 50%
        alike by their JSON frame alone, so a new notebook would inherit another one's
        versions.  Here the path's own log is read, and each commit that added the path
        is asked (:meth:`renamed_to`) whether it was the target of a rename: if so the
        walk goes on under the old path from that commit's parent."""
        head = self.head()
        if head is None:
            return []
        if not path:
            out = self.run("log", f"--format={LOG_FORMAT}", f"-n{limit}", "--no-renames",
                           "-z", head)
            return [Version(c.rev, c.time, c.author, c.message) for c in parse_log(out)]
        versions: list[Version] = []
        start: str | None = head
        current = path
        while start and len(versions) < limit:
            out = self.run("log", f"--format={LOG_FORMAT}", f"-n{limit - len(versions)}",
                           "--no-renames", "--name-status", "-z", start, "--", current)
            start = None
            for c in parse_log(out):
                mine = [e for e in c.entries if e.path == current] or list(c.entries[:1])
                e = mine[0] if mine else Entry("", current)
                source = self.renamed_to(c.rev, current) if e.status == "A" else None
                versions.append(Version(c.rev, c.time, c.author, c.message,
                                        "R" if source else e.status, e.path, source or ""))
                if source:
                    start, current = self.parent(c.rev), source
                    break
        return versions

    def renamed_to(self, rev: str, path: str) -> str | None:
        """The old path of a rename to ``path`` in commit ``rev``, if it was one."""
        out = self.run("diff-tree", "-r", RENAMES, "--root", "--no-commit-id",
                       "--name-status", "-z", rev)
        found = [e.from_path for e in parse_entries(out.decode("utf-8", "surrogateescape"))
                 if e.status == "R" and e.path == path]
        return found[0] if found else None

    def parent(self, rev: str) -> str | None:
        out = self.run("rev-parse", "-q", "--verify", rev + "^", ok=(0, 1, 128))
        return out.decode().strip() or None

    def history(self, limit: int = 5000) -> list[Commit]:
        """Every commit (newest first) with its changes, renames detected (``R``)."""
        head = self.head()
        if head is None:
            return []
        return parse_log(self.run("log", f"--format={LOG_FORMAT}", f"-n{limit}", RENAMES,
                                  "--name-status", "-z", head))

    def is_ancestor(self, older: str, newer: str) -> bool:
        """Is commit ``older`` ``newer`` itself or one of its ancestors?"""
        out = subprocess.run([self.git, "merge-base", "--is-ancestor", older, newer],
                             capture_output=True, env=self._env(), timeout=60)
        return out.returncode == 0

    def summary(self, limit: int = 5000) -> dict[str, dict[str, object]]:
        """Every file of the history, present or deleted (a file renamed away is listed
        under its new path, with the versions it had before): see :func:`lineages`."""
        return lineages(self.history(limit), self.files())

    def bundle(self, dest: Path) -> int:
        """Write the whole history as a git bundle (``git bundle create --all``) to
        ``dest``; its size.  :class:`GitError` when there is nothing to bundle yet."""
        if self.head() is None:
            raise GitError("git bundle: the history is empty")
        self.run("bundle", "create", "--quiet", str(dest), "--all", timeout=600)
        return dest.stat().st_size

    def bundle_file(self) -> tuple[IO[bytes], int, str]:
        """The bundle in a private temp folder next to the repository, opened and then
        unlinked (a crash leaves nothing behind): (file, size, sha256).  The caller
        closes the file."""
        folder = Path(tempfile.mkdtemp(prefix=".bundle-", dir=self.path.parent))
        try:
            path = folder / "history.bundle"
            size = self.bundle(path)
            f = path.open("rb")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        digest = hashlib.sha256()
        while chunk := f.read(1 << 20):
            digest.update(chunk)
        f.seek(0)
        return f, size, digest.hexdigest()


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
