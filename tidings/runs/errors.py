"""Why a run cannot start, or cannot be found."""

from __future__ import annotations


class StartError(ValueError):
    """The run cannot start; nothing was stored or started."""


class RunNotFound(LookupError):
    pass
