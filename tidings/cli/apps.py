"""What `tidings apps ...` does beyond the API: check an app's stored credentials with the
providers, from a shell that holds the store's settings."""

from __future__ import annotations

from tidings.push.check import CredentialProblem, check_credentials, routes_of
from tidings.settings import Settings
from tidings.store.apps import open_credentials
from tidings.store.db import Database
from tidings.store.models import App
from tidings.store.secrets import SecretBox


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
    return await check_credentials(
        credentials, routes_of(settings), timeout_s=settings.credential_check_timeout_s
    )
