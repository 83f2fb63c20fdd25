"""TLS with client certificates for the control channel over TCP (pyOpenSSL via Twisted).

Server side (``control.listen_tls``): the daemon presents ``tls_cert`` (+ intermediates)
and *requires* a client certificate that chains to one of the CAs in ``tls_client_ca``.
A client without one, or with one from another CA, fails the handshake; the TLS layer
hands no bytes to AMP before a successful handshake, so no command is ever read from it.
TLS 1.2 is the minimum.

Client side (the CLI's ``--control tls:HOST:PORT``): verifies the daemon's certificate
against ``--tls-ca`` for HOST (service_identity), and presents ``--tls-cert``/``--tls-key``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


class TLSFilesError(ValueError):
    """A certificate or key file is missing or unusable; the message names it."""


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise TLSFilesError(f"{what} {path}: cannot read: {e.strerror or e}") from None


def load_certificates(path: str, what: str) -> list[Any]:
    """Every certificate in a PEM file, as ``twisted.internet.ssl.Certificate``."""
    from twisted.internet import ssl

    pems = _PEM_CERT.findall(_read(path, what))
    if not pems:
        raise TLSFilesError(f"{what} {path}: no PEM certificate in it")
    try:
        return [ssl.Certificate.loadPEM(p) for p in pems]
    except Exception as e:  # noqa: BLE001 - pyOpenSSL raises assorted errors for bad PEM
        raise TLSFilesError(f"{what} {path}: not a usable certificate: {e}") from None


def load_private(cert_path: str, key_path: str, what: str) -> tuple[Any, list[Any]]:
    """(``PrivateCertificate`` of the first certificate and the key, the other certificates)."""
    from OpenSSL import crypto
    from twisted.internet import ssl

    certs = load_certificates(cert_path, f"{what} certificate")
    key = _read(key_path or cert_path, f"{what} key")
    try:
        private = ssl.PrivateCertificate.fromCertificateAndKeyPair(
            certs[0], ssl.KeyPair.load(key, crypto.FILETYPE_PEM))
    except Exception as e:  # noqa: BLE001
        raise TLSFilesError(f"{what} key {key_path or cert_path}: not a usable private key "
                            f"for {cert_path}: {e}") from None
    return private, certs[1:]


def server_options(cert: str, key: str, client_ca: str) -> Any:
    """Context factory for the daemon's TLS control listener (client certificate required)."""
    from twisted.internet import ssl

    private, chain = load_private(cert, key, "control.tls_cert")
    cas = load_certificates(client_ca, "control.tls_client_ca")
    try:
        return ssl.CertificateOptions(
            privateKey=private.privateKey.original, certificate=private.original,
            extraCertChain=[c.original for c in chain],
            verify=True, caCerts=[c.original for c in cas],
            requireCertificate=True, raiseMinimumTo=ssl.TLSVersion.TLSv1_2)
    except Exception as e:  # noqa: BLE001 - e.g. key does not match the certificate
        raise TLSFilesError(f"control TLS: {e}") from None


def client_options(host: str, cert: str, key: str, ca: str) -> Any:
    """Connection creator for the CLI: verify the daemon for ``host``, present our cert."""
    from twisted.internet import ssl

    cas = load_certificates(ca, "--tls-ca")
    private = load_private(cert, key, "--tls-cert")[0] if cert else None
    trust = ssl.trustRootFromCertificates(cas)
    return ssl.optionsForClientTLS(host, trustRoot=trust, clientCertificate=private)


def peer_name(transport: Any) -> str:
    """Who is on the other end: the client certificate's subject CN, if any."""
    get = getattr(transport, "getPeerCertificate", None)
    cert = get() if get else None
    if cert is None:
        return ""
    subject = cert.get_subject()
    return f"cert CN={subject.CN}" if subject.CN else f"cert {subject}"
