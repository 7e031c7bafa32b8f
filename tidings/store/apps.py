"""Apps and their credentials: sealing on save, opening for the senders."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import delete, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.push.credentials import (
    ApnsCertificateCredentials,
    ApnsCredentials,
    ApnsTokenCredentials,
    AppCredentials,
    FcmCredentials,
)
from tidings.store.models import ApiKey, App, AppUserMapping, Device, RegistrationRequest
from tidings.store.pages import Page, keyset
from tidings.store.secrets import SecretBox, SecretError, read_secret_file, reference
from tidings.store.types import utcnow

_APNS = TypeAdapter[ApnsTokenCredentials | ApnsCertificateCredentials](ApnsCredentials)


def apns_secret_of(credentials: ApnsTokenCredentials | ApnsCertificateCredentials) -> str:
    if isinstance(credentials, ApnsTokenCredentials):
        return credentials.signing_key.get_secret_value()
    return credentials.certificate.get_secret_value()


def seal(box: SecretBox, secret: str) -> str:
    """References (env:NAME, file:/path) are kept as given; anything else is encrypted."""
    return reference(secret) or box.seal(secret)


def read_reference(value: str) -> str:
    """The secret an ``env:NAME`` or ``file:/path`` reference names, read as the workers will
    read it; SecretError (naming the reference, never a secret) when it cannot be read."""
    scheme, _, rest = value.partition(":")
    if scheme == "env":
        secret = os.environ.get(rest)
        if secret is None:
            raise SecretError(f"{value}: the variable is not set in the API's environment")
        return secret
    return read_secret_file(rest)


def set_credentials(
    app: App,
    box: SecretBox,
    *,
    apns: ApnsTokenCredentials | ApnsCertificateCredentials | None = None,
    fcm: FcmCredentials | None = None,
    apns_reference: str | None = None,
    fcm_reference: str | None = None,
) -> None:
    """Replace provider credentials; bumping the version makes workers rebuild clients and
    clears a configuration fault recorded against the old credentials.

    ``apns_reference``/``fcm_reference`` (``env:NAME``, ``file:/path``) name where the secret
    of ``apns``/``fcm`` was read from: the reference is stored instead of the secret, so the
    database holds none."""
    if apns is not None:
        app.apns_config = apns.public_config()
        app.apns_secret = reference(apns_reference or "") or seal(box, apns_secret_of(apns))
        app.apns_fault = None
    if fcm is not None:
        app.fcm_config = fcm.public_config()
        app.fcm_secret = reference(fcm_reference or "") or seal(
            box, fcm.service_account.get_secret_value()
        )
        app.fcm_fault = None
    app.credentials_version += 1
    app.updated_at = utcnow()


def clear_credentials(app: App, provider: str) -> None:
    """Remove one provider's credentials (the app stops sending to that platform)."""
    if provider == "apns":
        app.apns_config = app.apns_secret = app.apns_fault = None
    else:
        app.fcm_config = app.fcm_secret = app.fcm_fault = None
    app.credentials_version += 1
    app.updated_at = utcnow()


def secret_storage(sealed: str | None) -> str | None:
    """How a secret is kept: ``encrypted`` in the store, or a ``reference`` to elsewhere."""
    if sealed is None:
        return None
    return "reference" if reference(sealed) else "encrypted"


def open_credentials(app: App, box: SecretBox) -> AppCredentials:
    return AppCredentials(
        app_id=app.id,
        version=app.credentials_version,
        apns=open_apns(app, box),
        fcm=open_fcm(app, box),
    )


def credentials_generation(app: App, box: SecretBox) -> str:
    """What names the app's credentials as a worker would open them now: their version and,
    for secrets held as references (``env:``, ``file:``), a digest of what the references
    read today, so rotating the file or the variable takes effect without a restart (and
    without saving the app again). Encrypted secrets change only with the version."""
    references = [s for s in (app.apns_secret, app.fcm_secret) if s and reference(s)]
    if not references:
        return str(app.credentials_version)
    digest = hashlib.sha256()
    for sealed in references:
        try:
            digest.update(box.open(sealed).encode())
        except SecretError:
            digest.update(b"\0unreadable")  # opening it again will say why
        digest.update(b"\0")
    return f"{app.credentials_version}.{digest.hexdigest()[:16]}"


