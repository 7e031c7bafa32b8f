"""Service accounts and the OAuth2 token endpoint the FCM simulator trusts.

google-auth exchanges a service account's RS256 assertion at the account's ``token_uri`` for
an access token, so pointing ``token_uri`` at the simulators' control port is all a client
needs. google-auth calls that endpoint synchronously (``requests``) from inside the caller's
event loop, which is why the control app runs on its own thread and this class takes a lock.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_SCOPES = frozenset(
    {
        "https://www.googleapis.com/auth/firebase.messaging",
        "https://www.googleapis.com/auth/cloud-platform",
    }
)
# google-auth always addresses its assertion to Google's token endpoint, whatever the
# account's token_uri says; Google accepts that and the token_uri itself.
GOOGLE_TOKEN_AUDIENCES = (
    "https://oauth2.googleapis.com/token",
    "https://accounts.google.com/o/oauth2/token",
)
MAX_ASSERTION_LIFETIME_S = 3600
EXPIRES_IN_S = 3599
_LEEWAY_S = 60


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    project_id: str
    client_email: str
    private_key_id: str
    public_key: rsa.RSAPublicKey
    token_uri: str


@dataclass(frozen=True, slots=True)
class AccessToken:
    project_id: str
    client_email: str
    expires_at: float


class TokenIssuer:
    """Issues and checks access tokens for the service accounts it created."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key_id: dict[str, ServiceAccount] = {}
        self._projects: set[str] = set()
        self._tokens: dict[str, AccessToken] = {}
        self.ttl_s = 3600.0
        self.issued = 0

    def create_service_account(self, project_id: str, token_uri: str) -> dict[str, str]:
        """A complete service-account JSON whose ``token_uri`` is this issuer's endpoint."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = secrets.token_hex(20)
        email = f"firebase-adminsdk-{secrets.token_hex(3)[:5]}@{project_id}.iam.gserviceaccount.com"
        account = ServiceAccount(project_id, email, key_id, key.public_key(), token_uri)
        with self._lock:
            self._by_key_id[key_id] = account
            self._projects.add(project_id)
        private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": project_id,
            "private_key_id": key_id,
            "private_key": private_pem,
            "client_email": email,
            "client_id": str(secrets.randbelow(10**21)).zfill(21),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": (
                f"https://www.googleapis.com/robot/v1/metadata/x509/{quote(email)}"
            ),
            "universe_domain": "googleapis.com",
        }

    def knows_project(self, project_id: str) -> bool:
        return project_id in self._projects

    def exchange(self, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """Answer a token request: (200, token response) or (400, OAuth2 error)."""
        if form.get("grant_type") != JWT_BEARER:
            return 400, {
                "error": "unsupported_grant_type",
                "error_description": f"Invalid grant_type: {form.get('grant_type', '')}",
            }
        problem = self._check_assertion(form.get("assertion", ""))
        if isinstance(problem, str):
            return 400, {"error": "invalid_grant", "error_description": problem}
        access_token = "ya29.sim-" + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[access_token] = AccessToken(
                problem.project_id, problem.client_email, time.time() + self.ttl_s
            )
            self.issued += 1
        return 200, {
            "access_token": access_token,
            "expires_in": EXPIRES_IN_S,
            "token_type": "Bearer",
        }

    def _check_assertion(self, assertion: str) -> ServiceAccount | str:
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            return "Invalid JWT: malformed assertion."
        account = self._by_key_id.get(str(header.get("kid")))
        if account is None:
            return "Invalid JWT Signature."
        try:
            claims = jwt.decode(
                assertion,
                account.public_key,
                algorithms=["RS256"],
                audience=[account.token_uri, *GOOGLE_TOKEN_AUDIENCES],
                leeway=_LEEWAY_S,
                options={"require": ["iss", "aud", "iat", "exp"]},
            )
        except jwt.InvalidAudienceError:
            return "Invalid JWT: Failed audience check."
        except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError):
            return (
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                "reasonable timeframe. Check your iat and exp values in the JWT claim."
            )
        except jwt.PyJWTError:
            return "Invalid JWT Signature."
        if claims["iss"] != account.client_email:
            return "Invalid email or User ID"
        if claims["exp"] - claims["iat"] > MAX_ASSERTION_LIFETIME_S:
            return (
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                "reasonable timeframe. Check your iat and exp values in the JWT claim."
            )
        scopes = set(str(claims.get("scope", "")).split())
        if not scopes & FCM_SCOPES:
            return "Invalid OAuth scope or ID token audience provided."
        return account

    def lookup(self, access_token: str) -> AccessToken | None:
        """The live token, or None when unknown; expiry is the caller's check."""
        return self._tokens.get(access_token)

    def expire(self, project_id: str | None = None) -> None:
        """Expire the access tokens issued so far (of one project, or all), to test refresh."""
        with self._lock:
            self._tokens = {
                t: AccessToken(a.project_id, a.client_email, 0.0)
                if project_id in (None, a.project_id)
                else a
                for t, a in self._tokens.items()
            }
