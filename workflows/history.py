"""When a workflow's history is full enough to continue as new: Temporal suggests it, or the
engine options' own limit (small in tests, to exercise continue-as-new) is reached."""

from __future__ import annotations

from temporalio import workflow


def history_full(limit: int | None) -> bool:
    info = workflow.info()
    return info.is_continue_as_new_suggested() or (
        limit is not None and info.get_current_history_length() >= limit
    )
