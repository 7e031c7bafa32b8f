"""The engine options a run is started with, from settings. Here, not in the worker's
composition, so the API can start runs without importing the worker or the provider SDKs."""

from __future__ import annotations

from datetime import timedelta

from activities.contracts import FrequencyCap
from tidings.settings import Settings
from workflows.contracts import EngineOptions


def engine_options(settings: Settings) -> EngineOptions:
    return EngineOptions(
        cohort_size=settings.cohort_size,
        cohort_window=settings.cohort_window,
        cohort_parks_after=timedelta(seconds=settings.cohort_parks_after_s),
        audience_page_size=settings.audience_page_size,
        delivery_heartbeat_timeout=settings.delivery_heartbeat_timeout,
        delivery_max_backoff=timedelta(seconds=settings.delivery_max_backoff_s),
        delivery_retry_horizon=timedelta(seconds=settings.delivery_retry_horizon_s),
        delivery_task_queue=(
            settings.delivery_task_queue
            if settings.delivery_task_queue not in (None, settings.task_queue)
            else None
        ),
        frequency_cap=FrequencyCap(
            settings.frequency_cap_24h, settings.frequency_cap_7d, settings.frequency_cap_30d
        ),
    )
