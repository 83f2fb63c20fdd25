"""Write to a TCP socket at once when nothing is queued before the data.

A Twisted TCP transport never sends in ``write``: it queues the bytes, asks epoll for
"writable" (an ``epoll_ctl``), sends on the next turn of the reactor loop and then stops
watching (another ``epoll_ctl``).  For a proxy that is two extra syscalls and one more
loop turn for every response head and every request it forwards, on a loop that does
little else.  :func:`send_now` sends straight away when the transport's buffer is empty
and queues only what the kernel did not take, so the order of bytes is kept.

It reads ``tcp.Connection`` internals (``dataBuffer``, ``_tempDataLen``; checked against
Twisted 26.10) and falls back to ``transport.write`` for anything else (TLS, a transport
with data queued, one that is closing).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp


def send_now(transport: Any, data: bytes) -> None:
    """``transport.write(data)``, but sent in this call when the way is clear."""
    if (
        data
        and isinstance(transport, tcp.Connection)
        and transport.connected
        and not transport.disconnecting
        and not getattr(transport, "_writeDisconnected", True)
        and not transport._tempDataLen
        and not transport.dataBuffer
    ):
        try:
            sent = transport.socket.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            sent = 0  # let the transport find the error on its own terms
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
