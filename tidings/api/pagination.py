"""Cursor pagination: every list is in the order of a unique key, and ``next_cursor`` names
the last key of a page. Stable under concurrent inserts (nothing is skipped or repeated, and
rows inserted behind the cursor are simply not seen), and as cheap on the last page as on the
first."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

from tidings.api.errors import ApiError

T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=500, description="items per page")]
Cursor = Annotated[
    str | None,
    Query(max_length=400, description="`next_cursor` of the previous page; omit for the first"),
]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="pass as `cursor` to get the next page; null on the last page"
    )


def encode_cursor(key: Any) -> str | None:
    if key is None:
        return None
    return base64.urlsafe_b64encode(json.dumps([key]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, kind: type[int] | type[str]) -> Any:
    """The key a cursor names, of the list's key type; a cursor from elsewhere is refused."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        decoded = None
    key = decoded[0] if isinstance(decoded, list) and len(decoded) == 1 else None
    if kind is int and type(key) is int and 0 <= key < 2**63:
        return key
    if kind is str and isinstance(key, str) and "\x00" not in key:
        return key
    raise ApiError(
        422,
        "invalid_cursor",
        "the cursor is not one this list gave out; pass `next_cursor` of the previous page",
        [{"loc": ["query", "cursor"], "msg": "unknown cursor"}],
    )
