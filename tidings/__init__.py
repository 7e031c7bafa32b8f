"""tidings: push-notification journeys on Temporal."""

__version__ = "0.1.0"
