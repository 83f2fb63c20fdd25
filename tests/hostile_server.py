"""A user's server gone hostile: stands in for jupyter_server inside the user's container.

A user controls their home, so ``~/.jupyter/jupyter_server_config.py`` can ``os.execv``
any program in place of Jupyter (see :data:`CONFIG`).  This one answers on the port and
base URL ipydoc gave Jupyter, and misbehaves as the mode file ``~/.jupyter/hostile_mode``
says (read at every request; ``POST {base}hostile/mode`` with the mode as body sets it):

``normal``          a tiny honest contents API (files kept in memory), status, kernels
``gzip``            contents GETs of a file's content (the model alone, ``content=0``,
                    is answered honestly) answer a gzip bomb (a few MB inflating to GBs) with
                    ``Content-Encoding: gzip``
``endless``         contents GETs answer an endless chunked body, as fast as it goes
``trickle``         contents GETs declare 1000 bytes and send one a second
``lie``             contents GETs declare ``Content-Length: 40`` and send 100 MB
``status-list``     ``/api/status`` answers ``[]`` and ``/api/kernels`` ``"x"``
``status-string``   ``/api/status`` answers ``"x"`` and ``/api/kernels`` bad JSON
``status-trickle``  ``/api/status`` declares 1000 bytes and sends one a second

Saves (PUT) are always answered at once, like a server that answers every save.
Standard library only (it runs on the image's Python 3.11).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
import zlib
from pathlib import Path

HOME = Path(os.environ.get("HOME", "/home/jovyan"))
MODE_FILE = HOME / ".jupyter" / "hostile_mode"
BOMB_FILE = HOME / ".jupyter" / "bomb.gz"
BOMB_GIB = 2

#: The config file a user puts in ~/.jupyter to run this instead of Jupyter.
CONFIG = """\
import os, sys
os.execv(sys.executable, [sys.executable, os.path.expanduser("~/.jupyter/hostile_server.py"),
                          *sys.argv[1:]])
"""

_bomb: bytes | None = None
_bomb_ready = threading.Event()
files: dict[str, str] = {}


def make_bomb() -> None:
    """A gzip stream of BOMB_GIB GiB of zeros (about 1 MB a GiB), cached in the home."""
    global _bomb
    try:
        _bomb = BOMB_FILE.read_bytes()
    except OSError:
        c = zlib.compressobj(9, zlib.DEFLATED, 31)
        zeros = bytes(1 << 20)
        parts = [c.compress(zeros) for _ in range(BOMB_GIB * 1024)]
        parts.append(c.flush())
        _bomb = b"".join(parts)
        try:
            BOMB_FILE.write_bytes(_bomb)
        except OSError:
            pass
    _bomb_ready.set()


def mode() -> str:
    try:
        return MODE_FILE.read_text().strip() or "normal"
    except OSError:
        return "normal"


def arg(name: str, default: str) -> str:
    for a in sys.argv[1:]:
        if a.startswith(f"--ServerApp.{name}="):
            return a.split("=", 1)[1]
    return default


BASE = arg("base_url", "/")
if not BASE.endswith("/"):
    BASE += "/"


def now_iso(offset: float = 0.0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() + offset))


def model(path: str, content: bool) -> dict:
    text = files.get(path, "")
    m = {"name": path.rsplit("/", 1)[-1], "path": path, "type": "file", "format": None,
         "mimetype": None, "content": None, "writable": True, "size": len(text.encode()),
         "created": now_iso(), "last_modified": now_iso()}
    if content:
        import base64
        m.update(format="base64", content=base64.b64encode(text.encode()).decode())
    return m


async def send(writer: asyncio.StreamWriter, code: int, body: bytes,
               headers: dict[str, str] | None = None) -> None:
    head = [f"HTTP/1.1 {code} X", f"Content-Length: {len(body)}",
            "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()


async def trickle(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n")  # small: only a deadline ends it
    while True:
        writer.write(b" ")
        await writer.drain()
        await asyncio.sleep(1.0)


async def attack(writer: asyncio.StreamWriter, how: str) -> None:
    if how == "gzip":
        await asyncio.get_running_loop().run_in_executor(None, _bomb_ready.wait)
        assert _bomb is not None
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(_bomb))
        for i in range(0, len(_bomb), 1 << 16):
            writer.write(_bomb[i:i + (1 << 16)])
            await writer.drain()
    elif how == "endless":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"10000\r\n" + b"[" * 0x10000 + b"\r\n"
        while True:
            writer.write(chunk)
            await writer.drain()
    elif how == "trickle":
        await trickle(writer)
    elif how == "lie":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 40\r\n\r\n")
        block = b"x" * (1 << 20)
        for _ in range(100):
            writer.write(block)
            await writer.drain()


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        out = b""
        while True:
            size = int((await reader.readline()).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readline()
                return out
            out += await reader.readexactly(size)
            await reader.readline()
    return b""


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            method, target, _ = line.decode("latin-1").split(" ", 2)
            headers: dict[str, str] = {}
            while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            body = await read_body(reader, headers)
            path, _, query = target.partition("?")
            if not path.startswith(BASE):
                await send(writer, 404, b'{"message": "not here"}')
                continue
            rel = path[len(BASE):]
            m = mode()
            if rel == "hostile/mode" and method == "POST":
                MODE_FILE.write_text(body.decode().strip())
                await send(writer, 200, b'{"ok": true}')
            elif rel == "api/status":
                if m == "status-trickle":
                    await trickle(writer)
                elif m == "status-list":
                    await send(writer, 200, b"[]")
                elif m == "status-string":
                    await send(writer, 200, b'"x"')
                else:  # idle for an hour: a culler may stop it
                    await send(writer, 200, json.dumps({
                        "last_activity": now_iso(-3600), "started": now_iso(-3600),
                        "connections": 0, "kernels": 0}).encode())
            elif rel.startswith("api/kernels"):
                if m == "status-list":
                    await send(writer, 200, b'"x"')
                elif m == "status-string":
                    await send(writer, 200, b'{"not json')
                else:
                    await send(writer, 200, b"[]")
            elif rel.startswith("api/contents/"):
                fpath = rel[len("api/contents/"):]
                if method == "PUT":
                    try:
                        files[fpath] = str(json.loads(body).get("content", ""))
                    except ValueError:
                        files[fpath] = ""
                    await send(writer, 200, json.dumps(model(fpath, False)).encode())
                elif method == "GET" and m in ("gzip", "endless", "trickle", "lie") \
                        and "content=0" not in query:  # the read of the content itself
                    await attack(writer, m)
                    writer.close()
                    return
                elif method == "GET":
                    if fpath not in files:
                        await send(writer, 404, b'{"message": "No such file"}')
                    else:
                        await send(writer, 200, json.dumps(
                            model(fpath, "content=0" not in query)).encode())
                else:
                    await send(writer, 405, b"{}")
            else:
                await send(writer, 404, b'{"message": "not here"}')
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        pass
    finally:
        writer.close()


async def main() -> None:
    threading.Thread(target=make_bomb, daemon=True).start()
    server = await asyncio.start_server(handle, arg("ip", "0.0.0.0"), int(arg("port", "8888")))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
