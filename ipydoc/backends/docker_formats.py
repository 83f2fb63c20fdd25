"""What the Engine API sends and expects, decoded and encoded: label filters, image
names for the pull API, the multiplexed log stream, stats documents, the
newline-delimited JSON of the events stream and of progress answers (pull, load).

Pure functions and one body protocol, with no connection of their own, so
:mod:`ipydoc.backends.docker_api` reads as the list of endpoints.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Callable, Iterable, Iterator

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import client as web_client

MAX_EVENT_LINE = 1 << 20  # an events line longer than this is garbage, not an event

log = Logger()


def label_filters(label_filter: dict[str, str | None] | Iterable[str]) -> list[str]:
    if isinstance(label_filter, dict):
        return [k if v is None else f"{k}={v}" for k, v in label_filter.items()]
    return list(label_filter)


def split_image(name: str) -> tuple[str, str | None]:
    """("repo", "tag") for the pull API; a missing tag means latest (never "all tags")."""
    if "@" in name:
        return name, None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, "latest"


def progress_messages(content: bytes) -> Iterator[tuple[str, str]]:
    """The lines of a JSON progress answer (image pull, image load) as ``("error",
    message)`` or ``("stream", text)``; other lines and non-JSON are skipped."""
    for line in content.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        if obj.get("error"):
            detail = obj.get("errorDetail") or {}
            yield "error", str(detail.get("message") or obj["error"])
        elif obj.get("stream"):
            yield "stream", str(obj["stream"]).strip()


def demux_logs(data: bytes) -> str:
    """Docker's multiplexed log stream (8-byte headers) to text; raw (TTY) data as is."""
    out: list[bytes] = []
    i = 0
    n = len(data)
    if n >= 8 and data[0] in (0, 1, 2) and data[1:4] == b"\0\0\0":
        while i + 8 <= n:
            stream, size = struct.unpack(">BxxxL", data[i : i + 8])
            if stream not in (0, 1, 2):
                out.append(data[i:])  # not a header after all: keep the rest verbatim
                i = n
                break
            out.append(data[i + 8 : i + 8 + size])
            i += 8 + size
        out.append(data[i:])
    else:
        out.append(data)
    return b"".join(out).decode("utf-8", "replace")


def summarize_stats(raw: dict) -> dict:
    """``cpu_percent`` (100 = one CPU busy), ``mem_bytes``, ``mem_limit``, ``pids`` of a
    stats document, computed as ``docker stats`` does (memory without the page cache)."""
    def num(d: Any, *path: str) -> float:
        for key in path:
            d = d.get(key) if isinstance(d, dict) else None
        return float(d) if isinstance(d, (int, float)) else 0.0

    cpu, pre = raw.get("cpu_stats") or {}, raw.get("precpu_stats") or {}
    cpu_delta = num(cpu, "cpu_usage", "total_usage") - num(pre, "cpu_usage", "total_usage")
    sys_delta = num(cpu, "system_cpu_usage") - num(pre, "system_cpu_usage")
    online = num(cpu, "online_cpus") or float(
        len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1)
    cpu_percent = cpu_delta / sys_delta * online * 100.0 if cpu_delta > 0 and sys_delta > 0 else 0.0
    mem = raw.get("memory_stats") or {}
    usage = num(mem, "usage")
    # cgroup v1 names the page cache total_inactive_file, v2 inactive_file.
    cache = num(mem, "stats", "total_inactive_file") or num(mem, "stats", "inactive_file")
    if cache < usage:
        usage -= cache
    return {"cpu_percent": round(cpu_percent, 2), "mem_bytes": int(usage),
            "mem_limit": int(num(mem, "limit")), "pids": int(num(raw, "pids_stats", "current"))}


class EventStream(Protocol):
    """Body protocol for ``GET /events``: newline-delimited JSON objects in chunks."""

    def __init__(self, on_event: Callable[[dict], None], finished: Deferred) -> None:
        self._on_event = on_event
        self._finished = finished
        self._buffer = b""
        self._decoder = json.JSONDecoder()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._line(line)
        if len(self._buffer) > MAX_EVENT_LINE:
            log.warn("Docker events: dropping {n} bytes without a newline", n=len(self._buffer))
            self._buffer = b""

    def _line(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").strip()
        pos = 0
        while pos < len(text):
            try:
                obj, end = self._decoder.raw_decode(text, pos)
            except ValueError:
                log.warn("Docker events: skipping a line that is not JSON: {line!r}", line=text[:200])
                return
            pos = end
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if isinstance(obj, dict):
                try:
                    self._on_event(obj)
                except Exception:
                    log.failure("Docker events: the event listener failed")

    def connectionLost(self, reason: Failure = None) -> None:  # noqa: N802 (Twisted API)
        if self._buffer.strip():
            self._line(self._buffer)
            self._buffer = b""
        if self._finished.called:
            return
        # A normal end of body (PotentialDataLoss for an unframed body, or ResponseDone)
        # means the engine closed the stream: fire, so the caller reconnects.
        if reason is None or reason.check(web_client.ResponseDone, web_client.PotentialDataLoss):
            self._finished.callback(None)
        else:
            self._finished.errback(reason)
