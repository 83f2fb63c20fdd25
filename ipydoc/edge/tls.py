"""TLS on the public site: certificates from the config, chosen by SNI, reloaded on SIGHUP.

A ``server.listen`` entry starting ``ssl:`` or ``tls:`` is a TLS listener.  After the
prefix comes either a port with Twisted's ``tcp:`` options (``ssl:443:interface=::``) or
a whole stream endpoint (``tls:systemd:domain=INET6:index=0``); ``privateKey=`` and
``certKey=`` name that listener's own default certificate, otherwise ``server.tls_cert``
and ``tls_key`` are it.  Every configured certificate (the defaults and ``tls_certs``)
is a candidate for SNI: the client's server name picks the certificate whose names match
it exactly, then one whose wildcard matches, else the listener's default.

Files are checked with ``cryptography`` first, so a bad one stops the daemon with a
message naming the file and why (``cannot read``, ``no PEM certificate``, ``the key does
not belong to the certificate``...), not an OpenSSL error queue.  The OpenSSL contexts
allow TLS 1.2 and 1.3 only, AEAD ciphers with forward secrecy, server-preferred, ALPN
``http/1.1`` only (the site is HTTP/1.1 only: see ipydoc/edge/site.py).

SIGHUP re-reads every file and swaps in new contexts for new handshakes; connections
already open keep the context they started with.  A file that no longer loads is logged
with its reason and its previous certificate stays in use.  twistd itself uses SIGUSR1
(log rotation), not SIGHUP; a SIGHUP handler installed before ours is still called.
"""

from __future__ import annotations

import datetime
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from twisted.application.service import Service
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from twisted.web import server
from twisted.web.resource import Resource
from zope.interface import implementer

#: TLS 1.2 suites (TLS 1.3 ones are all fine and OpenSSL's defaults): ECDHE + AEAD only.
TLS12_CIPHERS = (b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                 b"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                 b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")

_TLS_PREFIXES = ("ssl:", "tls:")
_OWN_CERT_OPTIONS = ("privateKey", "certKey")
_REFUSED_OPTIONS = ("sslmethod", "extraCertChain", "dhParameters")
_PEM_KEY = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----",
                      re.S)
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]+\]")


class CertificateError(ValueError):
    """A certificate or key cannot be used; the message names the file and why."""


# -- listen entries ----------------------------------------------------------------------

@dataclass(frozen=True)
class TLSListen:
    """A TLS listen entry: the plain stream endpoint under it and its own cert, if any."""

    endpoint: str
    cert: str = ""
    key: str = ""


def _split(spec: str) -> list[str]:
    """Endpoint string parts, split on colons not escaped with a backslash."""
    return re.split(r"(?<!\\):", spec)


def parse_listen(spec: str) -> TLSListen | None:
    """The TLS listener ``spec`` describes, or None for a plain one.

    Raises ValueError (a message for the config error) for options ipydoc sets itself.
    """
    if not spec.startswith(_TLS_PREFIXES):
        return None
    parts = _split(spec[4:])
    own: dict[str, str] = {}
    kept = []
    for part in parts:
        name, eq, value = part.partition("=")
        if eq and name in _OWN_CERT_OPTIONS:
            own[name] = value.replace("\\:", ":")
        elif eq and name in _REFUSED_OPTIONS:
            raise ValueError(f"{spec!r}: {name}= is not supported here; ipydoc sets TLS "
                             "versions and ciphers itself and reads the chain from the "
                             "certificate file")
        else:
            kept.append(part)
    if not kept or not kept[0]:
        raise ValueError(f"{spec!r}: say where to listen, e.g. ssl:443 or "
                         "tls:systemd:domain=INET6:index=0")
    first = kept[0]
    if first.isdigit() or first.startswith("port="):
        endpoint = ":".join(["tcp", *kept])
    else:
        endpoint = ":".join(kept)  # a whole endpoint string: tcp:..., systemd:..., unix:...
    key = own.get("privateKey", "")
    cert = own.get("certKey", key)
    return TLSListen(endpoint, cert, key)


