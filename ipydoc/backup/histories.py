"""The history repositories in a backup: one ``git bundle`` per user.

``git bundle create --all`` reads the refs once and then packs the objects they reach,
so a commit that lands while the bundle is made is either wholly in it (its ref was read
after it was written: the daemon moves ``main`` only after the commit's objects exist)
or not at all; never half.  A repository with no commit yet cannot be bundled and is
listed in the manifest as empty.  Restore makes a fresh bare repository (the daemon's
own layout, :meth:`ipydoc.history.repo.GitRepo.ensure`) and fetches every ref of the
bundle into it after ``git bundle verify``.
"""

from __future__ import annotations

from pathlib import Path

from ipydoc.history.repo import GitError, GitRepo
from ipydoc.names import InvalidName, validate_name

BUNDLE_TIMEOUT = 3600.0


def history_root(state_dir: Path) -> Path:
    return state_dir / "history"


def users(state_dir: Path) -> list[str]:
    """The users with a repository (directories ``NAME.git`` with a valid name)."""
    root = history_root(state_dir)
    if not root.is_dir():
        return []
    names = []
    for p in sorted(root.glob("*.git")):
        try:
            names.append(validate_name(p.name[:-4]))
        except InvalidName:
            continue
    return names


def bundle(state_dir: Path, name: str, dest: Path, git: str = "git") -> bool:
    """Write ``name``'s repository as a bundle to ``dest``; False when it has no commit."""
    repo = GitRepo(history_root(state_dir) / f"{name}.git", git)
    if repo.head() is None and not repo.run("for-each-ref", "--count=1").strip():
        return False
    repo.run("bundle", "create", "--quiet", str(dest), "--all", timeout=BUNDLE_TIMEOUT)
    return True


def unbundle(state_dir: Path, name: str, src: Path | None, git: str = "git") -> None:
    """Make ``name``'s repository from the bundle ``src`` (None: an empty repository)."""
    repo = GitRepo(history_root(state_dir) / f"{validate_name(name)}.git", git)
    if repo.exists():
        raise GitError(f"{repo.path} exists already")
    repo.ensure()
    if src is None:
        return
    repo.run("bundle", "verify", "--quiet", str(src), timeout=BUNDLE_TIMEOUT)
    repo.run("fetch", "--quiet", "--no-tags", str(src), "+refs/*:refs/*",
             timeout=BUNDLE_TIMEOUT)
