"""The private Twisted names ipydoc relies on are still there and still behave.

setup.py pins Twisted to the range these were checked against.  Before widening the
pin, run this file against the new Twisted: each check names the private name, the
ipydoc module using it and what it is used for, so a failure says what to rework.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from twisted.copyright import version as TWISTED
from twisted.internet import abstract, tcp, unix
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols import basic
from twisted.web import http, server
from twisted.web.resource import Resource

from ipydoc.edge.inherited_sockets import _SharedUnixPort
from ipydoc.edge.limits import RequestLimits
from ipydoc.edge.request_rules import StrictChannel, StrictChunkedDecoder, channel_factory

SETUP = Path(__file__).resolve().parents[2] / "setup.py"


@contextmanager
def private(name: str, used_by: str) -> Iterator[None]:
    """Turn any failure inside into one loud line naming ``name`` and its user."""
    try:
        yield
    except (AttributeError, TypeError, ValueError, AssertionError, KeyError) as e:
        pytest.fail(f"Twisted {TWISTED}: private {name} (used by {used_by}) "
                    f"disappeared or changed: {type(e).__name__}: {e}", pytrace=False)


def params(func: Callable[..., object]) -> list[str]:
    return list(inspect.signature(func).parameters)


class _Hold(Resource):
    """Answers nothing until told to: a request stays under way."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[server.Request] = []

    def render(self, request: server.Request) -> object:
        self.requests.append(request)
        return server.NOT_DONE_YET


def _connect() -> tuple[StrictChannel, StringTransport, _Hold]:
    hold = _Hold()
    site = server.Site(hold, reactor=MemoryReactorClock())
    site.protocol = channel_factory(RequestLimits())
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    assert isinstance(channel, StrictChannel)
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport, hold


def test_installed_twisted_is_inside_the_pinned_range():
    pin = re.search(r'"twisted\[tls\]([^"]*)"', SETUP.read_text())
    assert pin is not None, "setup.py: no twisted[tls] requirement"
    spec = SpecifierSet(pin.group(1))
    assert "<" in pin.group(1), f"setup.py: twisted{spec} has no upper bound"
    assert TWISTED in spec, (
        f"Twisted {TWISTED} is outside setup.py's twisted{spec}: run this file "
        "against it and move the pin only if it passes")


def test_chunked_decoder_can_be_subclassed_and_built():
    where = "ipydoc.edge.request_rules.StrictChunkedDecoder, ipydoc.proxy.websocket"
    with private("twisted.web.http._ChunkedTransferDecoder", where):
        cls = http._ChunkedTransferDecoder
        assert params(cls.__init__)[1:] == ["dataCallback", "finishCallback"]
        assert params(cls.dataReceived)[1:] == ["data"]
        got: list[bytes] = []
        done: list[bytes] = []
        decoder = cls(got.append, done.append)
        assert decoder.dataCallback == got.append and decoder.finishCallback == done.append
        decoder.dataReceived(b"5\r\nhello\r\n0\r\n\r\n")
        assert b"".join(got) == b"hello" and done == [b""]
    with private("_ChunkedTransferDecoder._dataReceived_CHUNK_LENGTH and ._buffer",
                 "ipydoc.edge.request_rules.StrictChunkedDecoder"):
        assert params(cls._dataReceived_CHUNK_LENGTH) == ["self"]
        assert isinstance(cls(got.append, done.append)._buffer, bytearray)
        strict = StrictChunkedDecoder(got.append, done.append)
        with pytest.raises(http._MalformedChunkedDataError):
            strict.dataReceived(b"1000000000000000\r\n")  # 16 hex digits: our override ran


def test_malformed_chunk_error_is_an_exception():
    with private("twisted.web.http._MalformedChunkedDataError",
                 "ipydoc.edge.request_rules"):
        assert issubclass(http._MalformedChunkedDataError, Exception)
        assert str(http._MalformedChunkedDataError("why")) == "why"


def test_channel_hooks_the_strict_channel_overrides():
    where = "ipydoc.edge.request_rules.StrictChannel"
    with private("HTTPChannel._maybeChooseTransferDecoder(header, data)", where):
        assert params(http.HTTPChannel._maybeChooseTransferDecoder)[1:] == ["header", "data"]
    with private("HTTPChannel._respondToBadRequestAndDisconnect()", where):
        assert params(http.HTTPChannel._respondToBadRequestAndDisconnect) == ["self"]
    with private("HTTPChannel._transferDecoder", where):
        assert http.HTTPChannel()._transferDecoder is None


def test_a_chunked_request_gets_the_strict_decoder():
    channel, transport, hold = _connect()
    with private("HTTPChannel._maybeChooseTransferDecoder / ._transferDecoder",
                 "ipydoc.edge.request_rules.StrictChannel (stricter chunk sizes)"):
        channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert type(channel._transferDecoder) is StrictChunkedDecoder
        channel.dataReceived(b"1000000000000000\r\n")
        assert transport.value().startswith(b"HTTP/1.1 400 "), transport.value()


