"""Logging for tidings' processes: Rich on a terminal, plain lines elsewhere, or one JSON
object a line (TIDINGS_LOG_FORMAT=json) that log shippers read as is.

Every record carries the ids of what it is about, where known: the API request, the app, the
journey run and the Temporal workflow (tidings.observe.context). Secrets never reach a
formatter: provider credentials are never logged, and a bearer key in a message is cut out
here as a last line of defence; device tokens are masked where they are logged
(tidings.push.masking).
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from tidings.observe.context import current_ids

# aiosqlite logs every statement with its parameters at DEBUG: device tokens included.
NOISY = (
    "temporalio",
    "httpx",
    "httpcore",
    "hpack",
    "h2",
    "aioapns",
    "uvicorn.access",
    "aiosqlite",
)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',]+")


def scrub(message: str) -> str:
    return _BEARER.sub(r"\1[redacted]", message)


class ContextIds(logging.Filter):
    """Adds the request, app, run and workflow ids in context to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current_ids().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    class TidingsJson(JsonFormatter):
        def process_log_record(self, log_record: dict[str, Any]) -> dict[str, Any]:
            message = log_record.get("message")
            if isinstance(message, str):
                log_record["message"] = scrub(message)
            return log_record

    return TidingsJson(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        timestamp=False,
    )


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """``level`` in any case; ``log_format`` text (Rich on a terminal, plain lines and no
    colour codes elsewhere) or json (one object a line, whatever the output is)."""
    level = level.upper()
    handler: logging.Handler
    if log_format.lower() == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(json_formatter())
    elif sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, rich_tracebacks=True)
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(PlainFormatter(TEXT_FORMAT))
    handler.addFilter(ContextIds())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for name in NOISY:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # uvicorn's own loggers write through the same handler, in the same format
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
