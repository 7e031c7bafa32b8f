"""APNs and FCM senders behind one interface, and the classification of provider answers.

The content model and the outcome classes are plain pydantic and enums, imported eagerly:
journey definitions (which workflows import) use them. The senders pull in aioapns and
firebase-admin, so they load on first use; workflows never import the provider SDKs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tidings.push.message import PushMessage
from tidings.push.outcome import Outcome, SendResult

if TYPE_CHECKING:
    from tidings.push.credentials import AppCredentials
    from tidings.push.registry import AppSenders, SenderRegistry
    from tidings.push.sender import ProviderRoutes, SendItem

_LAZY = {
    "AppCredentials": "tidings.push.credentials",
    "AppSenders": "tidings.push.registry",
    "SenderRegistry": "tidings.push.registry",
    "ProviderRoutes": "tidings.push.sender",
    "SendItem": "tidings.push.sender",
}

__all__ = [
    "AppCredentials",
    "AppSenders",
    "Outcome",
    "ProviderRoutes",
    "PushMessage",
    "SendItem",
    "SendResult",
    "SenderRegistry",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
