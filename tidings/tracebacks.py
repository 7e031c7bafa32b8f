"""Tracebacks that are safe to log: where an error happened, never what it said.

An exception's text may carry stored values: PostgreSQL explains a constraint violation with
the offending key (``Key (token)=(...) already exists``), and a driver error may quote a row.
Tokens, emails and phone numbers must not reach the logs, so an unexpected error is logged as
its type, its frames (file, line, code) and, for store errors, the SQL statement (which holds
placeholders only: the engine binds every value and hides bound parameters).
"""

from __future__ import annotations

import traceback

from sqlalchemy.exc import StatementError

MAX_STATEMENT_CHARS = 1000


def describe(error: BaseException) -> str:
    """The error's type, and for a store error its driver's error class and SQLSTATE."""
    name = f"{type(error).__module__}.{type(error).__qualname__}"
    if isinstance(error, StatementError) and error.orig is not None:
        orig = error.orig
        sqlstate = getattr(orig, "sqlstate", None)
        name += f" from {type(orig).__module__}.{type(orig).__qualname__}"
        if isinstance(sqlstate, str):
            name += f" (SQLSTATE {sqlstate})"
    return name


def _predecessor(error: BaseException) -> BaseException | None:
    """The exception this one was raised from (or during), as Python's own printing follows."""
    if error.__cause__ is not None:
        return error.__cause__
    return None if error.__suppress_context__ else error.__context__


def safe_traceback(error: BaseException) -> str:
    """The chain of exceptions leading to ``error``, messages withheld."""
    sections: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        lines = ["Traceback (most recent call last):\n"]
        lines.extend(traceback.format_tb(current.__traceback__))
        lines.append(f"{describe(current)}: (message withheld: it may quote stored values)\n")
        if isinstance(current, StatementError) and current.statement:
            lines.append(f"  SQL: {current.statement[:MAX_STATEMENT_CHARS]}\n")
        sections.append("".join(lines))
        current = _predecessor(current)
    # oldest first, as Python prints a chain
    return "\nwhich led to\n\n".join(reversed(sections))
