"""The simulators' certificate authority, server certificate and APNs client certificates.

Clients reach the simulators under the providers' real host names (SNI and certificate checks
stay on), so the simulators need a certificate for those names that the clients can trust.
The CA lives under ``<home>/sim/`` and is reused across runs: a process started later (the
demo, the benchmark, a worker) trusts the same ``ca.pem`` without coordination. Files are
created atomically, so two processes starting at once agree on one CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

logger = logging.getLogger(__name__)

SERVER_NAMES = (
    "api.push.apple.com",
    "api.development.push.apple.com",
    "api.sandbox.push.apple.com",
    "fcm.googleapis.com",
    "localhost",
)
SERVER_IPS = ("127.0.0.1",)
_CA_YEARS = 10
_LEAF_DAYS = 365
_RENEW_BEFORE = dt.timedelta(days=30)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _publish(path: Path, data: bytes, *, exclusive: bool) -> bool:
    """Write ``data`` to ``path`` atomically; with ``exclusive``, only if ``path`` is absent.

    Returns False when ``exclusive`` and another process got there first.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o600 if b"PRIVATE KEY" in data else 0o644)
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
        else:
            os.replace(tmp, path)
            tmp = ""
        return True
    finally:
        if tmp:
            os.unlink(tmp)


def _remember_server_name(
    ssl_object: ssl.SSLSocket | ssl.SSLObject, server_name: str | None, _: ssl.SSLContext
) -> None:
    """Keep the SNI on the TLS object: the APNs simulator tells environments apart by it."""
    setattr(ssl_object, "sni", server_name)  # noqa: B010 - SSLObject has no such attribute


@dataclass(frozen=True)
class IssuedCertificate:
    cert_pem: str
    key_pem: str
    serial: int


class CertificateAuthority:
    """Loads or creates the CA in ``directory`` and issues leaf certificates with it."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.ca_file = directory / "ca.pem"
        bundle_file = directory / "ca-bundle.key.pem"
        if not bundle_file.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            cert = self._self_signed(key)
            bundle = _key_pem(key) + cert.public_bytes(serialization.Encoding.PEM)
            if _publish(bundle_file, bundle, exclusive=True):
                logger.info("created simulator CA in %s", directory)
        bundle = bundle_file.read_bytes()
        loaded = serialization.load_pem_private_key(bundle, password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{bundle_file} does not hold an EC key")
        self._key = loaded
        self.cert = x509.load_pem_x509_certificate(bundle)
        ca_pem = self.cert.public_bytes(serialization.Encoding.PEM)
        if not self.ca_file.exists() or self.ca_file.read_bytes() != ca_pem:
            _publish(self.ca_file, ca_pem, exclusive=False)

    @staticmethod
    def _self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tidings simulators CA")])
        now = _now()
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=365 * _CA_YEARS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )

    def _leaf(
        self,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        sans: list[x509.GeneralName] | None = None,
    ) -> IssuedCertificate:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=_LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return IssuedCertificate(
            cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            key_pem=_key_pem(key).decode(),
            serial=cert.serial_number,
        )

    def server_certificate(self) -> tuple[Path, Path]:
        """The server certificate and key files, reissued when missing, stale or foreign."""
        cert_file = self.directory / "server.pem"
        key_file = self.directory / "server.key.pem"
        if not self._server_cert_usable(cert_file, key_file):
            sans: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
            sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in SERVER_IPS]
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAMES[0])])
            issued = self._leaf(subject, ExtendedKeyUsageOID.SERVER_AUTH, sans)
            # One file holding key and certificate, published atomically, then split: a
            # concurrent reader never sees a key that does not match the certificate.
            _publish(key_file, (issued.key_pem + issued.cert_pem).encode(), exclusive=False)
            _publish(cert_file, issued.cert_pem.encode(), exclusive=False)
        return cert_file, key_file

    def _server_cert_usable(self, cert_file: Path, key_file: Path) -> bool:
        if not (cert_file.exists() and key_file.exists()):
            return False
        try:
            cert = x509.load_pem_x509_certificate(key_file.read_bytes())
        except ValueError:
            return False
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return cert.not_valid_after_utc - _now() > _RENEW_BEFORE

    def client_certificate(self, topic: str) -> IssuedCertificate:
        """An APNs-style client certificate: the topic (bundle id) is the subject's UID."""
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.USER_ID, topic),
                x509.NameAttribute(NameOID.COMMON_NAME, f"Apple Push Services: {topic}"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "TIDINGSSIM"),
            ]
        )
        return self._leaf(subject, ExtendedKeyUsageOID.CLIENT_AUTH)

    def server_context(
        self, *, request_client_cert: bool, protocols: tuple[str, ...] = ("h2",)
    ) -> ssl.SSLContext:
        """A TLS server context offering ``protocols`` by ALPN (APNs: only h2; FCM: h2 and
        http/1.1), optionally asking for a client certificate."""
        _, key_file = self.server_certificate()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        # key_file holds the key followed by the certificate, so it serves as both.
        ctx.load_cert_chain(certfile=key_file, keyfile=key_file)
        ctx.set_alpn_protocols(list(protocols))
        ctx.sni_callback = _remember_server_name
        if request_client_cert:
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.load_verify_locations(cafile=self.ca_file)
        return ctx
