"""A stand-in user server for the proxy tests (run as a script, not collected as tests).

Stdlib only (``http.server``), so the proxy is checked against an HTTP implementation
that is not Twisted.  It reads request bodies itself (Content-Length or chunked) a
chunk at a time, so it sees an upload while it is still arriving, and it counts what
happened on ``GET /_stats`` (asked directly, never through the proxy).

    python3 tests/stand_in_backend.py      # prints the port, then serves
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BLOCK = bytes(range(256)) * 4096  # 1 MiB, the download pattern
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_lock = threading.Lock()
stats = {
    "requests": 0,
    "upload_progress": 0,
    "downloads_completed": 0,
    "downloads_aborted": 0,
    "websockets_closed": 0,
}


def bump(key: str, n: int = 1) -> None:
    with _lock:
        stats[key] += n


def pattern(size: int):
    """The download body: BLOCK repeated, cut at ``size``."""
    while size > 0:
        chunk = BLOCK[: min(size, len(BLOCK))]
        size -= len(chunk)
        yield chunk


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    # -- body reading ------------------------------------------------------------------

    def body_chunks(self, delay: float = 0.0, step: int = 65536):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    data = self.rfile.read(min(left, step))
                    left -= len(data)
                    yield data
                    if delay:
                        time.sleep(delay)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                data = self.rfile.read(min(left, step))
                if not data:
                    raise ConnectionError("body cut short")
                left -= len(data)
                yield data
                if delay:
                    time.sleep(delay)

    def send_json(self, obj, code: int = 200, extra: list[tuple[str, str]] = ()) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        # Not a textual type: the echo reflects the injected token, which the proxy
        # would (rightly) scrub from a text or JSON body.
        self.send_header("Content-Type", "application/vnd.ipydoc-test-echo")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # -- dispatch ----------------------------------------------------------------------

    def handle_any(self) -> None:
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/_stats":
            with _lock:
                return self.send_json(dict(stats))
        bump("requests")
        name = url.path.rsplit("/", 1)[-1]
        getattr(self, "do_" + name.replace("-", "_"), self.do_echo)(q)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any

    def do_echo(self, q) -> None:
        h = hashlib.sha256()
        n = 0
        for chunk in self.body_chunks():
            h.update(chunk)
            n += len(chunk)
        self.send_json(
            {
                "method": self.command,
                "path": self.path,
                "headers": [[k.lower(), v] for k, v in self.headers.items()],
                "sha256": h.hexdigest(),
                "length": n,
            }
        )

    def do_upload(self, q) -> None:
        delay = float(q.get("delay", 0))
        time.sleep(float(q.get("wait", 0)))  # a server slow to start reading the body
        h = hashlib.sha256()
        n = 0
        with _lock:
            stats["upload_progress"] = 0
        for chunk in self.body_chunks(delay=delay):
            h.update(chunk)
            n += len(chunk)
            bump("upload_progress", len(chunk))
        self.send_json({"sha256": h.hexdigest(), "length": n})

    def do_download(self, q) -> None:
        size = int(q["size"])
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        try:
            for chunk in pattern(size):
                self.wfile.write(chunk)
            self.wfile.flush()
        except OSError:
            bump("downloads_aborted")
            self.close_connection = True
            return
        bump("downloads_completed")

    def do_page(self, q) -> None:
        """A page that renders the server token into itself, as jupyter_server's do."""
        token = (self.headers.get("Authorization") or "").split(" ", 1)[-1]
        body = (f'<html data-jupyter-api-token="{token}"><body>' + "x" * 70_000
                + f'<script>var page_config = {{"token": "{token}"}};</script></body></html>')
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_cookies(self, q) -> None:
        body = b"cookies!"
        self.send_response(201, "Made It")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Set-Cookie", "a=1; Path=/user/alice/")
        self.send_header("Set-Cookie", "b=2; Path=/user/alice/; HttpOnly")
        self.send_header("Set-Cookie", "ipydoc-session=planted; Domain=example.org; Path=/")
        self.send_header("Set-Cookie", "c=3; Path=/;  domain=.example.org")
        self.send_header("Connection", "X-Hop-Secret")
        self.send_header("X-Hop-Secret", "must-not-pass")
        self.send_header("Keep-Alive", "timeout=5")
        self.send_header("Proxy-Authenticate", "Basic")
        self.send_header("X-Kept", "yes")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_chunked(self, q) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for part in (b"hello ", b"chunked ", b"world"):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        self.wfile.write(b"0\r\n\r\n")

    def do_sleep(self, q) -> None:
        time.sleep(float(q.get("s", 1)))
        self.send_json({"slept": True})

    def do_ws_refuse(self, q) -> None:
        self.send_json({"message": "no websocket for you"}, code=403)

    def do_ws(self, q) -> None:
        key = self.headers.get("Sec-WebSocket-Key", "").encode()
        if self.headers.get("Upgrade", "").lower() != "websocket" or not key:
            return self.send_json({"message": "not a websocket"}, code=400)
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        hello = json.dumps({"headers": [[k.lower(), v] for k, v in self.headers.items()]})
        self.ws_send(1, hello.encode())
        try:
            self.ws_echo()
        except OSError:
            pass
        finally:
            bump("websockets_closed")

    def ws_echo(self) -> None:
        """Echo messages until EOF or close; "close-now" drops the TCP connection."""
        import socket

        while True:
            frame = self.ws_recv()
            if frame is None:
                return
            opcode, payload = frame
            if opcode == 8:
                self.ws_send(8, payload[:2])
                return
            if payload == b"close-now":
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if payload.startswith(b"flood:"):  # N MiB to a client that may not read them
                for _ in range(int(payload[6:])):
                    self.ws_send(2, BLOCK)
                continue
            if opcode == 9:
                self.ws_send(10, payload)
            elif opcode in (1, 2):
                self.ws_send(opcode, payload)

    def ws_send(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        self.wfile.write(head + payload)
        self.wfile.flush()

    def ws_recv(self):
        """One whole message (fragments joined), or None on EOF."""
        data = bytearray()
        first_opcode = None
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return None
            fin, opcode = head[0] & 0x80, head[0] & 0x0F
            masked, n = head[1] & 0x80, head[1] & 0x7F
            if n == 126:
                n = struct.unpack("!H", self.rfile.read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if masked else b"\0\0\0\0"
            payload = self.rfile.read(n)
            if masked:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 4096 else _unmask(payload, mask)
            if first_opcode is None:
                first_opcode = opcode
            data += payload
            if fin:
                return first_opcode, bytes(data)


def _unmask(payload: bytes, mask: bytes) -> bytes:
    key = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(len(payload), "big")


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()



def spawn(*argv: str):
    """Start ``python3 argv...`` (a script here that prints its port); (process, port)."""
    import os
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.Popen(
        [sys.executable, os.path.join(here, argv[0]), *argv[1:]],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        proc.kill()
        raise RuntimeError(f"{argv[0]} did not start")
    return proc, int(line)


def stop(proc) -> None:
    proc.terminate()
    proc.wait(10)


if __name__ == "__main__":
    main()