def https_port(public_url: str, listen: list[str]) -> int:
    """The port HTTP requests are redirected to: ``public_url``'s if it is https, else the
    first TLS listen entry's, else 443."""
    if public_url:
        u = urlsplit(public_url)
        if u.scheme == "https":
            return u.port or 443
    for spec in listen:
        tls = parse_listen(spec)
        if tls is None:
            continue
        match = re.match(r"tcp6?:(?:port=)?(\d+)(?::|$)", tls.endpoint)
        if match:
            return int(match.group(1))
    return 443


# -- certificates ------------------------------------------------------------------------

@dataclass(frozen=True)
class CertFiles:
    """A certificate file (leaf then chain) and its key file, and the key that named them."""

    cert: str
    key: str
    what: str  # e.g. "server.tls_cert" or "server.listen 'ssl:...'", for messages

    def __str__(self) -> str:
        return f"{self.what} {self.cert}"


@dataclass(frozen=True)
class LoadedCert:
    files: CertFiles
    names: tuple[str, ...]       # DNS names (subjectAltName, else the CN), lower case
    not_after: datetime.datetime
    context: Any                 # OpenSSL.SSL.Context
    warnings: tuple[str, ...] = ()

    def describe(self) -> str:
        return (f"{self.files}: {', '.join(self.names) or 'no DNS names'}; valid until "
                f"{self.not_after:%Y-%m-%d %H:%M} UTC")


