"""Provider credentials as tidings holds them in memory (secrets as SecretStr)."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509 import load_pem_x509_certificate
from pydantic import BaseModel, ConfigDict, Discriminator, Field, SecretStr, Tag, field_validator

TEN_CHARACTER_ID = re.compile(r"^[A-Z0-9]{10}$")
BUNDLE_ID = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")

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
    """Certificate auth (legacy): client certificate and its private key, PEM."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    auth: Literal["certificate"] = "certificate"
    bundle_id: str
    environment: ApnsEnvironment = "production"
    certificate: Annotated[
        SecretStr, Field(description="PEM client certificate followed by its private key")
    ]

    @field_validator("bundle_id")
    @classmethod
    def _bundle(cls, value: str) -> str:
        if not BUNDLE_ID.match(value):
            raise ValueError("must look like com.example.app")
        return value

    @field_validator("certificate")
    @classmethod
    def _pem_pair(cls, value: SecretStr) -> SecretStr:
        pem = value.get_secret_value().encode()
        try:
            load_pem_x509_certificate(pem)
        except ValueError as error:
            raise ValueError("does not contain a PEM certificate") from error
        if b"PRIVATE KEY-----" not in pem:
            raise ValueError("does not contain the certificate's PEM private key")
        return value

    def public_config(self) -> dict[str, Any]:
        return self.model_dump(exclude={"certificate"})


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
