"""Building the long-lived pieces of a worker process once: store, secrets, senders."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.audience import AudienceActivities
from activities.best_hour import BestHourActivities
from activities.delivery import DeliveryActivities, DeliveryPolicy
from activities.experiments import ExperimentActivities
from activities.records import RecordActivities
from activities.schedules import ScheduleActivities
from activities.test_send import TestSendActivities
from tidings.observe import tracing
from tidings.push import ProviderRoutes, SenderRegistry
from tidings.push.links import LinkSigner, link_tracking
from tidings.runs.options import engine_options as engine_options  # re-exported
from tidings.settings import Settings
from tidings.store.db import Database
from tidings.store.secrets import SecretBox
from tidings.temporal.converter import warm_type_adapters, with_shared_type_adapters
from workflows.cohort import CohortWorkflow
from workflows.run import JourneyRunWorkflow
from workflows.scheduled import ScheduledRunWorkflow
from workflows.test_send import TestSendWorkflow

log = logging.getLogger(__name__)

WORKFLOWS = [JourneyRunWorkflow, CohortWorkflow, ScheduledRunWorkflow, TestSendWorkflow]
# the SDK's own default of max_cached_workflows
SDK_WORKFLOW_CACHE_SIZE = 1000


def provider_routes(settings: Settings) -> ProviderRoutes:
    return ProviderRoutes.from_strings(
        settings.apns_endpoint, settings.fcm_endpoint, settings.provider_ca_file
    )


@dataclass
class WorkerResources:
    db: Database
    senders: SenderRegistry
    secrets: SecretBox


@asynccontextmanager
async def worker_resources(settings: Settings) -> AsyncIterator[WorkerResources]:
    db = Database(settings.resolved_database_url)
    senders = SenderRegistry(
        provider_routes(settings),
        max_in_flight=settings.send_concurrency,
        timeout_s=settings.send_timeout_s,
    )
    secrets = SecretBox.from_settings(
        settings.secret_key.get_secret_value() if settings.secret_key else None, settings.home
    )
    try:
        # with a public URL, pushes carry tracked links (tidings.push.links)
        with link_tracking(LinkSigner.of(settings, secrets) if settings.public_url else None):
            yield WorkerResources(db, senders, secrets)
    finally:
        await senders.close()
        await db.dispose()


QUEUE_ROLES = ("interpreter", "delivery")


class QueueChoiceError(ValueError):
    """A worker asked to serve queues the settings do not separate."""


def check_roles(settings: Settings, roles: Sequence[str]) -> bool:
    """Refuse (QueueChoiceError) roles the settings cannot serve apart; whether delivery has
    a task queue of its own."""
    unknown = sorted(set(roles) - set(QUEUE_ROLES))
    if unknown or not roles:
        raise QueueChoiceError(
            f"--queues takes interpreter, delivery or both (comma-separated), not {unknown}"
        )
    separate = settings.delivery_queue != settings.task_queue
    if not separate and set(roles) != set(QUEUE_ROLES):
        raise QueueChoiceError(
            "delivery shares the interpreter's task queue: set TIDINGS_DELIVERY_TASK_QUEUE "
            "(for every worker, API and starter) to run the roles in separate processes"
        )
    return separate


def build_workers(
    client: Client, settings: Settings, resources: WorkerResources, roles: Sequence[str]
) -> list[Worker]:
    """The Temporal workers serving ``roles`` (interpreter: the journey workflows and their
    audience and records activities, and triggered entries on a queue of their own; delivery:
    the push sends). On one task queue (the default) both roles are one worker beside the
    triggered entries'; with TIDINGS_DELIVERY_TASK_QUEUE each role is a worker of its own, and
    a process may serve either or both."""
    separate = check_roles(settings, roles)
    delivery = DeliveryActivities(
        resources.db,
        resources.senders,
        resources.secrets,
        DeliveryPolicy(
            stale_after_days=settings.stale_after_days,
            initial_backoff=timedelta(seconds=settings.delivery_initial_backoff_s),
            max_backoff=timedelta(seconds=settings.delivery_max_backoff_s),
            heartbeat_every=settings.delivery_heartbeat_timeout / 3,
            token_updates_min_delay=timedelta(seconds=settings.apns_token_updates_retry_s),
            retry_horizon=timedelta(seconds=settings.delivery_retry_horizon_s),
        ),
    )
    records = RecordActivities(resources.db)
    # test sends go out beside the deliveries, through the same senders (activities/test_send)
    test_sends = TestSendActivities(resources.db, resources.senders, resources.secrets)
    # the same connection, with a converter whose type adapters outlive each workflow run,
    # built here before any workflow thread starts
    warm_type_adapters()
    worker_client = Client(
        **(client.config() | {"data_converter": with_shared_type_adapters(client.data_converter)})
    )
    # a worker told to stop lets its sends in flight finish rather than cut them short
    grace = timedelta(seconds=settings.worker_shutdown_grace_s)
    # the interpreter always holds delivery too: a triggered entry (a cohort of one) sends
    # through a local activity, which runs in the worker of its workflow
    interpreter_activities: list[Callable[..., Any]] = [
        delivery.deliver,
        test_sends.send,
        test_sends.give_up,
        AudienceActivities(resources.db).page,
        BestHourActivities(resources.db).choose,
        records.finish_run,
        records.journey_events,
        ScheduleActivities(resources.db, worker_client).record_run,
        ExperimentActivities(resources.db).judge,
    ]
    interceptors = (
        []
        if tracing.has_tracing(client.config()["interceptors"])
        else tracing.temporal_interceptors()
    )
    workers = []
    if "interpreter" in roles:
        workers.append(
            Worker(
                worker_client,
                task_queue=settings.task_queue,
                workflows=WORKFLOWS,
                activities=interpreter_activities,
                max_concurrent_activities=64,
                max_cached_workflows=(
                    settings.workflow_cache_size
                    if settings.workflow_cache_size is not None
                    else SDK_WORKFLOW_CACHE_SIZE
                ),
                graceful_shutdown_timeout=grace,
                # traced when tracing is on, also on a client that was connected without it
                interceptors=interceptors,
            )
        )
        # triggered entries poll with slots of their own: a broadcast's workflow and
        # activity tasks never stand between an entry and its worker
        workers.append(
            Worker(
                worker_client,
                task_queue=settings.triggered_queue,
                workflows=[CohortWorkflow],
                activities=interpreter_activities,
                max_concurrent_activities=16,
                max_cached_workflows=(
                    settings.workflow_cache_size
                    if settings.workflow_cache_size is not None
                    else SDK_WORKFLOW_CACHE_SIZE
                ),
                graceful_shutdown_timeout=grace,
                interceptors=interceptors,
            )
        )
    if separate and "delivery" in roles:
        workers.append(
            Worker(
                worker_client,
                task_queue=settings.delivery_queue,
                activities=[delivery.deliver, test_sends.send, test_sends.give_up],
                max_concurrent_activities=64,
                graceful_shutdown_timeout=grace,
                interceptors=interceptors,
            )
        )
    return workers
