"""Big transfers go through the proxy without piling up in it.

The proxy runs in its own process (tests/proxy_in_a_process.py) so its peak resident
memory (``VmHWM``) can be read from /proc.  Each transfer is 200 MB with the receiving
side slower than the sending side, so a proxy without backpressure would have to hold
most of it; one that spools the upload (what twisted.web does by default) would not
show the backend a single byte before the client is done, which the upload test
checks midway.
"""

from __future__ import annotations

import hashlib

import pytest
import requests

from stand_in_backend import pattern, spawn, stop
from support import peak_rss

SIZE = 200 * 1024 * 1024
CHUNK = 64 * 1024
#: Allowed growth of the proxy's peak RSS over a whole 200 MB transfer.
MAX_GROWTH = 40 * 1024 * 1024


@pytest.fixture(scope="module")
def servers():
    backend, bport = spawn("stand_in_backend.py")
    backend_url = f"http://127.0.0.1:{bport}"
    proxy, pport = spawn("proxy_in_a_process.py", backend_url)
    url = f"http://127.0.0.1:{pport}"
    assert requests.get(url + "/user/alice/echo", timeout=10).status_code == 200  # warm up
    yield url, backend_url, proxy.pid
    stop(proxy)
    stop(backend)


def test_large_upload_streams_with_flat_memory(servers):
    url, backend_url, pid = servers
    before = peak_rss(pid)
    block = bytes(range(256)) * (CHUNK // 256)
    seen_midway = []

    class Body:
        """SIZE bytes, generated as they are sent (``len`` makes it Content-Length)."""

        def __len__(self) -> int:
            return SIZE

        def __iter__(self):
            for i in range(SIZE // CHUNK):
                if i == SIZE // CHUNK // 2:
                    progress = requests.get(backend_url + "/_stats", timeout=10).json()
                    seen_midway.append(progress["upload_progress"])
                yield block

    r = requests.post(url + "/user/alice/upload?delay=0.0003", data=Body(), timeout=120)
    want = hashlib.sha256()
    for _ in range(SIZE // CHUNK):
        want.update(block)
    assert r.json() == {"sha256": want.hexdigest(), "length": SIZE}
    assert seen_midway[0] > 0, "the backend saw nothing while the upload was under way"
    growth = peak_rss(pid) - before
    assert growth < MAX_GROWTH, f"proxy peak RSS grew by {growth >> 20} MiB"


def test_large_download_streams_with_flat_memory(servers):
    url, _, pid = servers
    import time

    before = peak_rss(pid)
    h = hashlib.sha256()
    n = 0
    with requests.get(url + f"/user/alice/download?size={SIZE}", stream=True, timeout=120) as r:
        for chunk in r.iter_content(CHUNK):
            h.update(chunk)
            n += len(chunk)
            time.sleep(0.0003)  # a slower reader than the backend is a writer
    want = hashlib.sha256()
    for chunk in pattern(SIZE):
        want.update(chunk)
    assert (n, h.hexdigest()) == (SIZE, want.hexdigest())
    growth = peak_rss(pid) - before
    assert growth < MAX_GROWTH, f"proxy peak RSS grew by {growth >> 20} MiB"
