"""Readiness: the store answers and has the code's schema, and Temporal answers.

Liveness (/healthz) checks nothing but that the process serves; readiness (/readyz) is what a
load balancer or Kubernetes waits for before sending work.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy import text
from temporalio.client import Client

from tidings.store.db import Database
from tidings.store.migrate import current_revisions, head_revisions

CHECK_TIMEOUT_S = 5.0


@dataclass
class Readiness:
    """What /readyz reports: every check's verdict, ready only when all pass."""

    checks: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return all(verdict == "ok" for verdict in self.checks.values())


async def _store(db: Database) -> str:
    async with db.read() as session:
        await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    current = await asyncio.to_thread(current_revisions, db.url)
    if current != head_revisions():
        return "schema not migrated (run `tidings db upgrade`)"
    return "ok"


async def _temporal(client: Client | None) -> str:
    if client is None:
        return "not connected"
    await client.service_client.check_health()
    return "ok"


async def readiness(db: Database | None, client: Client | None) -> Readiness:
    result = Readiness()
    checks = {"store": _store(db) if db is not None else None, "temporal": _temporal(client)}
    for name, check in checks.items():
        if check is None:
            result.checks[name] = "not configured"
            continue
        try:
            result.checks[name] = await asyncio.wait_for(check, CHECK_TIMEOUT_S)
        except Exception as error:
            result.checks[name] = f"unreachable ({type(error).__name__})"
    return result
