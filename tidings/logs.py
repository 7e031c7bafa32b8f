"""Logging for tidings' processes: Rich on a terminal, plain lines elsewhere."""

from __future__ import annotations

import logging
import sys

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


def configure_logging(level: str = "INFO") -> None:
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, rich_tracebacks=True)
        fmt = "%(message)s"
    else:
        handler = logging.StreamHandler()
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, handlers=[handler], force=True)
    for name in NOISY:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
