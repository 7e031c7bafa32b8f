"""Keyset pagination: pages in the order of a unique column, stable under inserts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    # the key of the last item when more follow, else None
    next_after: Any


async def keyset(
    session: AsyncSession,
    statement: SelectOfScalar[T],
    key: Any,
    after: Any,
    limit: int,
) -> Page[T]:
    """Rows after ``after`` in ``key`` order; one extra row is read to know whether more
    follow, so the last page never points to an empty one."""
    if after is not None:
        statement = statement.where(key > after)
    rows = list((await session.exec(statement.order_by(key).limit(limit + 1))).all())
    if len(rows) <= limit:
        return Page(rows, None)
    rows = rows[:limit]
    return Page(rows, getattr(rows[-1], key.key))
