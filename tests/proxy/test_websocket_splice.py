"""The WebSocket splice passes bytes on at once (``send_now``) without reordering them,
whether the kernel takes a write whole, in part, or not at all (a client that stops
reading while the server floods, then reads again).  Real sockets, the stdlib stand-in."""

from __future__ import annotations

import json
import time

import pytest_twisted
import websocket
from test_proxy import backend, in_thread, proxy  # noqa: F401 (fixtures)

from stand_in_backend import BLOCK


@pytest_twisted.ensureDeferred
async def test_many_small_messages_both_ways_keep_their_order(proxy):  # noqa: F811
    url, gate = proxy

    def session():
        ws = websocket.create_connection(url.replace("http", "ws") + "/user/alice/ws",
                                         timeout=30)
        json.loads(ws.recv())  # the stand-in's hello
        sent = [f"m{i}:" + "x" * (i % 97) for i in range(2000)]
        for m in sent:          # all sent before any echo is read
            ws.send(m)
        echoed = [ws.recv() for _ in sent]
        ws.close()
        return sent, echoed

    sent, echoed = await in_thread(session)
    assert echoed == sent


@pytest_twisted.ensureDeferred
async def test_a_flood_to_a_slow_reader_arrives_whole_and_in_order(proxy):  # noqa: F811
    url, gate = proxy

    def session():
        ws = websocket.create_connection(url.replace("http", "ws") + "/user/alice/ws",
                                         timeout=60)
        json.loads(ws.recv())
        ws.send("flood:24")     # 24 MiB, more than the socket buffers hold
        ws.send("after-the-flood")
        time.sleep(1.0)         # not reading: the proxy must queue, then pause the server
        got = [ws.recv() for _ in range(24)]
        last = ws.recv()
        ws.close()
        return got, last

    got, last = await in_thread(session)
    assert all(m == BLOCK for m in got)
    assert last == "after-the-flood"
