"""Input types shared by the routers: every value is checked before the store sees it.

Both stores must accept whatever passes here: PostgreSQL refuses NUL characters in text and
JSON, bounded columns refuse longer values, and a naive or out-of-range datetime cannot be
stored as UTC. So identifiers exclude control characters (and ``/``, so they stay one path
segment), free JSON is checked for NUL, non-finite numbers, depth and size, and datetimes must
carry a time zone.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, AwareDatetime, Field

# one path segment without control characters, and not made of dots only ("." and "..")
IDENTIFIER = r"^[^\x00-\x1f\x7f/\\]*[^\x00-\x1f\x7f/\\.][^\x00-\x1f\x7f/\\]*$"
ATTRIBUTES_MAX_BYTES = 65_536
ATTRIBUTES_MAX_DEPTH = 16

ProfileIdText = Annotated[
    str, Field(min_length=1, max_length=128, pattern=IDENTIFIER, description="a profile id")
]
AppUserIdText = Annotated[
    str,
    Field(min_length=1, max_length=256, pattern=IDENTIFIER, description="the app's user id"),
]
# a printable label: no control characters
LABEL = r"^[^\x00-\x1f\x7f]*$"


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]


def _check_json(value: Any, depth: int = 0) -> None:
    if depth > ATTRIBUTES_MAX_DEPTH:
        raise ValueError(f"nests deeper than {ATTRIBUTES_MAX_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("contains a NUL character")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("contains a number that is not finite")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_json(key, depth + 1)
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)


def _attributes(value: dict[str, Any]) -> dict[str, Any]:
    _check_json(value)
    if len(json.dumps(value, ensure_ascii=False).encode()) > ATTRIBUTES_MAX_BYTES:
        raise ValueError(f"is larger than {ATTRIBUTES_MAX_BYTES} bytes as JSON")
    return value


Attributes = Annotated[
    dict[str, Any],
    AfterValidator(_attributes),
    Field(description="free JSON attributes (at most 64 KiB), read by journey templates"),
]


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except Exception:
        raise ValueError("is not an IANA time zone name, e.g. Europe/Paris") from None
    return value


TimeZoneName = Annotated[
    str,
    Field(max_length=64, pattern=r"^[A-Za-z0-9_+\-/]+$", description="IANA, e.g. Europe/Paris"),
    AfterValidator(_timezone),
]
LocaleTag = Annotated[
    str,
    Field(
        max_length=35,
        pattern=r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$",
        description="BCP 47, e.g. fr-FR",
    ),
]
PhoneNumber = Annotated[str, Field(pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164")]
