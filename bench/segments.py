"""Segments on a large store: how long a preview (count and first ids) and a run's whole
audience (keyset pages of the compiled query) take, on SQLite and, when one answers,
PostgreSQL.

    python bench/segments.py --profiles 100000

Seeds N profiles (attributes ``plan`` and ``stats.orders``), about 1.5 devices each in two
apps (a tenth invalidated), an interaction for every third profile (opens and clicks, up to
60 days old) and a run whose pushes reached every fifth, into a fresh SQLite file and a fresh
PostgreSQL database; then times each segment below. Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from typing import Any

import psycopg

from tidings.journeys.segments import parse_segment
from tidings.store.db import Database
from tidings.store.migrate import upgrade
from tidings.store.segments import count_matching, matching_ids
from tidings.store.types import utcnow

POSTGRES = os.environ.get("TIDINGS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
PAGE = 2000
SEGMENTS: dict[str, dict[str, Any]] = {
    "attribute": {"attribute": "plan=pro"},
    "nested_number": {"attribute": {"name": "stats.orders", "op": "gte", "value": 5}},
    "device": {"device": {"app": "shop", "provider": "apns"}},
    "opened_7d": {"interaction": {"kind": "opened", "within_days": 7}},
    "was_in_run": {"run": {"journey": "welcome"}},
    "combined": {
        "all": [
            {"attribute": "plan=pro"},
            {"device": {"app": "shop"}},
            {
                "any": [
                    {"interaction": {"kind": "opened", "within_days": 30}},
                    {"not": {"run": {"journey": "welcome"}}},
                ]
            },
        ]
    },
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def seed(db: Database, profiles: int) -> None:
    """Rows written with plain inserts in large statements (the same SQL on both stores)."""
    from sqlalchemy import insert

    from tidings.store.models import App, Delivery, Device, Interaction, JourneyRun, Profile

    now = utcnow()
    async with db.write() as session:
        for app_id in ("shop", "news"):
            session.add(App(id=app_id, name=app_id))
        session.add(JourneyRun(id="run-1", journey_id="welcome", definition={}, entry={}))
    chunk = 5000
    for start in range(0, profiles, chunk):
        ids = range(start, min(start + chunk, profiles))
        people: list[dict[str, Any]] = []
        devices: list[dict[str, Any]] = []
        interactions: list[dict[str, Any]] = []
        pushes: list[dict[str, Any]] = []
        for n in ids:
            pid = f"p{n:08d}"
            plan = ("pro", "free", "team")[n % 3]
            people.append(
                {
                    "id": pid,
                    "attributes": {"plan": plan, "stats": {"orders": n % 11}},
                    "created_at": now,
                    "updated_at": now,
                }
            )
            for d in range(1 + n % 2):
                devices.append(
                    {
                        "app_id": "shop" if d == 0 else "news",
                        "profile_id": pid,
                        "provider": "apns" if n % 4 else "fcm",
                        "token": f"{n:056x}{d:08x}",
                        "state": "invalid" if n % 10 == 0 else "valid",
                        "registered_at": now,
                        "created_at": now,
                    }
                )
            if n % 3 == 0:
                interactions.append(
                    {
                        "scope": "shop",
                        "event_id": f"e{n}",
                        "tracking_id": f"t{n}",
                        "kind": "clicked" if n % 2 else "opened",
                        "status": "matched",
                        "app_id": "shop",
                        "profile_id": pid,
                        "source": "bench",
                        "details": {},
                        "occurred_at": now - timedelta(days=n % 60),
                        "received_at": now,
                        "forward_attempts": 0,
                        "forward_failures": 0,
                    }
                )
            if n % 5 == 0:
                pushes.append(
                    {
                        "send_key": f"k{n}",
                        "tracking_id": f"t{n}",
                        "run_id": "run-1",
                        "workflow_id": "run-1/cohort-000001",
                        "journey_id": "welcome",
                        "node_id": "hello",
                        "visit": 0,
                        "app_id": "shop",
                        "profile_id": pid,
                        "status": "delivered",
                        "attempts": 1,
                        "unknown_outcomes": 0,
                        "created_at": now,
                    }
                )
        async with db.write() as session:
            connection = await session.connection()
            await connection.execute(insert(Profile), people)
            await connection.execute(insert(Device), devices)
            if interactions:
                await connection.execute(insert(Interaction), interactions)
            if pushes:
                await connection.execute(insert(Delivery), pushes)


async def measure(db: Database) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, data in SEGMENTS.items():
        definition = parse_segment(data)
        as_of = utcnow()
        async with db.read() as session:
            began = time.perf_counter()
            count = await count_matching(session, definition, as_of)
            first = await matching_ids(session, definition, as_of, after=None, limit=10)
            preview_s = time.perf_counter() - began
            began = time.perf_counter()
            paged, after, pages = 0, None, 0
            while True:
                ids = await matching_ids(session, definition, as_of, after=after, limit=PAGE)
                paged += len(ids)
                pages += 1
                if len(ids) < PAGE:
                    break
                after = ids[-1]
            pages_s = time.perf_counter() - began
        assert paged == count, (name, paged, count)
        assert first == [] or first[0] <= first[-1]
        results[name] = {
            "count": count,
            "preview_ms": round(preview_s * 1000, 1),
            "pages": pages,
            "all_pages_ms": round(pages_s * 1000, 1),
            "ms_per_page": round(pages_s * 1000 / pages, 2),
        }
        log(f"{name}: {results[name]}")
    return results


async def run_sqlite(profiles: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as home:
        url = f"sqlite:///{home}/bench.db"
        upgrade(url)
        db = Database(url)
        try:
            began = time.perf_counter()
            await seed(db, profiles)
            log(f"sqlite seeded in {time.perf_counter() - began:.1f}s")
            return await measure(db)
        finally:
            await db.dispose()


async def run_postgres(profiles: int) -> dict[str, Any] | None:
    try:
        with psycopg.connect(POSTGRES, connect_timeout=3):
            pass
    except psycopg.Error:
        log("no PostgreSQL: skipped")
        return None
    name = f"tidings_bench_{uuid.uuid4().hex[:8]}"
    base = POSTGRES.rpartition("/")[0]
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{base}/{name}"
    try:
        upgrade(url)
        db = Database(url)
        try:
            began = time.perf_counter()
            await seed(db, profiles)
            log(f"postgresql seeded in {time.perf_counter() - began:.1f}s")
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ANALYZE")
            return await measure(db)
        finally:
            await db.dispose()
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    args = parser.parse_args()
    result = {
        "profiles": args.profiles,
        "page": PAGE,
        "sqlite": await run_sqlite(args.profiles),
        "postgresql": await run_postgres(args.profiles),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
