"""Keep the server token out of what a browser receives.

jupyter_server renders its token into its HTML pages (``data-jupyter-api-token``) and
JupyterLab into ``page_config``; the token is a credential that bypasses the proxy, so
textual responses are streamed through :class:`Scrubber`, which removes it even when it
straddles two chunks.  Binary bodies pass untouched.
"""

from __future__ import annotations

TEXTUAL = (b"text/", b"application/json", b"application/javascript", b"application/xhtml")


def is_textual(content_type: bytes | None) -> bool:
    return content_type is None or content_type.lower().lstrip().startswith(TEXTUAL)


def scrub_whole(data: bytes, secret: bytes) -> bytes:
    """``data`` without any ``secret`` (removing one copy can join halves into another)."""
    while data.find(secret) != -1:  # (``find``, not ``in``: docs/front_end.md)
        data = data.replace(secret, b"")
    return data


class Scrubber:
    """Removes every occurrence of ``secret`` from a stream of chunks."""

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("nothing to scrub")
        self._secret = secret
        self._keep = len(secret) - 1
        self._tail = b""

    def feed(self, data: bytes) -> bytes:
        """Scrubbed bytes that are safe to send now (a possible prefix is held back)."""
        buf = scrub_whole(self._tail + data, self._secret)
        if self._keep == 0:
            self._tail = b""
            return buf
        # Hold back only if the end of ``buf`` could start the secret: look only where its
        # first byte occurs in the last len(secret)-1 bytes (usually nowhere).
        first = self._secret[:1]
        i = buf.find(first, max(len(buf) - self._keep, 0))
        while i >= 0:
            if self._secret.startswith(buf[i:]):
                self._tail = buf[i:]
                return buf[:i]
            i = buf.find(first, i + 1)
        self._tail = b""
        return buf

    def flush(self) -> bytes:
        tail, self._tail = self._tail, b""
        return tail
