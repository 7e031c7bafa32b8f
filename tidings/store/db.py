"""Engines and sessions for the store: SQLite (WAL, busy timeout) or PostgreSQL (psycopg 3)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000


class StoreURLError(ValueError):
    """The database URL names a backend tidings does not support."""


def _normalise(url: str, *, asynchronous: bool) -> URL:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite" if asynchronous else "sqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    raise StoreURLError(
        f"unsupported database URL scheme {parsed.drivername!r}: use sqlite:///PATH or "
        "postgresql://USER@HOST/DB"
    )


def async_url(url: str) -> URL:
    return _normalise(url, asynchronous=True)


def sync_url(url: str) -> URL:
    """The URL Alembic uses (synchronous drivers)."""
    return _normalise(url, asynchronous=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def ensure_sqlite_directory(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def install_sqlite_pragmas(sync_engine: Any) -> None:
    """WAL so readers never block the writer, a busy timeout so writers queue instead of
    failing, and explicit BEGIN handling so SQLAlchemy controls transactions (pysqlite's own
    implicit transactions defeat ``BEGIN IMMEDIATE``)."""

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Write transactions take the write lock up front: a deferred transaction that reads
        # and then writes fails at once with SQLITE_BUSY when another writer got in between.
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """One async engine per process; sessions are cheap and short-lived."""

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = is_sqlite(url)
        ensure_sqlite_directory(url)
        # Bound values (tokens, emails, phone numbers) never reach an exception's text, so a
        # store error logged anywhere cannot leak them.
        options: dict[str, Any] = {"echo": echo, "hide_parameters": True}
        if not self.is_sqlite:
            options.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(async_url(url), **options)
        if self.is_sqlite:
            install_sqlite_pragmas(self.engine.sync_engine)
        self._writer_engine = (
            self.engine.execution_options(sqlite_begin="IMMEDIATE")
            if self.is_sqlite
            else self.engine
        )
        self._sessions = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )
        self._write_sessions = async_sessionmaker(
            self._writer_engine, class_=AsyncSession, expire_on_commit=False
        )

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for queries; rolled back on exit."""
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session whose work is committed on a clean exit and rolled back on an error."""
        async with self._write_sessions() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def dispose(self) -> None:
        await self.engine.dispose()

    def describe(self) -> str:
        """The URL without its password, for logs."""
        return make_url(self.url).render_as_string(hide_password=True)
