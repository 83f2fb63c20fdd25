"""Shared fixtures.  Tests that need Docker, Redis or the notebook image use the real ones;
`.ci/run` installs and starts them before the suite runs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support import TEST_IMAGE, Daemon  # noqa: E402


@pytest.fixture(scope="session")
def notebook_image() -> str:
    out = subprocess.run(["docker", "image", "inspect", TEST_IMAGE], capture_output=True)
    if out.returncode != 0:
        pytest.fail(f"test image {TEST_IMAGE} missing: run `ipydoc image build --tag "
                    f"{TEST_IMAGE}` (.ci/run does)")
    return TEST_IMAGE


@pytest.fixture
def make_daemon(tmp_path_factory, notebook_image):
    """Factory for daemons under test; stops them and removes their containers after."""
    made: list[Daemon] = []

    def make(**overrides) -> Daemon:
        d = Daemon(tmp_path_factory.mktemp("ipydoc"), overrides)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()
        d.cleanup_docker()


@pytest.fixture(scope="session")
def redis_server_path(tmp_path_factory):
    """A real redis-server on a unix socket, for store-level tests."""
    root = tmp_path_factory.mktemp("redis")
    sock = root / "redis.sock"
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", "0",
                             "--unixsocket", str(sock), "--save", "", "--appendonly", "no",
                             "--dir", str(root)], stdout=subprocess.DEVNULL)
    import time
    for _ in range(200):
        if sock.exists():
            break
        time.sleep(0.02)
    yield str(sock)
    proc.terminate()
    proc.wait()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Let fixtures see whether their test failed (for screenshots of the failure)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        item.failed = True


def pytest_sessionfinish(session, exitstatus):
    """Static-cache helpers (created, never started) that a test daemon killed while it
    read the image left behind: removed, so a run leaves nothing on the engine.  Only test
    instances' (``t`` + 6 hex digits, see support.Daemon); never fails the run."""
    try:
        out = subprocess.run(
            ["docker", "ps", "-a", "--filter", "label=ipydoc.helper=static", "--filter",
             "status=created", "--format", '{{.ID}} {{.Label "ipydoc.instance"}}'],
            capture_output=True, text=True, timeout=30).stdout
        ids = [cid for cid, _, inst in (line.partition(" ") for line in out.splitlines())
               if re.fullmatch(r"t[0-9a-f]{6}", inst)]
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=60)
    except Exception:  # noqa: BLE001 - housekeeping after the run, never its outcome
        pass
