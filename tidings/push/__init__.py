"""APNs and FCM senders behind one interface, and the classification of provider answers."""

from tidings.push.message import PushMessage
from tidings.push.outcome import Outcome, SendResult
from tidings.push.registry import AppCredentials, AppSenders, SenderRegistry
from tidings.push.sender import ProviderRoutes, SendItem

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
