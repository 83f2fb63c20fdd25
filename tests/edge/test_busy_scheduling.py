"""``proxy.scheduling``: the daemon's reactor thread runs as ``SCHED_BATCH`` while traffic
is heavy and normally otherwise (``"adaptive"``), never (``"normal"``) or always
(``"batch"``), on the real daemon under real load (ipydoc.edge.scheduling)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ipydoc.config import proxy as proxy_config
from ipydoc.config.errors import ConfigError
from ipydoc.config.load import from_dict
from ipydoc.edge import scheduling
from ipydoc.edge.scheduling import next_batch
from tests.support import Daemon


def policy(pid: int) -> int:
    """The policy of a process's main thread (the daemon's reactor thread)."""
    return os.sched_getscheduler(pid)


def wait_policy(pid: int, want: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and policy(pid) != want:
        time.sleep(0.05)
    return policy(pid)


@contextmanager
def load(d: Daemon) -> Iterator[list[int]]:
    """Requests back to back on one keep-alive connection (the lean front end answers a
    user path without a session at once) until the block ends; yields the answer count."""
    stop, answered = threading.Event(), [0]

    def run() -> None:
        with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
            req = (f"GET /user/nobody/api/status HTTP/1.1\r\nHost: 127.0.0.1:{d.port}\r\n"
                   "Accept: application/json\r\n\r\n").encode()
            buf = b""
            while not stop.is_set():
                s.sendall(req)
                while b"\r\n\r\n" not in buf:
                    buf += s.recv(65536)
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:")))
                while len(buf) < length:
                    buf += s.recv(65536)
                buf = buf[length:]
                answered[0] += 1

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield answered
    finally:
        stop.set()
        t.join(10)


def test_the_switch_has_a_gap_so_a_rate_near_the_line_does_not_flap() -> None:
    busy = 1000.0
    assert not next_batch(False, 999, busy)
    assert next_batch(False, 1000, busy)
    assert next_batch(True, 600, busy)  # stays busy above half
    assert next_batch(True, 500, busy)
    assert not next_batch(True, 499, busy)
    assert not next_batch(False, 600, busy)  # and normal stays normal below the line


def test_the_setting_defaults_to_adaptive_and_is_checked() -> None:
    p = from_dict({}).proxy
    assert (p.scheduling, p.busy_events) == ("adaptive", 1000)
    assert proxy_config.SCHEDULING == scheduling.MODES
    with pytest.raises(ConfigError, match="proxy.scheduling must be one of 'adaptive', "
                                          "'normal', 'batch', not 'fifo'"):
        from_dict({"proxy": {"scheduling": "fifo"}})
    with pytest.raises(ConfigError, match="proxy.busy_events must be positive"):
        from_dict({"proxy": {"busy_events": 0}})
    with pytest.raises(ConfigError, match="proxy.busy_events must be a whole number"):
        from_dict({"proxy": {"busy_events": "lots"}})


def test_adaptive_turns_batch_under_load_and_back_when_it_ends(tmp_path: Path) -> None:
    # Started as SCHED_BATCH (inherited, as from a worker that was busy): set back at start.
    os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    d = Daemon(tmp_path, {"proxy": {"busy_events": 300}})
    try:
        d.start()
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    try:
        pid = d.proc.pid
        assert wait_policy(pid, os.SCHED_OTHER) == os.SCHED_OTHER
        with load(d) as answered:
            assert wait_policy(pid, os.SCHED_BATCH) == os.SCHED_BATCH, (answered, d.log()[-2000:])
            assert answered[0] > 0
        assert wait_policy(pid, os.SCHED_OTHER) == os.SCHED_OTHER, d.log()[-2000:]
        log = d.log()
        assert "proxy scheduling: batch (busy) at" in log
        assert "proxy scheduling: normal at" in log
    finally:
        d.stop()


def test_normal_never_switches_and_batch_always_is(tmp_path: Path) -> None:
    normal = Daemon(tmp_path / "normal", {"proxy": {"scheduling": "normal", "busy_events": 300}})
    normal.start()
    try:
        with load(normal) as answered:
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                assert policy(normal.proc.pid) == os.SCHED_OTHER
                time.sleep(0.05)
            assert answered[0] > 300  # well past busy_events: it would have switched
    finally:
        normal.stop()
    batch = Daemon(tmp_path / "batch", {"proxy": {"scheduling": "batch"}})
    batch.start()
    try:
        assert policy(batch.proc.pid) == os.SCHED_BATCH
    finally:
        batch.stop()


class _Reader:
    """A readable socket for the reactor: every byte sent to it is one event."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> None:
        self.sock.recv(4096)

    def logPrefix(self) -> str:
        return "reader"

    def connectionLost(self, reason: object) -> None:
        pass


def test_the_switch_to_batch_comes_as_soon_as_a_window_holds_the_line() -> None:
    """The reactor counts events and calls back at the window's line: the switch needs no
    look at the end of a window (none runs here: this reactor is driven by hand)."""
    from ipydoc.edge.reactor import LeanEPollReactor

    reactor = LeanEPollReactor()
    a, b = socket.socketpair()
    reader = _Reader(a)
    reactor.addReader(reader)
    busy = scheduling.BusyScheduling(reactor, "adaptive", busy_events=100)
    busy.startService()
    try:
        line = int(100 * scheduling.WINDOW)
        start = reactor.events
        while reactor.events - start < line - 1:
            b.send(b"x")
            reactor.doPoll(1)
        assert (busy.batch, policy(0)) == (False, os.SCHED_OTHER)  # one event short
        b.send(b"x")
        reactor.doPoll(1)
        assert reactor.events - start == line
        assert (busy.batch, policy(0)) == (True, os.SCHED_BATCH)
    finally:
        busy.stopService()
        reactor.removeReader(reader)
        a.close()
        b.close()
    assert policy(0) == os.SCHED_OTHER  # stopping sets it back
