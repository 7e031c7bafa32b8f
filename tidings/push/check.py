"""Checking an app's provider credentials against the providers, naming the wrong field.

* APNs: one background push (priority 5, expiring at once) to a well-formed token no device
  has. Apple authenticates the request and checks its topic before it looks at the token, so
  an answer about the *token* (BadDeviceToken, Unregistered, DeviceTokenNotForTopic, or a 200)
  means the key, team, bundle id and environment are fine, and an answer about anything else
  names what is wrong.
* FCM: a ``validate_only`` send to a topic: every check of a real send (the service account's
  OAuth2 exchange, the project, the permission to send), nothing delivered, no token needed.

Answers that say nothing about the credentials (a timeout, a 503) come back as problems marked
``transient``: the check could not tell. The API runs it when an app's credentials are saved
(a definite problem refuses the save) and on ``POST /v1/apps/{id}/check``; ``tidings apps
check APP_ID`` runs it on an app in the store.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tidings.push.credentials import (
    ApnsCertificateCredentials,
    ApnsTokenCredentials,
    AppCredentials,
    FcmCredentials,
)
from tidings.push.message import PushMessage
from tidings.push.outcome import Outcome, SendResult
from tidings.push.sender import ProviderRoutes, SendItem
from tidings.settings import Settings

# Well-formed (64 hex digits) and never issued by Apple: its answer is about the token only.
CHECK_DEVICE_TOKEN = "c0ffee" + "0" * 58
CHECK_TOPIC = "tidings-credential-check"
CHECK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class CredentialProblem:
    """``field`` is the credential field to fix (``apns.key_id``, ``fcm.project_id``, ...), or
    the provider alone when no field is to blame. ``also`` names other fields that may be the
    wrong one when the provider's answer cannot tell them apart (Apple answers
    InvalidProviderToken alike for a wrong key, key id or team id)."""

    field: str
    message: str
    # True when the check could not tell (the provider did not answer, or answered that it
    # is busy): try again later
    transient: bool = False
    also: tuple[str, ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        """Every field that may be the wrong one, the likeliest first."""
        return (self.field, *self.also)

    def __str__(self) -> str:
        return f"{' or '.join(self.fields)}: {self.message}"


# APNs reasons that mean the credentials are fine (the answer is about the made-up token).
APNS_FINE = {"BadDeviceToken", "Unregistered", "ExpiredToken", "DeviceTokenNotForTopic"}
TOKEN_AUTH_FIELDS = (
    "the .p8 key (apns.signing_key), its key id (apns.key_id) and team id (apns.team_id)"
)
# InvalidProviderToken does not say which of these is wrong; only a change can show it
TOKEN_AUTH_SUSPECTS = ("apns.key_id", "apns.team_id", "apns.signing_key")
APNS_FIELD_BY_REASON = {
    "InvalidProviderToken": (
        "apns.key_id",
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
}
# Not about the credentials: the check cannot tell whether they are right.
APNS_INCONCLUSIVE = {
    "ExpiredProviderToken": "Apple found the token too old: this machine's clock is probably "
    "wrong (ExpiredProviderToken)",
    "TooManyProviderTokenUpdates": "Apple refuses token updates this often for this team "
    "(TooManyProviderTokenUpdates); check again in 20 minutes",
}


def routes_of(settings: Settings) -> ProviderRoutes:
    """Where the settings send provider traffic (Apple and Google, or the simulators)."""
    return ProviderRoutes.from_strings(
        settings.apns_endpoint, settings.fcm_endpoint, settings.provider_ca_file
    )


async def check_credentials(
    credentials: AppCredentials, routes: ProviderRoutes, *, timeout_s: float = CHECK_TIMEOUT_S
) -> list[CredentialProblem]:
    """Every problem with the app's APNs and FCM credentials; empty when both work."""
    by_provider = await check_providers(credentials, routes, timeout_s=timeout_s)
    return [problem for found in by_provider.values() for problem in found]


