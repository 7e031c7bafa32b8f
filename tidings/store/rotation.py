"""Re-sealing every stored credential (the apps' provider credentials and the webhook
endpoints' signing secrets) under the newest secret key.

Rotation is safe while the API and workers run: they hold every listed key, so a credential
opens before and after its rewrite, and the rewrite keeps the plaintext (the credentials'
version is not bumped, so no sender is rebuilt). Each value is replaced only if it is still
the one read, so a credential saved meanwhile is never overwritten by an older one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import update
from sqlmodel import col, select

from tidings.store.db import Database
from tidings.store.models import App, WebhookEndpoint
from tidings.store.secrets import SecretBox, SecretError

SEALED_COLUMNS = ("apns_secret", "fcm_secret")


@dataclass
class RotationReport:
    resealed: int = 0  # encrypted values rewritten under the newest key
    current: int = 0  # encrypted values already under the newest key
    references: int = 0  # env:/file: references, which hold no secret to reseal
    changed_meanwhile: int = 0  # saved again while rotating: sealed by then with the newest
    unreadable: list[str] = field(default_factory=list)  # "app id: column", opened by no key


async def rotate_credentials(db: Database, box: SecretBox) -> RotationReport:
    report = RotationReport()
    async with db.read() as session:
        rows = (await session.exec(select(App.id, App.apns_secret, App.fcm_secret))).all()
    for app_id, *sealed_values in rows:
        for column, sealed in zip(SEALED_COLUMNS, sealed_values, strict=True):
            if sealed is None:
                continue
            if not sealed.startswith("enc:"):
                report.references += 1
                continue
            if box.sealed_with_newest(sealed):
                report.current += 1
                continue
            try:
                resealed = box.rotate(sealed)
            except SecretError:
                report.unreadable.append(f"{app_id}: {column}")
                continue
            async with db.write() as session:
                result = await session.exec(
                    update(App)
                    .where(col(App.id) == app_id, getattr(App, column) == sealed)
                    .values({column: resealed})
                )
                changed = result.rowcount
            if changed:
                report.resealed += 1
            else:
                report.changed_meanwhile += 1
    await _rotate_webhook_secrets(db, box, report)
    return report


async def _rotate_webhook_secrets(db: Database, box: SecretBox, report: RotationReport) -> None:
    async with db.read() as session:
        rows = (await session.exec(select(WebhookEndpoint.id, WebhookEndpoint.secret))).all()
    for endpoint_id, sealed in rows:
        if box.sealed_with_newest(sealed):
            report.current += 1
            continue
        try:
            resealed = box.rotate(sealed)
        except SecretError:
            report.unreadable.append(f"webhook {endpoint_id}: secret")
            continue
        async with db.write() as session:
            result = await session.exec(
                update(WebhookEndpoint)
                .where(col(WebhookEndpoint.id) == endpoint_id)
                .where(col(WebhookEndpoint.secret) == sealed)
                .values(secret=resealed)
            )
        if result.rowcount:
            report.resealed += 1
        else:
            report.changed_meanwhile += 1
