"""Run the store's Alembic migrations from code (the CLI, the embedded stack, the tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from tidings.store.db import sync_url

MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaOutOfDate(RuntimeError):
    """The database is behind (or ahead of) the code's migrations."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("tidings.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "heads") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def history() -> list[tuple[str, str]]:
    """Every revision, oldest first, with its summary."""
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    revisions = list(scripts.walk_revisions())
    return [
        (r.revision, (r.doc or "").strip().splitlines()[0] if r.doc else "")
        for r in reversed(revisions)
    ]


def head_revisions() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def current_revisions(url: str) -> set[str]:
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return set(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()


def check_schema(url: str) -> None:
    """Refuse to serve on a schema other than the code's, with the command that fixes it."""
    current, heads = current_revisions(url), head_revisions()
    if current != heads:
        raise SchemaOutOfDate(
            f"the database schema is at revision {', '.join(sorted(current)) or 'none'} but "
            f"this tidings needs {', '.join(sorted(heads))}; run `tidings db upgrade` against "
            "this database first"
        )