async def check_providers(
    credentials: AppCredentials, routes: ProviderRoutes, *, timeout_s: float = CHECK_TIMEOUT_S
) -> dict[str, list[CredentialProblem]]:
    """The problems of each provider the credentials are for (``apns``, ``fcm``), checked
    concurrently; an empty list: the provider accepts them."""
    checks: dict[str, Coroutine[Any, Any, list[CredentialProblem]]] = {}
    if credentials.apns is not None:
        checks["apns"] = check_apns(credentials.apns, routes, timeout_s=timeout_s)
    if credentials.fcm is not None:
        checks["fcm"] = check_fcm(credentials.fcm, routes, timeout_s=timeout_s)
    found = await asyncio.gather(*checks.values())
    return dict(zip(checks, found, strict=True))


def narrow_to_changes(
    problems: list[CredentialProblem],
    before: ApnsTokenCredentials | ApnsCertificateCredentials | None,
    after: ApnsTokenCredentials | ApnsCertificateCredentials | None,
) -> list[CredentialProblem]:
    """Name the wrong field of an InvalidProviderToken when a change shows it.

    Apple answers alike for a wrong key, key id or team id. When the app's previous token
    credentials worked (``before``: they were not stopped) and only some of the three
    changed, the ones that did not change are not to blame."""
    if not isinstance(before, ApnsTokenCredentials) or not isinstance(after, ApnsTokenCredentials):
        return problems
    changed = {
        name
        for name, old, new in (
            ("apns.key_id", before.key_id, after.key_id),
            ("apns.team_id", before.team_id, after.team_id),
            (
                "apns.signing_key",
                before.signing_key.get_secret_value(),
                after.signing_key.get_secret_value(),
            ),
        )
        if old != new
    }
    narrowed: list[CredentialProblem] = []
    for problem in problems:
        suspects = [f for f in problem.fields if f in changed]
        if problem.fields == TOKEN_AUTH_SUSPECTS and suspects:
            problem = CredentialProblem(
                suspects[0], problem.message, problem.transient, tuple(suspects[1:])
            )
        narrowed.append(problem)
    return narrowed


async def check_apns(
    credentials: ApnsTokenCredentials | ApnsCertificateCredentials,
    routes: ProviderRoutes,
    *,
    timeout_s: float = CHECK_TIMEOUT_S,
) -> list[CredentialProblem]:
    # the provider SDKs load only when a check runs: the API imports this module
    from tidings.push.apns import ApnsSender

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
    reason = result.reason or ""
    known = APNS_FIELD_BY_REASON.get(reason)
    if known is not None:
        field, message = known
        also = TOKEN_AUTH_SUSPECTS[1:] if field == TOKEN_AUTH_SUSPECTS[0] else ()
        return [CredentialProblem(field, message, also=also)]
    if reason in APNS_INCONCLUSIVE:
        return [CredentialProblem("apns", APNS_INCONCLUSIVE[reason], transient=True)]
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
    from tidings.push.fcm import FcmSender

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


# What Google's token endpoint says (its error_description) about a service account it
# refuses, and the field of the service-account JSON that is wrong.
TOKEN_ENDPOINT_FIELDS = (
    ("invalid jwt signature", ("fcm.private_key", "fcm.private_key_id")),
    ("invalid email", ("fcm.client_email",)),
    ("account not found", ("fcm.client_email",)),
)


def _fcm_problems(credentials: FcmCredentials, result: SendResult) -> list[CredentialProblem]:
    if result.outcome is Outcome.DELIVERED:
        return []
    project = credentials.project_id
    reason = result.reason or ""
    if reason.startswith("service account refused"):
        lowered = reason.lower()
        for hint, (field, *also) in TOKEN_ENDPOINT_FIELDS:
            if hint in lowered:
                return [CredentialProblem(field, f"the {reason}", also=tuple(also))]
        if "reasonable timeframe" in lowered:  # iat/exp: this machine's clock
            return [
                CredentialProblem(
                    "fcm",
                    f"the {reason}: this machine's clock is probably wrong",
                    transient=True,
                )
            ]
        return [CredentialProblem("fcm.service_account", f"the {reason}")]
    if reason == "PERMISSION_DENIED" or result.status == 403:
        return [
            CredentialProblem(
                "fcm.project_id",
                f"this service account may not send messages for project {project!r}: the "
                "project id is not the account's project, or the account lacks the permission "
                "to send (PERMISSION_DENIED)",
            )
        ]
    if reason == "NOT_FOUND" or result.status == 404:
        return [
            CredentialProblem(
                "fcm.project_id",
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