def _read(path: str, role: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CertificateError(f"{what}: {role} {path}: cannot read: {e.strerror or e}") from None


def _names(cert: Any) -> tuple[str, ...]:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return tuple(str(n).lower().rstrip(".") for n in names)


def load_cert(files: CertFiles, on_servername: Callable[[Any], None]) -> LoadedCert:
    """Check ``files`` and build the OpenSSL context serving them.

    Raises CertificateError naming the file and the reason.
    """
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    what = files.what
    cert_pem = _read(files.cert, "certificate", what)
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as e:
        if b"-----BEGIN CERTIFICATE-----" not in cert_pem:
            raise CertificateError(f"{what}: certificate {files.cert}: no PEM certificate "
                                   "in it") from None
        raise CertificateError(f"{what}: certificate {files.cert}: not a valid PEM "
                               f"certificate: {e}") from None
    key_path = files.key or files.cert
    key_pem = _read(key_path, "key", what)
    block = _PEM_KEY.search(key_pem)
    if block is None:
        raise CertificateError(f"{what}: key {key_path}: no PEM private key in it")
    try:
        key = serialization.load_pem_private_key(block.group(0), password=None)
    except TypeError:
        raise CertificateError(f"{what}: key {key_path}: the key is encrypted; ipydoc needs "
                               "it without a passphrase (keep the file 0600)") from None
    except (ValueError, UnsupportedAlgorithm) as e:
        raise CertificateError(f"{what}: key {key_path}: not a usable private key: "
                               f"{e}") from None
    leaf = chain[0]
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise CertificateError(f"{what}: key {key_path} does not belong to the certificate "
                               f"{files.cert} (the first certificate in the file must be "
                               "the server's own)")
    now = datetime.datetime.now(datetime.timezone.utc)
    warnings = []
    if leaf.not_valid_after_utc < now:
        warnings.append(f"{files}: the certificate expired on "
                        f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if leaf.not_valid_before_utc > now:
        warnings.append(f"{files}: the certificate is not valid before "
                        f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    try:
        context = _context(leaf, chain[1:], key, on_servername)
    except Exception as e:  # noqa: BLE001 - OpenSSL refuses e.g. a key type it lacks
        raise CertificateError(f"{what}: {files.cert}: OpenSSL refused it: {e}") from None
    return LoadedCert(files, _names(leaf), leaf.not_valid_after_utc, context, tuple(warnings))


def _select_http11(connection: Any, offered: list[bytes]) -> Any:
    from OpenSSL import SSL

    return b"http/1.1" if b"http/1.1" in offered else SSL.NO_OVERLAPPING_PROTOCOLS


def _context(leaf: Any, chain: list[Any], key: Any, on_servername: Callable[[Any], None]) -> Any:
    from OpenSSL import SSL

    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE
                    | getattr(SSL, "OP_NO_RENEGOTIATION", 0))
    ctx.set_cipher_list(TLS12_CIPHERS)
    ctx.use_certificate(leaf)
    for extra in chain:
        ctx.add_extra_chain_cert(extra)
    ctx.use_privatekey(key)
    ctx.check_privatekey()
    ctx.set_session_id(b"ipydoc-web")
    ctx.set_alpn_select_callback(_select_http11)
    ctx.set_tlsext_servername_callback(on_servername)
    return ctx


def name_matches(pattern: str, name: str) -> bool:
    """RFC 6125 matching: exact, or ``*.rest`` for exactly one more leftmost label."""
    if pattern == name:
        return True
    if pattern.startswith("*."):
        head, dot, rest = name.partition(".")
        return bool(head) and bool(dot) and rest == pattern[2:]
    return False


class CertStore:
    """Every configured certificate, loaded; SNI picks among them, SIGHUP reloads them."""

    log = Logger()

    def __init__(self, files: list[CertFiles]) -> None:
        self._files = list(dict.fromkeys(files))
        self._loaded: dict[CertFiles, LoadedCert] = {}
        for f in self._files:  # CertificateError propagates: the daemon must not start
            self._loaded[f] = load_cert(f, self._on_servername)
        for loaded in self._loaded.values():
            for warning in loaded.warnings:
                self.log.warn("TLS: {warning}", warning=warning)

    def describe(self) -> list[str]:
        return [self._loaded[f].describe() for f in self._files]

    def context_for(self, files: CertFiles) -> Any:
        return self._loaded[files].context

    def select(self, server_name: str) -> Any | None:
        """The context for ``server_name``: exact name first, then wildcard; None if none."""
        name = server_name.lower().rstrip(".")
        for exact in (True, False):
            for f in self._files:
                loaded = self._loaded[f]
                if any((p == name) if exact else name_matches(p, name) for p in loaded.names):
                    return loaded.context
        return None

    def _on_servername(self, connection: Any) -> None:
        try:
            raw = connection.get_servername()
            if not raw:
                return
            ctx = self.select(raw.decode("ascii", "replace"))
            if ctx is not None and ctx is not connection.get_context():
                connection.set_context(ctx)
        except Exception:  # noqa: BLE001 - never abort a handshake over the choice
            self.log.failure("TLS: choosing a certificate by SNI")

    def reload(self) -> list[str]:
        """Re-read every file; swap in what loads, keep the old for what does not.

        Returns the problems (empty when all loaded).
        """
        problems = []
        fresh = dict(self._loaded)
        for f in self._files:
            try:
                fresh[f] = load_cert(f, self._on_servername)
            except CertificateError as e:
                problems.append(f"{e}; still serving the certificate loaded before")
                continue
            for warning in fresh[f].warnings:
                self.log.warn("TLS: {warning}", warning=warning)
        self._loaded = fresh  # one assignment: a handshake sees the old set or the new
        return problems


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """Connection creator for one TLS listener: its default certificate, SNI from the store."""

    def __init__(self, store: CertStore, default: CertFiles) -> None:
        self.store = store
        self.default = default

    def serverConnectionForTLS(self, tls_protocol: Any) -> Any:
        from OpenSSL import SSL

        return SSL.Connection(self.store.context_for(self.default), None)


def wrap(factory: Any, store: CertStore, default: CertFiles) -> Any:
    """``factory`` behind TLS with ``default`` as the certificate when SNI matches none."""
    from twisted.protocols.tls import TLSMemoryBIOFactory

    return TLSMemoryBIOFactory(ServerTLS(store, default), False, factory)


class CertReloader(Service):
    """Reloads the store on SIGHUP (chaining a handler that was there before)."""

    name = "tls-reload"
    log = Logger()

    def __init__(self, store: CertStore, reactor: Any) -> None:
        self.store = store
        self.reactor = reactor
        self._previous: Any = None

    def startService(self) -> None:
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, self._on_hup)
        for line in self.store.describe():
            self.log.info("TLS: {cert}", cert=line)

    def stopService(self) -> None:
        super().stopService()
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None

    def _on_hup(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.reload)
        if callable(self._previous) and self._previous not in (signal.SIG_IGN, signal.SIG_DFL):
            self._previous(signum, frame)

    def reload(self) -> list[str]:
        problems = self.store.reload()
        for problem in problems:
            self.log.error("TLS reload: {problem}", problem=problem)
        if not problems:
            self.log.info("TLS certificates reloaded")
        for line in self.store.describe():
            self.log.info("TLS: {cert}", cert=line)
        return problems


# -- HSTS and the HTTP -> HTTPS redirect ---------------------------------------------------

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


class _RedirectEverything(Resource):
    isLeaf = True

    def __init__(self, port: int, fallback_host: str) -> None:
        super().__init__()
        self.port = port
        self.fallback_host = fallback_host

    def render(self, request: Any) -> bytes:
        host = _hostname(request.getRequestHostname().decode("ascii", "replace")) \
            if request.requestHeaders.hasHeader(b"host") else ""
        host = host or self.fallback_host
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        if not host:
            request.setResponseCode(400)
            return b"Use https.\n"
        uri = request.uri.decode("ascii", "replace")
        if not uri.startswith("/"):  # absolute-form: keep only path and query
            u = urlsplit(uri)
            uri = (u.path or "/") + (f"?{u.query}" if u.query else "")
        port = "" if self.port == 443 else f":{self.port}"
        location = f"https://{host}{port}{uri}"
        request.setResponseCode(301 if request.method in (b"GET", b"HEAD") else 308)
        request.setHeader(b"location", location.encode("ascii", "replace"))
        return f"Moved to {location}\n".encode("ascii", "replace")


def _hostname(host: str) -> str:
    """The host part of a Host header, if it is a plausible name or address; else ''."""
    host = host.strip().lower()
    return host if _HOST.fullmatch(host) else ""


class _DiscardBodyRequest(server.Request):
    """The redirect needs no body: read and drop it instead of spooling it to a file."""

    def gotLength(self, length: int | None) -> None:
        super().gotLength(0)

    def handleContentChunk(self, data: bytes) -> None:
        pass


def redirect_site(port: int, fallback_host: str, reactor: Any) -> server.Site:
    """A site answering every request with a redirect to the same host and path on https."""
    site = server.Site(_RedirectEverything(port, fallback_host), reactor=reactor, timeout=60)
    site.requestFactory = _DiscardBodyRequest
    site.displayTracebacks = False
    return site


# -- assembly (used by ipydoc/tap.py) ----------------------------------------------------------

def edge_listeners(server_cfg: Any, site: Any, reactor: Any
                   ) -> tuple[list[tuple[str, str, Any]], Service | None]:
    """What the public side listens with, from ``[server]``.

    Returns ``(description, plain endpoint string, factory)`` for every ``listen`` entry
    (TLS ones wrapped) and ``redirect_listen`` entry, and the SIGHUP reloader (None without
    TLS).  Sets HSTS on ``site``'s requests when ``hsts`` is on.  Raises CertificateError
    when a certificate or key cannot be used.
    """
    s = server_cfg
    parsed = [(spec, parse_listen(spec)) for spec in s.listen]
    default = CertFiles(s.tls_cert, s.tls_key, "server.tls_cert") if s.tls_cert else None
    own = {spec: CertFiles(t.cert, t.key, f"server.listen {spec!r}")
           for spec, t in parsed if t is not None and t.cert}
    extra = [CertFiles(pair[0], pair[1] if len(pair) > 1 else "", f"server.tls_certs[{i}]")
             for i, pair in enumerate(s.tls_certs)]
    any_tls = any(t is not None for _, t in parsed)
    store = CertStore([*([default] if default else []), *own.values(), *extra]) \
        if any_tls else None

    out: list[tuple[str, str, Any]] = []
    for spec, tls in parsed:
        if tls is None or store is None:
            out.append((spec, spec, site))
            continue
        files = own.get(spec) or default
        assert files is not None  # config.py: a TLS entry without its own needs tls_cert
        out.append((f"{spec} (TLS)", tls.endpoint, wrap(site, store, files)))
    if store is not None and s.hsts:
        site.requestFactory = with_hsts(site.requestFactory,
                                        hsts_value(s.hsts, s.hsts_include_subdomains))
    if s.redirect_listen:
        port = https_port(s.public_url, s.listen)
        fallback = urlsplit(s.public_url).hostname or getattr(s, "domain", "") or ""
        redirect = redirect_site(port, fallback, reactor)
        out += [(f"{spec} (redirect to https, port {port})", spec, redirect)
                for spec in s.redirect_listen]
    return out, (CertReloader(store, reactor) if store is not None else None)
