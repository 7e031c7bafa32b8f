"""Provider credentials as tidings holds them in memory (secrets as SecretStr)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
    pkcs12,
)
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationInfo,
    field_validator,
)

TEN_CHARACTER_ID = re.compile(r"^[A-Z0-9]{10}$")
BUNDLE_ID = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
PEM_PRIVATE_KEY = re.compile(
    rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----", re.DOTALL
)

ApnsEnvironment = Literal["production", "sandbox"]


class ApnsTokenCredentials(BaseModel):
    """Token auth: a .p8 signing key (P-256) identified by key id and team id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    auth: Literal["token"] = "token"
    team_id: Annotated[str, Field(description="10-character Apple team id")]
    key_id: Annotated[str, Field(description="10-character key id of the .p8 key")]
    bundle_id: Annotated[str, Field(description="the app's bundle id, used as apns-topic")]
    environment: ApnsEnvironment = "production"
    signing_key: Annotated[SecretStr, Field(description="contents of the .p8 file (PEM)")]

    @field_validator("team_id", "key_id")
    @classmethod
    def _ten_characters(cls, value: str) -> str:
        if not TEN_CHARACTER_ID.match(value):
            raise ValueError("must be 10 upper-case letters or digits")
        return value

    @field_validator("bundle_id")
    @classmethod
    def _bundle(cls, value: str) -> str:
        if not BUNDLE_ID.match(value):
            raise ValueError("must look like com.example.app")
        return value

    @field_validator("signing_key")
    @classmethod
    def _p256_key(cls, value: SecretStr) -> SecretStr:
        try:
            key = load_pem_private_key(value.get_secret_value().encode(), password=None)
        except (ValueError, TypeError) as error:
            raise ValueError("is not a PEM private key (.p8 contents)") from error
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("must be a P-256 (ES256) key as Apple issues in .p8 files")
        return value

    def public_config(self) -> dict[str, Any]:
        return self.model_dump(exclude={"signing_key"})


