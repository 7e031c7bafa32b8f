"""Bulk import speed: profiles per second through the import's service layer (the path of
``POST /v1/profiles/import`` and ``tidings profiles import``, minus HTTP), on SQLite and, when
one answers, PostgreSQL.

    python bench/profile_import.py --profiles 100000

Imports N profiles as NDJSON (email, time zone, two attributes, a user mapping and one device
each) into a fresh store, then the same N again (every row an update), the same as CSV, and
N more profiles alone (email and an attribute: no mapping, no device).
Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import io
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg

from tidings.imports.service import ImportFormat, import_profiles
from tidings.store.db import Database
from tidings.store.migrate import upgrade
from tidings.store.models import App

POSTGRES = os.environ.get("TIDINGS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
APP = "shop"
PIECE = 64 << 10


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _row(n: int) -> dict[str, Any]:
    token = hashlib.sha256(f"import/{n}".encode()).hexdigest()
    return {
        "id": f"p{n:08d}",
        "email": f"person{n}@example.com",
        "timezone": "Europe/Paris",
        "attributes": {"plan": "pro" if n % 3 == 0 else "free", "orders": n % 17},
        "users": {APP: f"u{n}"},
        "devices": [{"app": APP, "provider": "apns", "token": token}],
    }


def ndjson(profiles: int) -> bytes:
    return b"".join(json.dumps(_row(n)).encode() + b"\n" for n in range(profiles))


def bare_ndjson(profiles: int) -> bytes:
    """Profiles alone (no mapping, no device), under other ids."""
    rows = (
        {"id": f"q{n:08d}", "email": f"q{n}@example.com", "attributes": {"orders": n % 17}}
        for n in range(profiles)
    )
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


def csv_body(profiles: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    columns = "id email timezone attributes.plan users.shop device.app device.provider device.token"
    writer.writerow(columns.split())
    for n in range(profiles):
        row = _row(n)
        device = row["devices"][0]
        plan = row["attributes"]["plan"]
        writer.writerow(
            [row["id"], row["email"], row["timezone"], plan, f"u{n}", APP, "apns", device["token"]]
        )
    return out.getvalue().encode()


async def pieces(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), PIECE):
        yield body[start : start + PIECE]


async def timed(db: Database, body: bytes, fmt: ImportFormat, profiles: int) -> dict[str, Any]:
    began = time.perf_counter()
    report = await import_profiles(db, pieces(body), fmt)
    seconds = time.perf_counter() - began
    assert report.failed == 0, report.errors[:3]
    return {
        "seconds": round(seconds, 2),
        "profiles_per_s": round(profiles / seconds),
        "created": report.created,
        "updated": report.updated,
    }


async def measure(db: Database, profiles: int) -> dict[str, Any]:
    async with db.write() as session:
        session.add(App(id=APP, name="Shop", credentials_version=0))
    body = ndjson(profiles)
    result = {
        "ndjson_new": await timed(db, body, ImportFormat.NDJSON, profiles),
        "ndjson_again": await timed(db, body, ImportFormat.NDJSON, profiles),
        "csv_again": await timed(db, csv_body(profiles), ImportFormat.CSV, profiles),
        "profiles_only_new": await timed(db, bare_ndjson(profiles), ImportFormat.NDJSON, profiles),
    }
    log(json.dumps(result))
    return result


async def with_store(url: str, step: Callable[[Database], Any]) -> Any:
    upgrade(url)
    db = Database(url)
    try:
        return await step(db)
    finally:
        await db.dispose()


async def run_sqlite(profiles: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as home:
        url = f"sqlite:///{home}/bench.db"
        result: dict[str, Any] = await with_store(url, lambda db: measure(db, profiles))
        return result


async def run_postgres(profiles: int) -> dict[str, Any] | None:
    try:
        with psycopg.connect(POSTGRES, connect_timeout=3):
            pass
    except psycopg.Error:
        log("no PostgreSQL: skipped")
        return None
    name = f"tidings_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"{POSTGRES.rpartition('/')[0]}/{name}"
        result: dict[str, Any] = await with_store(url, lambda db: measure(db, profiles))
        return result
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    args = parser.parse_args()
    result = {
        "profiles": args.profiles,
        "cpus": os.cpu_count(),
        "sqlite": await run_sqlite(args.profiles),
        "postgresql": await run_postgres(args.profiles),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