def open_apns(app: App, box: SecretBox) -> ApnsTokenCredentials | ApnsCertificateCredentials | None:
    """The app's APNs credentials, or None; SecretError when its secret cannot be opened."""
    if not (app.apns_config and app.apns_secret):
        return None
    config: dict[str, Any] = dict(app.apns_config)
    secret = box.open(app.apns_secret)
    config["signing_key" if config.get("auth", "token") == "token" else "certificate"] = secret
    return _APNS.validate_python(config)


def open_fcm(app: App, box: SecretBox) -> FcmCredentials | None:
    """The app's FCM credentials, or None; SecretError when its secret cannot be opened."""
    if not app.fcm_secret:
        return None
    return FcmCredentials(service_account=box.open(app.fcm_secret))


async def get_app(session: AsyncSession, app_id: str) -> App | None:
    return await session.get(App, app_id)


async def list_apps(session: AsyncSession, *, after: str | None, limit: int) -> Page[App]:
    return await keyset(session, select(App), col(App.id), after, limit)


async def delete_app(session: AsyncSession, app_id: str) -> bool:
    """Delete the app with its devices, user mappings, API keys and tracked registrations
    (explicitly, whatever SQLite's foreign-key pragma). The ledger and interactions stay for
    reports; journeys still naming the app stop sending to it."""
    if await session.get(App, app_id) is None:
        return False
    for table in (Device, AppUserMapping, ApiKey, RegistrationRequest):
        await session.exec(delete(table).where(col(table.app_id) == app_id))
    await session.exec(delete(App).where(col(App.id) == app_id))
    return True


@dataclass(frozen=True)
class ProviderStop:
    """Why an app's sends to one provider stopped, and since when.

    Kept in the app's ``apns_fault``/``fcm_fault`` text column as JSON; a plain text there (as
    stored before stops had a time) reads as the reason alone."""

    reason: str
    since: datetime | None = None

    def encode(self) -> str:
        since = self.since.isoformat() if self.since is not None else None
        return json.dumps({"reason": self.reason, "since": since})

    @classmethod
    def decode(cls, text: str | None) -> ProviderStop | None:
        if not text:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("reason"), str):
            return cls(reason=text)
        since = data.get("since")
        try:
            at = datetime.fromisoformat(since) if isinstance(since, str) else None
        except ValueError:
            at = None
        return cls(reason=data["reason"], since=at)


def provider_stop(app: App, provider: str) -> ProviderStop | None:
    """The app's recorded stop for ``provider`` (``apns`` or ``fcm``), if any."""
    return ProviderStop.decode(app.apns_fault if provider == "apns" else app.fcm_fault)


def _fault_column(provider: str) -> str:
    if provider not in ("apns", "fcm"):
        raise ValueError(f"unknown provider {provider!r}")
    return f"{provider}_fault"


async def stop_sends(
    session: AsyncSession, app: App, provider: str, reason: str, now: datetime
) -> None:
    """Record a configuration fault of the credentials or the app's setup: the app's sends to
    ``provider`` stop until its credentials change or an admin resumes them. Recorded against
    the credentials that caused it (a rotation that happened meanwhile is left alone), and
    only once: a stop already recorded keeps its reason and time."""
    column = _fault_column(provider)
    await session.exec(
        update(App)
        .where(col(App.id) == app.id)
        .where(col(App.credentials_version) == app.credentials_version)
        .where(col(getattr(App, column)).is_(None))
        .values({column: ProviderStop(reason, now).encode()})
    )


def resume_sends(app: App, provider: str) -> ProviderStop | None:
    """Clear the app's stop for ``provider`` without new credentials (the fault was fixed
    elsewhere: the key re-enabled, the topic added); the stop that was cleared, if any."""
    stop = provider_stop(app, provider)
    setattr(app, _fault_column(provider), None)
    app.updated_at = utcnow()
    return stop
