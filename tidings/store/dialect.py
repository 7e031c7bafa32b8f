"""What differs between SQLite and PostgreSQL: INSERT ... ON CONFLICT (the portable upsert),
and how a statement matches a column against many values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, any_, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession


def insert_for(session: AsyncSession, table: Any) -> Any:
    module = postgresql if _dialect(session) == "postgresql" else sqlite
    return module.insert(table)


def one_of(session: AsyncSession, column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """``column IN values``. On PostgreSQL, ``column = ANY(array)``: one parameter whatever
    the number of values, so the statement's text stays short and the same, and the driver
    and the server parse it once, not once per batch (a batch's thousand keys made psycopg
    split a thousand-placeholder query for every statement)."""
    if _dialect(session) == "postgresql":
        array = bindparam(None, list(values), type_=postgresql.ARRAY(column.type))
        return column == any_(array)  # type: ignore[no-any-return]
    return column.in_(values)  # type: ignore[no-any-return]


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind is not None else "sqlite"
