"""Apps and their credentials: sealing on save, opening for the senders."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.push.credentials import (
    ApnsCertificateCredentials,
    ApnsCredentials,
    ApnsTokenCredentials,
    FcmCredentials,
)
from tidings.push.registry import AppCredentials
from tidings.store.models import App
from tidings.store.secrets import SecretBox, reference
from tidings.store.types import utcnow

_APNS = TypeAdapter[ApnsTokenCredentials | ApnsCertificateCredentials](ApnsCredentials)


def apns_secret_of(credentials: ApnsTokenCredentials | ApnsCertificateCredentials) -> str:
    if isinstance(credentials, ApnsTokenCredentials):
        return credentials.signing_key.get_secret_value()
    return credentials.certificate.get_secret_value()


def seal(box: SecretBox, secret: str) -> str:
    """References (env:NAME, file:/path) are kept as given; anything else is encrypted."""
    return reference(secret) or box.seal(secret)


def set_credentials(
    app: App,
    box: SecretBox,
    *,
    apns: ApnsTokenCredentials | ApnsCertificateCredentials | None = None,
    fcm: FcmCredentials | None = None,
) -> None:
    """Replace provider credentials; bumping the version makes workers rebuild clients and
    clears a configuration fault recorded against the old credentials."""
    if apns is not None:
        app.apns_config = apns.public_config()
        app.apns_secret = seal(box, apns_secret_of(apns))
        app.apns_fault = None
    if fcm is not None:
        app.fcm_config = fcm.public_config()
        app.fcm_secret = seal(box, fcm.service_account.get_secret_value())
        app.fcm_fault = None
    app.credentials_version += 1
    app.updated_at = utcnow()


def open_credentials(app: App, box: SecretBox) -> AppCredentials:
    apns = None
    if app.apns_config and app.apns_secret:
        config: dict[str, Any] = dict(app.apns_config)
        secret = box.open(app.apns_secret)
        config["signing_key" if config.get("auth", "token") == "token" else "certificate"] = secret
        apns = _APNS.validate_python(config)
    fcm = None
    if app.fcm_secret:
        fcm = FcmCredentials(service_account=box.open(app.fcm_secret))
    return AppCredentials(app_id=app.id, version=app.credentials_version, apns=apns, fcm=fcm)


async def get_app(session: AsyncSession, app_id: str) -> App | None:
    return await session.get(App, app_id)


async def stop_sends(session: AsyncSession, app: App, provider: str, reason: str) -> None:
    """Record a configuration fault against the credentials that caused it; a rotation that
    happened meanwhile (a newer version) is left alone."""
    column = "apns_fault" if provider == "apns" else "fcm_fault"
    await session.exec(
        update(App)
        .where(col(App.id) == app.id)
        .where(col(App.credentials_version) == app.credentials_version)
        .values({column: reason})
    )
