"""HSTS: ``Strict-Transport-Security`` on every response the site sends over TLS."""

from __future__ import annotations


def hsts_value(max_age: int, include_subdomains: bool) -> bytes:
    return b"max-age=%d" % max_age + (b"; includeSubDomains" if include_subdomains else b"")


def with_hsts(request_class: type, value: bytes) -> type:
    """``request_class`` adding ``Strict-Transport-Security`` to responses sent over TLS.

    Set as the header goes out (the first ``write``, which ``finish`` also makes), so it
    is on hub pages and proxied responses alike, whatever headers they set before.
    """

    class HSTSRequest(request_class):  # type: ignore[misc, valid-type]
        def write(self, data: bytes) -> None:
            if not self.startedWriting and self.isSecure():
                self.responseHeaders.setRawHeaders(b"strict-transport-security", [value])
            super().write(data)

    HSTSRequest.__name__ = f"HSTS{request_class.__name__}"
    return HSTSRequest
