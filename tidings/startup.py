"""Starting a process: settings read and checked, and configuration errors told in one or two
lines instead of a traceback.

Every entry point (the `tidings` command, ``worker.py``, ``starter.py``) loads its settings
through :func:`load_settings` and runs inside :func:`configuration_errors`. In production mode
(``TIDINGS_ENV=production``, or a PostgreSQL store) a process refuses to start without
``TEMPORAL_ADDRESS``, ``TIDINGS_SECRET_KEY`` and ``TIDINGS_ADMIN_KEY``: it must never start a
private dev server or generate a key the other replicas do not share.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import ValidationError

from tidings.settings import Settings

# the exit status of a process that refused its configuration (as a usage error)
CONFIGURATION_EXIT = 2
MAX_DETAIL_CHARS = 200
UNDEFINED_TABLE = "42P01"  # PostgreSQL's SQLSTATE for a missing table


class ConfigurationError(Exception):
    """A configuration a process refuses; each line names one problem and its fix."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


def load_settings() -> Settings:
    """The process' settings, refused (ConfigurationError) when a value is invalid or, in
    production mode, when a required one is missing."""
    try:
        settings = Settings()
    except ValidationError as error:
        raise ConfigurationError(*_validation_lines(error)) from None
    problems = production_problems(settings)
    if problems:
        raise ConfigurationError(*problems)
    return settings


def _validation_lines(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        field = "_".join(str(part) for part in item["loc"]) or "settings"
        lines.append(f"TIDINGS_{field.upper()}: {item['msg']}")
    return lines


def production_problems(settings: Settings) -> list[str]:
    """One line per setting production mode requires and lacks (or has unusable)."""
    from tidings.store.secrets import SecretBox, SecretError
    from tidings.temporal.client import configured_address

    if not settings.production:
        return []
    why = (
        "TIDINGS_ENV=production"
        if settings.env == "production"
        else "production mode (a PostgreSQL TIDINGS_DATABASE_URL)"
    )
    problems = []
    if configured_address() is None:
        problems.append(
            f"TEMPORAL_ADDRESS is not set: {why} never starts a dev server; "
            "set it to your Temporal frontend (host:7233)"
        )
    keys = settings.secret_keys()
    if not keys:
        problems.append(
            f"TIDINGS_SECRET_KEY is not set: {why} needs one key shared by every process; "
            "make one with `tidings keys generate`"
        )
    else:
        try:
            SecretBox(keys)
        except SecretError as error:
            problems.append(str(error))
    if settings.admin_key is None or not settings.admin_key.get_secret_value().strip():
        problems.append(
            f"TIDINGS_ADMIN_KEY is not set: {why} needs the admin API key shared by every "
            "API replica; choose a long random value"
        )
    return problems


def explain(error: BaseException) -> list[str] | None:
    """One or two lines for an error of configuration or environment; None for a bug."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, NoSuchModuleError, OperationalError

    from tidings.store.db import StoreURLError
    from tidings.store.migrate import SchemaOutOfDate
    from tidings.store.secrets import SecretError
    from tidings.temporal.devserver import StackError

    if isinstance(error, ConfigurationError):
        return error.lines
    if isinstance(error, SchemaOutOfDate | SecretError | StoreURLError | StackError):
        return [str(error)]
    if isinstance(error, NoSuchModuleError):
        return ["TIDINGS_DATABASE_URL names no database tidings supports (sqlite or postgresql)"]
    if isinstance(error, DBAPIError) and _missing_table(error):
        return [
            "the store has no tidings tables (not migrated): run `tidings db upgrade` "
            "against TIDINGS_DATABASE_URL first"
        ]
    if isinstance(error, OperationalError | InterfaceError):
        detail = _first_line(error.orig) if error.orig is not None else type(error).__name__
        return [
            f"cannot reach the database: {detail}",
            "check TIDINGS_DATABASE_URL and that the database server runs",
        ]
    if isinstance(error, RuntimeError) and str(error).startswith("Failed client connect"):
        return [
            f"cannot reach Temporal: {_first_line(error)}",
            "check TEMPORAL_ADDRESS (and TEMPORAL_NAMESPACE, TEMPORAL_TLS_*) and that it runs",
        ]
    return None


def _missing_table(error: BaseException) -> bool:
    orig = getattr(error, "orig", None)
    if getattr(orig, "sqlstate", None) == UNDEFINED_TABLE:
        return True
    return "no such table" in str(orig)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:MAX_DETAIL_CHARS]


@contextmanager
def configuration_errors(command: str = "tidings") -> Iterator[None]:
    """Configuration errors end the process in one or two lines on stderr; anything else
    is a bug and keeps its traceback."""
    try:
        yield
    except Exception as error:
        lines = explain(error)
        if lines is None:
            raise
        for line in lines:
            sys.stderr.write(f"{command}: {line}\n")
        sys.stderr.flush()
        raise SystemExit(CONFIGURATION_EXIT) from None


def prepare_store(settings: Settings) -> None:
    """Embedded (laptop) mode migrates SQLite itself; against a configured deployment the
    schema is ops' to upgrade (`tidings db upgrade`), and a mismatch stops the process."""
    from tidings.store.migrate import check_schema, upgrade
    from tidings.temporal.client import configured_address

    if configured_address() is None and settings.database_url is None:
        upgrade(settings.resolved_database_url)
    else:
        check_schema(settings.resolved_database_url)
