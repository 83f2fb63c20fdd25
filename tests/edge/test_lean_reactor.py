"""The daemon runs :class:`ipydoc.edge.reactor.LeanEPollReactor`, and that reactor keeps
the epoll reactor's contract: every event reaches its handler, a handler that raises
loses its connection (logged) and nobody else's, a descriptor removed by an earlier
event of the same round is skipped."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support import TWISTD, Daemon

LEAN = "reactor class: ipydoc.edge.reactor.LeanEPollReactor."


def _reactor_line(log: str) -> str:
    return next((line.split("] ", 1)[-1] for line in log.splitlines() if "reactor class:" in line), "")


def test_twistd_and_the_supervised_worker_run_the_lean_reactor(tmp_path: Path) -> None:
    for serve in (False, True):
        d = Daemon(tmp_path / ("serve" if serve else "twistd"), serve=serve)
        try:
            d.start()
            assert _reactor_line(d.log()) == LEAN, d.log()[-2000:]
        finally:
            d.stop()


def test_a_reactor_named_on_twistds_command_line_is_kept(tmp_path: Path) -> None:
    d = Daemon(tmp_path)
    d.root.mkdir(parents=True, exist_ok=True)
    d.write_config()
    argv = TWISTD + ["--reactor", "poll", "-n", "--pidfile", str(d.root / "twistd.pid"),
                     "ipydoc", "--config", str(d.config_path)]
    d.proc = subprocess.Popen(argv, stdout=open(d.log_path, "ab"), stderr=subprocess.STDOUT,
                              cwd=d.root)
    try:
        d.wait_ready()
        assert _reactor_line(d.log()) == "reactor class: twisted.internet.pollreactor.PollReactor."
        # it counts no events: adaptive scheduling (ipydoc.edge.scheduling) says so, stays normal
        assert 'proxy.scheduling = "adaptive" needs ipydoc\'s reactor, not PollReactor' in d.log()
    finally:
        d.stop()


SCRIPT = textwrap.dedent('''
    import socket, sys, time
    from ipydoc.edge import reactor as lean
    assert lean.install()
    assert not lean.install()  # a second call leaves the installed one
    from twisted.internet import protocol, reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    conns, got = [], {}

    class Echo(protocol.Protocol):
        def connectionMade(self):
            conns.append(self)
        def dataReceived(self, data):
            got.setdefault(conns.index(self), []).append(data)
            if data == b"boom":
                raise RuntimeError("handler failed")
            if data == b"kill-other":
                for other in conns:
                    if other is not self and other.transport.connected:
                        other.transport.abortConnection()
                return
            self.transport.write(data)

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo),
                             interface="127.0.0.1").getHost().port

    def client():
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(5)
        return s

    def steps():
        a, b = client(), client()
        a.sendall(b"hello"); assert a.recv(100) == b"hello"
        b.sendall(b"boom"); assert b.recv(100) == b""  # the raising one is dropped ...
        a.sendall(b"still"); assert a.recv(100) == b"still"  # ... and only that one
        a.close()
        c, d = client(), client()
        c.sendall(b"up"); d.sendall(b"up")
        assert c.recv(10) == b"up" and d.recv(10) == b"up"
        del conns[:2]; got.clear()
        # both readable in one round (the reactor thread is held meanwhile): the first
        # handled aborts the other, whose event in that round must be skipped
        reactor.callFromThread(time.sleep, 0.5)
        time.sleep(0.1)
        c.sendall(b"kill-other"); d.sendall(b"kill-other")
        time.sleep(1)
        print("handled", sorted(got), flush=True)
        reactor.callFromThread(reactor.stop)

    def fail_one_round():  # an error that reaches the main loop's own handler
        def timeout():
            del reactor.timeout  # the next rounds are normal again
            raise RuntimeError("one round failed")
        reactor.timeout = timeout

    reactor.callWhenRunning(fail_one_round)
    reactor.callInThread(steps)
    reactor.run()
    print("reactor", type(reactor).__name__, flush=True)
''')


def test_the_lean_reactor_dispatches_and_contains_failures() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "RuntimeError: handler failed" in out.stdout  # logged, as Twisted logs it
    # an error out of a round of the main loop is logged, and the loop goes on
    assert "Unexpected error in main loop" in out.stdout, out.stdout
    assert "RuntimeError: one round failed" in out.stdout
    handled = [line.split("] ", 1)[1] for line in out.stdout.splitlines() if "] handled " in line]
    assert handled in (["handled [0]"], ["handled [1]"]), out.stdout  # one of the two, not both
    assert "reactor LeanEPollReactor" in out.stdout
