"""Durations as journey designers write them: "30s", "5m", "2h", "1d", "1w", "1h30m", or
seconds as a number, or ISO 8601 ("PT1H")."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, TypeAdapter, WithJsonSchema

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_ISO = TypeAdapter(timedelta)


def parse_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, bool):
        raise ValueError("a duration cannot be true/false")
    elif isinstance(value, int | float):
        result = timedelta(seconds=value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if text.upper().startswith("P"):
            result = _ISO.validate_python(text)
        else:
            parts = _PART.findall(text)
            if not parts or "".join(f"{n}{u}" for n, u in parts) != text:
                raise ValueError(
                    f"{value!r} is not a duration; write e.g. 30s, 5m, 2h, 1d, 1h30m or PT1H"
                )
            result = timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))
    else:
        raise ValueError(f"{value!r} is not a duration")
    if result < timedelta(0):
        raise ValueError("a duration cannot be negative")
    return result


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "pattern": r"^\s*(\d+(\.\d+)?(ms|s|m|h|d|w)\s*)+$|^[Pp]",
                    "examples": ["30s", "5m", "1h30m", "1d", "PT1H"],
                },
                {"type": "number", "minimum": 0, "description": "seconds"},
            ],
            "description": "a duration: 30s, 5m, 2h, 1d, 1w, 1h30m, 250ms, seconds as a "
            "number, or ISO 8601 (PT1H)",
        }
    ),
]
