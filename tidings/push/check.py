"""Checking an app's provider credentials against the providers, naming the wrong field.

* APNs: one background push (priority 5, expiring at once) to a well-formed token no device
  has. Apple authenticates the request and checks its topic before it looks at the token, so
  an answer about the *token* (BadDeviceToken, Unregistered, DeviceTokenNotForTopic, or a 200)
  means the key, team, bundle id and environment are fine, and an answer about anything else
  names what is wrong.
* FCM: a ``validate_only`` send to a topic: every check of a real send (the service account's
  OAuth2 exchange, the project, the permission to send), nothing delivered, no token needed.

Answers that say nothing about the credentials (a timeout, a 503) come back as problems marked
``transient``: the check could not tell. Call :func:`check_credentials` when an app is saved,
or ``tidings apps check APP_ID`` on demand.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from tidings.push.apns import ApnsSender
from tidings.push.credentials import (
    ApnsCertificateCredentials,
    ApnsTokenCredentials,
    FcmCredentials,
)
from tidings.push.fcm import FcmSender
from tidings.push.message import PushMessage
from tidings.push.outcome import Outcome, SendResult
from tidings.push.registry import AppCredentials
from tidings.push.sender import ProviderRoutes, SendItem
from tidings.settings import Settings
from tidings.store.apps import open_credentials
from tidings.store.db import Database
from tidings.store.models import App
from tidings.store.secrets import SecretBox

# Well-formed (64 hex digits) and never issued by Apple: its answer is about the token only.
CHECK_DEVICE_TOKEN = "c0ffee" + "0" * 58
CHECK_TOPIC = "tidings-credential-check"
CHECK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class CredentialProblem:
    """``field`` is the credential field to fix (``apns.key_id``, ``fcm.service_account``,
    ...), or the provider alone when no field is to blame."""

    field: str
    message: str
    # True when the check could not tell (the provider did not answer, or answered that it
    # is busy): try again later
    transient: bool = False

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


# APNs reasons that mean the credentials are fine (the answer is about the made-up token).
APNS_FINE = {"BadDeviceToken", "Unregistered", "ExpiredToken", "DeviceTokenNotForTopic"}
TOKEN_AUTH_FIELDS = (
    "the .p8 key (apns.signing_key), its key id (apns.key_id) and team id (apns.team_id)"
)
APNS_FIELD_BY_REASON = {
    "InvalidProviderToken": (
        "apns.signing_key",
        f"Apple did not accept a token signed with this key: {TOKEN_AUTH_FIELDS} must belong "
        "together (InvalidProviderToken)",
    ),
    "MissingProviderToken": ("apns.signing_key", "no provider token reached Apple"),
    "BadEnvironmentKeyInToken": (
        "apns.environment",
        "the key is not enabled for this APNs environment (BadEnvironmentKeyInToken)",
    ),
    "BadCertificateEnvironment": (
        "apns.environment",
        "the certificate is for the other APNs environment (BadCertificateEnvironment)",
    ),
    "BadCertificate": ("apns.certificate", "Apple did not accept the certificate (BadCertificate)"),
    "Forbidden": ("apns.signing_key", "Apple refused these credentials (Forbidden)"),
    "BadTopic": ("apns.bundle_id", "the bundle id is not a valid topic (BadTopic)"),
    "TopicDisallowed": (
        "apns.bundle_id",
        "these credentials may not push to this bundle id (TopicDisallowed)",
    ),
    "MissingTopic": ("apns.bundle_id", "Apple needs the bundle id as topic (MissingTopic)"),
    "ExpiredProviderToken": (
        "apns",
        "Apple found the token too old: this machine's clock is probably wrong "
        "(ExpiredProviderToken)",
    ),
}


async def check_credentials(
    credentials: AppCredentials, routes: ProviderRoutes, *, timeout_s: float = CHECK_TIMEOUT_S
) -> list[CredentialProblem]:
    """Every problem with the app's APNs and FCM credentials; empty when both work."""
    checks = []
    if credentials.apns is not None:
        checks.append(check_apns(credentials.apns, routes, timeout_s=timeout_s))
    if credentials.fcm is not None:
        checks.append(check_fcm(credentials.fcm, routes, timeout_s=timeout_s))
    problems: list[CredentialProblem] = []
    for found in await asyncio.gather(*checks):
        problems.extend(found)
    return problems


