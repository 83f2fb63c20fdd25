"""The floor of any proxy written on Twisted: a bare byte relay, no HTTP at all.

Each client connection gets its own connection to the backend and every byte is passed
on as it comes (``ipydoc.proxy.sendnow.send_now``, on ipydoc's own reactor,
``ipydoc.edge.reactor``): no parsing, no gate, no rewriting, no log.  ``bench/proxy.py
--relay`` runs it on the daemon's CPU in front of the same container, so its req/s ÷
direct is the ceiling a Twisted proxy could reach here, and its CPU per request is what
the reactor and the socket calls alone cost (bench/README.md).

    python3 bench/twisted_relay.py BACKEND_HOST BACKEND_PORT LISTEN_PORT
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ipydoc.edge import reactor as lean_reactor  # noqa: E402

lean_reactor.install()

from twisted.internet import protocol, reactor  # noqa: E402

from ipydoc.proxy.sendnow import send_now  # noqa: E402


class Backend(protocol.Protocol):
    front: Front | None = None

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)  # as ipydoc, CHP and nginx: no Nagle stalls

    def dataReceived(self, data: bytes) -> None:
        assert self.front is not None
        send_now(self.front.transport, data)

    def connectionLost(self, reason: object = None) -> None:
        if self.front is not None:
            self.front.transport.loseConnection()


class Front(protocol.Protocol):
    backend: Backend | None = None

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self.pending: list[bytes] = []
        creator = protocol.ClientCreator(reactor, Backend)
        creator.connectTCP(HOST, PORT).addCallbacks(self._connected, lambda _: self.transport.loseConnection())

    def _connected(self, backend: Backend) -> None:
        backend.front, self.backend = self, backend
        if self.pending:
            send_now(backend.transport, b"".join(self.pending))
            self.pending = []

    def dataReceived(self, data: bytes) -> None:
        if self.backend is None:
            self.pending.append(data)
        else:
            send_now(self.backend.transport, data)

    def connectionLost(self, reason: object = None) -> None:
        if self.backend is not None:
            self.backend.transport.loseConnection()


if __name__ == "__main__":
    HOST, PORT, LISTEN = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    reactor.listenTCP(LISTEN, protocol.Factory.forProtocol(Front), interface="127.0.0.1")
    reactor.run()
