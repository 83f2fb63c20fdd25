"""The floor of an HTTP proxy written on Twisted: the least HTTP work a gate needs, in as
few Python calls as it can be written.

Between ``bench/twisted_relay.py`` (bytes only) and ipydoc: per request it finds and
splits the request head, reads the session cookie and looks it up in a dict (a cached
session), writes the forwarding head (hop-by-hop headers and the cookie dropped;
``Authorization: token``, ``X-Forwarded-For/Proto/Host/Port`` added), splits the
answer's head, drops its hop-by-hop headers, sends head and body in one ``send`` and
keeps an access-log record (written in batches, as ipydoc's).  One backend connection per
client connection, ``Content-Length`` framing only, no limits, no timeouts, no
WebSocket: NOT a proxy to deploy, a measurement.  ``bench/proxy.py --minimal`` runs it on
the daemon's CPU in front of the same container (``Cookie: ipydoc-session=`` as ipydoc's
target), so its req/s ÷ direct says what any Python proxy on Twisted that does this much
HTTP could reach here (bench/README.md).

    python3 bench/twisted_minimal_http.py BACKEND_HOST BACKEND_PORT LISTEN_PORT TOKEN COOKIE USER
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ipydoc.edge import reactor as lean_reactor  # noqa: E402

lean_reactor.install()

from twisted.internet import protocol, reactor  # noqa: E402
from twisted.internet.task import LoopingCall  # noqa: E402

from ipydoc.proxy.sendnow import send_now  # noqa: E402

HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                 b"transfer-encoding", b"upgrade", b"cookie", b"authorization"})
SESSIONS: dict[bytes, bytes] = {}  # a session cookie → its user
LOG: list[tuple] = []


class Backend(protocol.Protocol):
    front: Front

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self.buf = b""

    def dataReceived(self, data: bytes) -> None:
        buf = self.buf + data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            self.buf = buf
            return
        lines = buf[:end].split(b"\r\n")
        code = int(lines[0][9:12])
        out = [lines[0]]
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            lower = name.lower()
            if lower in HOP:
                continue
            if lower == b"content-length":
                length = int(value)
            out.append(line)
        body_at = end + 4
        if len(buf) - body_at < length:  # wait for the whole (small) body
            self.buf = buf
            return
        self.buf = buf[body_at + length:]
        out.append(b"\r\n")
        send_now(self.front.transport, b"\r\n".join(out) + buf[body_at:body_at + length])
        front = self.front
        LOG.append((time.time(), front.peer, front.method, front.target, code, length,
                    front.agent))

    def connectionLost(self, reason: object = None) -> None:
        self.front.transport.loseConnection()


class Front(protocol.Protocol):
    backend: Backend | None = None

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self.buf = b""
        self.pending: list[bytes] = []
        self.peer = self.transport.getPeer().host.encode()
        self.port = b"%d" % self.transport.getHost().port
        protocol.ClientCreator(reactor, Backend).connectTCP(HOST, PORT).addCallbacks(
            self._connected, lambda _: self.transport.loseConnection())

    def _connected(self, backend: Backend) -> None:
        backend.front, self.backend = self, backend
        if self.pending:
            send_now(backend.transport, b"".join(self.pending))
            self.pending = []

    def dataReceived(self, data: bytes) -> None:
        buf = self.buf + data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            lines = buf[:end].split(b"\r\n")
            buf = buf[end + 4:]
            self.method, self.target, _ = lines[0].split(b" ")
            session = host = None
            self.agent = b"-"
            out = [lines[0]]
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                lower = name.lower()
                value = value.strip()
                if lower == b"cookie":
                    for part in value.split(b";"):
                        key, _, v = part.strip().partition(b"=")
                        if key == b"ipydoc-session":
                            session = SESSIONS.get(v)
                elif lower == b"host":
                    host = value
                elif lower == b"user-agent":
                    self.agent = value
                if lower not in HOP:
                    out.append(line)
            if session is None or not self.target.startswith(b"/user/" + session + b"/"):
                send_now(self.transport, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                continue
            out += [b"Authorization: token " + TOKEN, b"X-Forwarded-For: " + self.peer,
                    b"X-Forwarded-Proto: http", b"X-Forwarded-Host: " + (host or b""),
                    b"X-Forwarded-Port: " + self.port, b"\r\n"]
            head = b"\r\n".join(out)
            if self.backend is None:
                self.pending.append(head)
            else:
                send_now(self.backend.transport, head)
        self.buf = buf

    def connectionLost(self, reason: object = None) -> None:
        if self.backend is not None:
            self.backend.transport.loseConnection()


def flush_log() -> None:
    lines, LOG[:] = list(LOG), []
    with open("/dev/null", "w") as f:
        f.write("".join('%s - - [%f] "%s %s" %d %d "%s"\n' % (
            p.decode(), t, m.decode(), u.decode(), c, n, a.decode())
            for t, p, m, u, c, n, a in lines))


if __name__ == "__main__":
    HOST, PORT, LISTEN = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    TOKEN = sys.argv[4].encode()
    SESSIONS[sys.argv[5].encode()] = sys.argv[6].encode()  # cookie → its user
    LoopingCall(flush_log).start(0.5, now=False)
    reactor.listenTCP(LISTEN, protocol.Factory.forProtocol(Front), interface="127.0.0.1")
    reactor.run()
