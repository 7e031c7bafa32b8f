"""APNs provider authentication: signing keys, provider JWTs and client certificates.

Apple verifies a provider JWT (ES256, ``kid`` = key id, ``iss`` = team id, ``iat``) against the
public half of a .p8 key and rejects one older than an hour. ``iat`` may be a number or a
numeric string (some clients send one; Apple accepts it). How often a connection may switch to
a newer token is the connection's business (:mod:`tidings.sim.apns`). Each distinct JWT string
is verified once and remembered: clients reuse one JWT for thousands of requests, and ECDSA
verification would otherwise dominate the simulator's hot path.
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .tls import CertificateAuthority

JWT_MAX_AGE_S = 3600
_CACHE_LIMIT = 4096

MISSING = "MissingProviderToken"
INVALID = "InvalidProviderToken"
EXPIRED = "ExpiredProviderToken"
TOO_MANY_UPDATES = "TooManyProviderTokenUpdates"


@dataclass(frozen=True, slots=True)
class SigningKey:
    team_id: str
    key_id: str
    public_key: ec.EllipticCurvePublicKey
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VerifiedJwt:
    team_id: str
    issued_at: int
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Denied:
    status: int
    reason: str


class ProviderAuth:
    """Keys and client certificates of one APNs simulator."""

    def __init__(self, ca: CertificateAuthority) -> None:
        self._ca = ca
        self._keys: dict[str, SigningKey] = {}
        self._cert_topics: dict[int, tuple[str, ...]] = {}
        self._verified: dict[str, VerifiedJwt | str] = {}

    def create_signing_key(self, team_id: str, key_id: str, topics: list[str]) -> str:
        """A fresh P-256 key as PKCS8 PEM (what Apple's .p8 file holds); the sim keeps its
        public half and the topics (bundle ids) it may push to."""
        if not topics:
            raise ValueError("a signing key needs at least one topic")
        key = ec.generate_private_key(ec.SECP256R1())
        self._keys[key_id] = SigningKey(team_id, key_id, key.public_key(), tuple(topics))
        self._verified.clear()
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def create_client_certificate(self, topics: list[str]) -> tuple[str, str]:
        """A client certificate (subject UID = first topic) and its key, both PEM."""
        if not topics:
            raise ValueError("a client certificate needs at least one topic")
        issued = self._ca.client_certificate(topics[0])
        self._cert_topics[issued.serial] = tuple(topics)
        return issued.cert_pem, issued.key_pem

    def certificate_topics(self, der: bytes) -> tuple[str, ...]:
        """Topics of a client certificate the TLS layer already verified against the CA.

        A certificate issued by an earlier run of the simulators (same CA on disk) is still
        trusted; its topic is the subject UID, as in Apple's certificates.
        """
        cert = x509.load_der_x509_certificate(der)
        known = self._cert_topics.get(cert.serial_number)
        if known is not None:
            return known
        uids = cert.subject.get_attributes_for_oid(NameOID.USER_ID)
        return tuple(str(a.value) for a in uids)

    def authorize(self, authorization: str | None, now: float) -> VerifiedJwt | Denied:
        """The verified provider token (its team, ``iat`` and topics), or why Apple would
        refuse it."""
        if not authorization:
            return Denied(403, MISSING)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return Denied(403, INVALID)
        verified = self._verified.get(token)
        if verified is None:
            verified = self._verify(token)
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified.clear()
            self._verified[token] = verified
        if isinstance(verified, str):
            return Denied(403, verified)
        if now - verified.issued_at > JWT_MAX_AGE_S:
            return Denied(403, EXPIRED)
        return verified

    def _verify(self, token: str) -> VerifiedJwt | str:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return INVALID
        key = self._keys.get(str(header.get("kid")))
        if header.get("alg") != "ES256" or key is None:
            return INVALID
        try:
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=["ES256"],
                options={"require": ["iss", "iat"]},
            )
        except jwt.PyJWTError:
            return INVALID
        issued_at = _epoch_seconds(claims.get("iat"))
        if claims.get("iss") != key.team_id or issued_at is None:
            return INVALID
        return VerifiedJwt(key.team_id, issued_at, key.topics)


def _epoch_seconds(value: object) -> int | None:
    """``iat`` as whole seconds: an integer, or a string of digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None