async def check_apns(
    credentials: ApnsTokenCredentials | ApnsCertificateCredentials,
    routes: ProviderRoutes,
    *,
    timeout_s: float = CHECK_TIMEOUT_S,
) -> list[CredentialProblem]:
    sender = ApnsSender(
        credentials, routes=routes, max_in_flight=1, timeout_s=timeout_s, max_connections=1
    )
    try:
        result = await sender.send(
            SendItem(
                CHECK_DEVICE_TOKEN,
                str(uuid.uuid4()),
                PushMessage(push_type="background"),
                expires_at=datetime.now(UTC),
            )
        )
    finally:
        await sender.close()
    return _apns_problems(credentials, result)


def _apns_problems(
    credentials: ApnsTokenCredentials | ApnsCertificateCredentials, result: SendResult
) -> list[CredentialProblem]:
    if result.outcome is Outcome.DELIVERED or result.reason in APNS_FINE:
        return []
    known = APNS_FIELD_BY_REASON.get(result.reason or "")
    if known is not None:
        return [CredentialProblem(*known)]
    if result.status is None and isinstance(credentials, ApnsCertificateCredentials):
        return [
            CredentialProblem(
                "apns.certificate",
                f"APNs closed the connection ({result.reason}): a certificate Apple does not "
                "accept, or a network problem",
                transient=True,
            )
        ]
    return [
        CredentialProblem(
            "apns", f"APNs did not tell ({result.describe}); try again later", transient=True
        )
    ]


async def check_fcm(
    credentials: FcmCredentials, routes: ProviderRoutes, *, timeout_s: float = CHECK_TIMEOUT_S
) -> list[CredentialProblem]:
    sender = await asyncio.to_thread(
        FcmSender,
        credentials,
        app_name=f"tidings-check-{uuid.uuid4()}",
        routes=routes,
        max_in_flight=1,
        timeout_s=timeout_s,
    )
    try:
        result = await sender.validate_topic(CHECK_TOPIC)
    finally:
        await sender.close()
    return _fcm_problems(credentials, result)


def _fcm_problems(credentials: FcmCredentials, result: SendResult) -> list[CredentialProblem]:
    if result.outcome is Outcome.DELIVERED:
        return []
    project = credentials.project_id
    reason = result.reason or ""
    if reason.startswith("service account refused"):
        return [CredentialProblem("fcm.service_account", f"the {reason}")]
    if reason == "PERMISSION_DENIED" or result.status == 403:
        return [
            CredentialProblem(
                "fcm.service_account",
                f"this service account may not send messages for project {project!r} "
                "(PERMISSION_DENIED)",
            )
        ]
    if reason == "NOT_FOUND" or result.status == 404:
        return [
            CredentialProblem(
                "fcm.service_account",
                f"project {project!r} was not found, or Cloud Messaging is not enabled for it "
                "(NOT_FOUND)",
            )
        ]
    if result.status == 401:
        return [
            CredentialProblem(
                "fcm.service_account", f"Google refused the service account's token ({reason})"
            )
        ]
    if result.outcome is Outcome.CONFIG_FAULT:
        return [CredentialProblem("fcm", f"FCM refused the check ({result.describe})")]
    return [
        CredentialProblem(
            "fcm", f"FCM did not tell ({result.describe}); try again later", transient=True
        )
    ]


async def check_stored_app(settings: Settings, app_id: str) -> list[CredentialProblem]:
    """Check the credentials an app has in the store (``tidings apps check APP_ID``)."""
    db = Database(settings.resolved_database_url)
    try:
        async with db.read() as session:
            app = await session.get(App, app_id)
    finally:
        await db.dispose()
    if app is None:
        raise LookupError(f"no app with id {app_id!r}")
    box = SecretBox.from_settings(
        settings.secret_key.get_secret_value() if settings.secret_key else None, settings.home
    )
    credentials = open_credentials(app, box)
    if credentials.apns is None and credentials.fcm is None:
        return [CredentialProblem("app", "the app has no provider credentials")]
    routes = ProviderRoutes.from_strings(
        settings.apns_endpoint, settings.fcm_endpoint, settings.provider_ca_file
    )
    return await check_credentials(credentials, routes)