def test_a_bad_request_line_goes_through_our_refusal():
    channel, transport, _ = _connect()
    with private("HTTPChannel._respondToBadRequestAndDisconnect()",
                 "ipydoc.edge.request_rules.StrictChannel.refuse (logged refusals)"):
        channel.dataReceived(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")
        assert b"The request is malformed." in transport.value(), transport.value()


def test_coding_before_chunked_reaches_our_framing_rules():
    channel, transport, _ = _connect()
    with private("HTTPChannel._maybeChooseTransferDecoder(header, data)",
                 "ipydoc.edge.request_rules.StrictChannel (Transfer-Encoding rules)"):
        channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\n"
                             b"Transfer-Encoding: gzip, chunked\r\n\r\n")
        assert transport.value().startswith(b"HTTP/1.1 501 "), transport.value()


def test_line_buffer_and_request_state_are_readable():
    channel, transport, hold = _connect()
    with private("LineReceiver._buffer", "ipydoc.edge.request_rules.StrictChannel._mid_head"):
        assert isinstance(basic.LineReceiver._buffer, bytes)
        channel.dataReceived(b"GE")
        assert channel._buffer == b"GE"
    with private("HTTPChannel._handlingRequest",
                 "ipydoc.edge.request_rules.StrictChannel._mid_head"):
        assert channel._handlingRequest is False
        channel.dataReceived(b"T / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert len(hold.requests) == 1 and channel._handlingRequest is True
    with private("HTTPChannel._dataBuffer (pipelined bytes read while a request is handled)",
                 "ipydoc.proxy.websocket._splice"):
        channel.dataReceived(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"".join(channel._dataBuffer) == b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
    with private("Request._disconnected", "ipydoc.proxy (handler, http, replies, websocket)"):
        request = hold.requests[0]
        assert request._disconnected is False
        channel.connectionLost(Exception("gone"))
        assert request._disconnected is True
    with private("HTTPChannel._handlingRequest",
                 "ipydoc.edge.request_rules.StrictChannel._mid_head"):
        hold2 = _connect()
        hold2[0].dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        hold2[2].requests[0].finish()
        assert hold2[0]._handlingRequest is False


def test_tcp_connection_send_state_is_readable():
    where = "ipydoc.proxy.sendnow.send_now"
    fd = abstract.FileDescriptor(reactor=MemoryReactorClock())
    fd.connected = 1
    with private("FileDescriptor._writeDisconnected", where):
        assert fd._writeDisconnected is False
    with private("FileDescriptor._tempDataLen (bytes written, not yet sent)", where):
        assert fd._tempDataLen == 0
        fd.write(b"queued")
        assert fd._tempDataLen == len(b"queued")
    with private("FileDescriptor.dataBuffer", where):
        assert fd.dataBuffer == b""


def test_an_adopted_listener_is_closed_without_ending_it_for_other_processes():
    """A worker of ``ipydoc serve`` adopts listeners its supervisor and its successor
    also hold: closing its copy must neither unlink the unix socket file nor shutdown()
    the socket (that would stop it listening in every process)."""
    where = "ipydoc.edge.inherited_sockets._SharedUnixPort"
    with private("unix.Port._fromListeningDescriptor (adopting a unix listener)", where):
        assert callable(unix.Port._fromListeningDescriptor)
        assert issubclass(_SharedUnixPort, unix.Port)
    with private("tcp._SocketCloser._shouldShutdown", where):
        assert tcp._SocketCloser._shouldShutdown is True
        assert _SharedUnixPort._shouldShutdown is False


def test_headers_raw_table_and_name_encoder_are_usable():
    """``Headers._rawHeaders`` and ``http_headers._nameEncoder``: :func:`ipydoc.proxy.headers
    .add_checked` adds a value ipydoc's parsers checked without Twisted's sanitizing."""
    from twisted.web.http_headers import Headers

    from ipydoc.proxy.headers import add_checked

    with private("Headers._rawHeaders / http_headers._nameEncoder",
                 "ipydoc.proxy.headers.add_checked"):
        headers = Headers()
        add_checked(headers, [(b"content-type", b"text/plain"), (b"Set-Cookie", b"a=1")])
        add_checked(headers, [(b"set-cookie", b"b=2")])
        assert headers.getRawHeaders(b"Content-Type") == [b"text/plain"]
        assert headers.getRawHeaders(b"set-cookie") == [b"a=1", b"b=2"]
        assert dict(headers.getAllRawHeaders()) == {b"Content-Type": [b"text/plain"],
                                                    b"Set-Cookie": [b"a=1", b"b=2"]}


def test_epoll_reactor_poller_selectables_and_dispatch_are_usable():
    """``EPollReactor._poller``, ``._selectables`` and ``_doReadOrWrite(selectable, fd,
    event)``: :class:`ipydoc.edge.reactor.LeanEPollReactor` polls and dispatches with
    them (without ``callWithLogger``)."""
    import select

    from twisted.internet.epollreactor import EPollReactor

    from ipydoc.edge.reactor import LeanEPollReactor

    where = "ipydoc.edge.reactor.LeanEPollReactor"
    r = LeanEPollReactor()
    try:
        with private("EPollReactor._poller / ._selectables / _doReadOrWrite", where):
            assert isinstance(r._poller, select.epoll)
            assert isinstance(r._selectables, dict)
            assert params(EPollReactor._doReadOrWrite)[1:] == ["selectable", "fd", "event"]
            assert params(EPollReactor.doPoll)[1:] == ["timeout"]
        with private("twisted.internet.base._topHandler / ReactorBase._started", where):
            from twisted.internet import base

            assert hasattr(base._topHandler, "__enter__") and hasattr(base._topHandler, "__exit__")
            assert r._started is False
    finally:
        r._poller.close()
