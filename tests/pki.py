"""A throwaway PKI for tests: CAs and certificates made at test time with ``cryptography``.

Shared by the TLS tests of the web listeners, the control channel and the Docker client,
so every one of them builds its certificates the same way.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Key = ec.EllipticCurvePrivateKey
Pair = tuple[x509.Certificate, Key]

SERVER = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH
#: The SAN of a server reached as localhost or 127.0.0.1.
LOCALHOST: list[x509.GeneralName] = [
    x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def new_key() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def pem_key(key: Key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def ca(cn: str, issuer: Pair | None = None) -> Pair:
    """A CA valid for a day: self-signed, or an intermediate signed by ``issuer``."""
    key = new_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    signer_cert, signer_key = issuer or (None, key)
    cert = (x509.CertificateBuilder().subject_name(name(cn))
            .issuer_name(signer_cert.subject if signer_cert else name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(signer_key, hashes.SHA256()))
    return cert, key


def leaf(issuer: Pair, cn: str, *, usage: x509.ObjectIdentifier = SERVER,
         san: Sequence[x509.GeneralName] = (),
         not_before: datetime.timedelta = datetime.timedelta(minutes=5),
         lifetime: datetime.timedelta = datetime.timedelta(days=1)) -> Pair:
    """An end-entity certificate signed by ``issuer``, valid from ``not_before`` ago until
    ``lifetime`` from now (negative: already expired)."""
    key = new_key()
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name(cn))
               .issuer_name(issuer[0].subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - not_before)
               .not_valid_after(now + lifetime)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
    return builder.sign(issuer[1], hashes.SHA256()), key
