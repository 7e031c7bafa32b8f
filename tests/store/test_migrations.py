from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, pool
from sqlmodel import SQLModel

import tidings.store.models  # noqa: F401
from tidings.store.db import sync_url
from tidings.store.migrate import SchemaOutOfDate, check_schema, head_revisions, upgrade


def test_migrations_build_exactly_the_models(database_url: str) -> None:
    """The migrated schema has every table, column and index the models declare."""
    engine = create_engine(sync_url(database_url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, SQLModel.metadata)
    finally:
        engine.dispose()
    assert differences == []
    check_schema(database_url)


def test_a_store_behind_the_code_is_refused_with_the_fix(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/empty.db"
    with pytest.raises(SchemaOutOfDate, match="tidings db upgrade"):
        check_schema(url)
    upgrade(url)
    check_schema(url)
    # one line of history: every store upgrades through the same steps, in order
    assert len(head_revisions()) == 1
