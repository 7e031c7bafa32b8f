"""tidings' Prometheus metrics, shared by the API and the worker processes.

Labels stay bounded: apps, providers, outcome classes, route templates and status codes;
never a profile, device, token or tracking id.
"""

from __future__ import annotations

import re

from prometheus_client import Counter, Gauge, Histogram

PUSHES = Counter(
    "tidings_pushes",
    "Ledger rows closed by a delivery attempt, by their final status (the ledger's status).",
    ["app", "provider", "outcome"],
)
PROVIDER_LATENCY = Histogram(
    "tidings_provider_answer_seconds",
    "Time from a push request to its provider's answer (or to the failure without one).",
    ["provider", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
TOKEN_INVALIDATIONS = Counter(
    "tidings_token_invalidations",
    "Device tokens invalidated (gone) or quarantined (suspect) on a provider's answer.",
    ["provider", "kind", "reason"],
)
RATE_LIMIT_WAITS = Counter(
    "tidings_rate_limit_waits",
    "Chunks of sends that waited for their app's send rate.",
    ["app"],
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "tidings_rate_limit_wait_seconds",
    "Seconds sends waited for their app's send rate.",
    ["app"],
)
LEDGER_OPEN_ROWS = Gauge(
    "tidings_ledger_open_rows",
    "Ledger rows started but not completed (pending or unknown, still to be retried).",
)
FORWARDER_BACKLOG = Gauge(
    "tidings_forwarder_backlog",
    "Stored events not yet forwarded to their journeys.",
    ["kind"],
)
FORWARDER_LAG = Gauge(
    "tidings_forwarder_lag_seconds",
    "Age of the oldest stored event not yet forwarded (0 when none waits).",
    ["kind"],
)
RUNS_IN_FLIGHT = Gauge("tidings_runs_in_flight", "Journey runs not yet finished.")
COHORTS_IN_FLIGHT = Gauge(
    "tidings_cohorts_in_flight", "Cohort workflows running (as Temporal's visibility counts them)."
)
API_REQUESTS = Counter(
    "tidings_api_requests",
    "API requests by method, route template and status code.",
    ["method", "route", "status"],
)
API_LATENCY = Histogram(
    "tidings_api_request_seconds",
    "API request duration by method and route template.",
    ["method", "route"],
)

# "410 Unregistered", "400 BadDeviceToken", "404 UNREGISTERED": a status and a provider's code
_REASON = re.compile(r"^(?:\d{3} )?[A-Za-z_]{1,48}$")


def bounded_reason(reason: str) -> str:
    """A provider's reason as a label only when it looks like one of its codes."""
    return reason if _REASON.match(reason) else "other"


def count_pushes(app: str, provider: str | None, outcome: str, amount: int = 1) -> None:
    PUSHES.labels(app, provider or "none", outcome).inc(amount)


WEBHOOK_ATTEMPTS = Counter(
    "tidings_webhook_attempts",
    "Webhook requests made by the dispatcher, by what became of them (sent, retried, set_aside).",
    ["outcome"],
)
