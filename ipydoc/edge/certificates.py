"""TLS certificates of the public site: loaded and checked, chosen by SNI, reloaded on SIGHUP.

Every configured certificate (``server.tls_cert``, a listener's own ``certKey=``, and
``tls_certs``) is a candidate for SNI: the client's server name picks the certificate
whose names match it exactly, then one whose wildcard matches, else the listener's
default.

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

from twisted.application.service import Service
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

#: TLS 1.2 suites (TLS 1.3 ones are all fine and OpenSSL's defaults): ECDHE + AEAD only.
TLS12_CIPHERS = (b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                 b"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                 b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")

_PEM_KEY = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----",
                      re.S)


class CertificateError(ValueError):
    """A certificate or key cannot be used; the message names the file and why."""


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
