"""The ids a log line is about (request, app, run, workflow), carried in context variables
so every record logged while handling them carries them too."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

FIELDS = ("request_id", "app_id", "run_id", "workflow_id")
_ids: ContextVar[dict[str, str] | None] = ContextVar("tidings_log_ids", default=None)


def current_ids() -> dict[str, str]:
    ids = dict(_ids.get() or {})
    if "workflow_id" not in ids:
        ids.update(_temporal_ids())
    return ids


def _temporal_ids() -> dict[str, str]:
    """Inside an activity, the workflow it works for."""
    from temporalio import activity

    if not activity.in_activity():
        return {}
    return {"workflow_id": activity.info().workflow_id or ""}


@contextlib.contextmanager
def bound(**ids: str | None) -> Iterator[None]:
    """Log records made inside carry these ids (added to those already bound)."""
    unknown = set(ids) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown log ids: {sorted(unknown)}")
    merged = dict(_ids.get() or {}) | {k: v for k, v in ids.items() if v}
    token = _ids.set(merged)
    try:
        yield
    finally:
        _ids.reset(token)
