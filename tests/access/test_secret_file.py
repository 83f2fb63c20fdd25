"""The signing secret file: made once, 0600, and the same for daemons that start together
on one fresh state directory (several daemons over one Redis share it)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from ipydoc.access.cookies import load_secret

MAKE = ("import sys; from pathlib import Path; from ipydoc.access.cookies import load_secret; "
        "sys.stdout.write(load_secret(Path(sys.argv[1])).hex())")


def test_made_once_private_and_kept(tmp_path):
    path = tmp_path / "state" / "secret"
    first = load_secret(path)
    assert len(first) == 64
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_secret(path) == first
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret"]  # no temp file left


def test_a_truncated_secret_is_replaced(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(b"short")
    made = load_secret(path)
    assert len(made) == 64 and path.read_bytes() == made


def test_daemons_starting_together_share_one_secret(tmp_path):
    path = tmp_path / "secret"
    procs = [subprocess.Popen([sys.executable, "-c", MAKE, str(path)], stdout=subprocess.PIPE,
                              text=True) for _ in range(8)]
    seen = {p.communicate(timeout=60)[0] for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert seen == {path.read_bytes().hex()}