class ApnsCertificateCredentials(BaseModel):
    """Certificate auth (legacy): a client certificate and its private key.

    Given as PEM (certificate followed by its key) or as the PKCS#12 (.p12) file Keychain
    exports, base64-encoded, with its password if it has one. Either way it is held, sealed
    and handed to aioapns as unencrypted PEM: the password opens it once, here, and is never
    stored.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    auth: Literal["certificate"] = "certificate"
    bundle_id: str
    environment: ApnsEnvironment = "production"
    # before ``certificate``: its validator reads the password
    certificate_password: Annotated[
        SecretStr | None,
        Field(
            description="password of the .p12 file (or of an encrypted PEM key); used to "
            "convert it to PEM, never stored"
        ),
    ] = None
    certificate: Annotated[
        SecretStr,
        Field(
            description="PEM client certificate followed by its private key, or the "
            "PKCS#12 (.p12) file encoded in base64"
        ),
    ]

    @field_validator("bundle_id")
    @classmethod
    def _bundle(cls, value: str) -> str:
        if not BUNDLE_ID.match(value):
            raise ValueError("must look like com.example.app")
        return value

    @field_validator("certificate")
    @classmethod
    def _certificate(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        password = info.data.get("certificate_password")
        secret = password.get_secret_value() if isinstance(password, SecretStr) else None
        return SecretStr(certificate_pem(value.get_secret_value(), secret))

    def public_config(self) -> dict[str, Any]:
        return self.model_dump(exclude={"certificate", "certificate_password"})


def certificate_pem(certificate: str, password: str | None = None) -> str:
    """The certificate (with any chain it came with) and its unencrypted private key, PEM,
    from PEM or from a base64-encoded PKCS#12 file; ValueError naming what is wrong (never
    quoting the secret)."""
    if "-----BEGIN" in certificate:
        certificates, key = _from_pem(certificate, password)
    else:
        certificates, key = _from_pkcs12(certificate, password)
    public_key = key.public_key()
    leaf = [c for c in certificates if c.public_key() == public_key]
    if not leaf:
        raise ValueError("the private key does not belong to the certificate")
    # the client certificate first, then any chain it came with (TLS sends them in order)
    ordered = leaf[:1] + [c for c in certificates if c is not leaf[0]]
    pem = b"".join(c.public_bytes(Encoding.PEM) for c in ordered)
    pem += key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return pem.decode()


def _from_pem(text: str, password: str | None) -> tuple[list[x509.Certificate], PrivateKeyTypes]:
    pem = text.encode()
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as error:
        raise ValueError("does not contain a PEM certificate") from error
    match = PEM_PRIVATE_KEY.search(pem)
    if match is None:
        raise ValueError("does not contain the certificate's PEM private key")
    try:
        key = load_pem_private_key(match.group(0), password.encode() if password else None)
    except TypeError as error:  # encrypted without a password, or a password it does not need
        raise ValueError(
            "the private key is encrypted: give its password as certificate_password"
            if password is None
            else "the private key is not encrypted: leave certificate_password out"
        ) from error
    except ValueError as error:
        raise ValueError(
            "the private key cannot be read"
            + (" with this certificate_password" if password else "")
        ) from error
    return certificates, key


def _from_pkcs12(text: str, password: str | None) -> tuple[list[x509.Certificate], PrivateKeyTypes]:
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except binascii.Error as error:
        raise ValueError(
            "is neither PEM (certificate and private key) nor a base64-encoded PKCS#12 (.p12) file"
        ) from error
    # a .p12 "without a password" is often encrypted with the empty one
    attempts = [password.encode()] if password else [None, b""]
    for secret in attempts:
        try:
            key, certificate, chain = pkcs12.load_key_and_certificates(data, secret)
        except ValueError:
            continue
        if certificate is None or key is None:
            raise ValueError("the .p12 file must hold the certificate and its private key")
        return [certificate, *chain], key
    raise ValueError(
        "is not a PKCS#12 (.p12) file this certificate_password opens"
        if password
        else "is not a PKCS#12 (.p12) file that opens without a password: give its password "
        "as certificate_password"
    )


def _apns_auth(value: Any) -> str:
    """Token auth unless the credentials say otherwise."""
    if isinstance(value, dict):
        return str(value.get("auth", "token"))
    return str(getattr(value, "auth", "token"))


ApnsCredentials = Annotated[
    Annotated[ApnsTokenCredentials, Tag("token")]
    | Annotated[ApnsCertificateCredentials, Tag("certificate")],
    Discriminator(_apns_auth),
]

SERVICE_ACCOUNT_FIELDS = ("type", "project_id", "private_key", "client_email", "token_uri")


class FcmCredentials(BaseModel):
    """A Firebase service account (the JSON file Google issues)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service_account: Annotated[SecretStr, Field(description="the service-account JSON")]

    @field_validator("service_account")
    @classmethod
    def _service_account(cls, value: SecretStr) -> SecretStr:
        try:
            data = json.loads(value.get_secret_value())
        except json.JSONDecodeError as error:
            raise ValueError("is not JSON") from error
        if not isinstance(data, dict):
            raise ValueError("must be a JSON object")
        missing = [name for name in SERVICE_ACCOUNT_FIELDS if not data.get(name)]
        if missing:
            raise ValueError(f"lacks {', '.join(missing)}")
        if data["type"] != "service_account":
            raise ValueError('"type" must be "service_account"')
        return value

    @property
    def info(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.service_account.get_secret_value())
        return data

    @property
    def project_id(self) -> str:
        return str(self.info["project_id"])

    def public_config(self) -> dict[str, Any]:
        info = self.info
        return {"project_id": info["project_id"], "client_email": info["client_email"]}


@dataclass(frozen=True)
class AppCredentials:
    """One app's credentials as a worker or the API holds them, at one version."""

    app_id: str
    version: int
    apns: ApnsTokenCredentials | ApnsCertificateCredentials | None
    fcm: FcmCredentials | None
