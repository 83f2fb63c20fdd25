"""bench/twisted_relay.py (the floor target of ``bench/proxy.py --relay``) passes bytes both
ways unchanged, keeps a connection's requests on one backend connection, and closes the
client's side when the backend closes."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support import free_port

RELAY = Path(__file__).resolve().parents[2] / "bench" / "twisted_relay.py"


def _backend(listener: socket.socket, seen: list[bytes], accepted: list[int]) -> None:
    """Echoes each recv back with a prefix; closes after ``bye``."""
    conn, _ = listener.accept()
    accepted.append(1)
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            seen.append(data)
            if data.endswith(b"bye"):
                return
            conn.sendall(b"echo:" + data)


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def test_bytes_pass_both_ways_on_one_backend_connection() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []
    accepted: list[int] = []
    threading.Thread(target=_backend, args=(listener, seen, accepted), daemon=True).start()
    port = free_port()
    relay = subprocess.Popen([sys.executable, str(RELAY), "127.0.0.1",
                              str(listener.getsockname()[1]), str(port)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert relay.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        with client:
            payload = bytes(range(256)) * 64  # every byte value, 16 KiB
            client.sendall(payload)
            assert _recv_exactly(client, len(payload) + 5) == b"echo:" + payload
            client.sendall(b"second")
            assert _recv_exactly(client, 11) == b"echo:second"
            client.sendall(b"bye")
            assert client.recv(10) == b""  # the backend closed: so does the relay
        assert b"".join(seen) == payload + b"second" + b"bye"
        assert accepted == [1]  # one backend connection for the client's whole session
    finally:
        relay.kill()
        relay.wait()
        listener.close()
