"""Alembic environment: migrates the store named by the config or by tidings' settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool
from sqlmodel import SQLModel

import tidings.store.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from tidings.settings import Settings
from tidings.store.db import ensure_sqlite_directory, install_sqlite_pragmas, is_sqlite, sync_url

config = context.config
url = config.get_main_option("tidings.url") or Settings().resolved_database_url
target_metadata = SQLModel.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=sync_url(url).render_as_string(hide_password=False),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=is_sqlite(url),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    ensure_sqlite_directory(url)
    engine = engine_from_config(
        {"sqlalchemy.url": sync_url(url).render_as_string(hide_password=False)},
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    if is_sqlite(url):
        install_sqlite_pragmas(engine)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=is_sqlite(url),
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
