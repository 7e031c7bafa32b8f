"""Per-app API keys: created with a random secret shown once, stored as a digest.

A key reads ``tdk_<id>_<secret>``: the id (16 hex digits) finds the row without revealing
anything, the secret (256 random bits) is checked against the stored SHA-256 digest in
constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.models import ApiKey
from tidings.store.pages import Page, keyset

KEY = re.compile(r"^tdk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """(key id, the whole key)."""
    key_id = secrets.token_hex(8)
    return key_id, f"tdk_{key_id}_{secrets.token_urlsafe(32)}"


async def create_key(
    session: AsyncSession, *, app_id: str, name: str, now: datetime
) -> tuple[ApiKey, str]:
    """The stored row and the key itself, which is never stored nor shown again."""
    key_id, key = new_key()
    row = ApiKey(id=key_id, app_id=app_id, name=name, secret_digest=digest(key), created_at=now)
    session.add(row)
    await session.flush()
    return row, key


async def verify_key(session: AsyncSession, key: str) -> ApiKey | None:
    """The live (not revoked) key row this key belongs to, or None."""
    match = KEY.match(key)
    if match is None:
        return None
    row = await session.get(ApiKey, match.group(1))
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.secret_digest, digest(key)):
        return None
    return row


async def key_valid_for(session: AsyncSession, key: str, app_id: str) -> bool:
    row = await verify_key(session, key)
    return row is not None and row.app_id == app_id


async def list_keys(
    session: AsyncSession, app_id: str, *, after: str | None, limit: int
) -> Page[ApiKey]:
    statement = select(ApiKey).where(col(ApiKey.app_id) == app_id)
    return await keyset(session, statement, col(ApiKey.id), after, limit)


async def revoke_key(
    session: AsyncSession, *, app_id: str, key_id: str, now: datetime
) -> ApiKey | None:
    """Revoke the key (idempotent: a revoked key keeps its first revocation time)."""
    row = await session.get(ApiKey, key_id)
    if row is None or row.app_id != app_id:
        return None
    if row.revoked_at is None:
        row.revoked_at = now
        session.add(row)
        await session.flush()
    return row
