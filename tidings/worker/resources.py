"""Building the long-lived pieces of a worker process once: store, secrets, senders."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.audience import AudienceActivities
from activities.delivery import DeliveryActivities, DeliveryPolicy
from activities.records import RecordActivities
from tidings.push import ProviderRoutes, SenderRegistry
from tidings.push.links import LinkSigner, link_tracking
from tidings.runs.options import engine_options as engine_options  # re-exported
from tidings.settings import Settings
from tidings.store.db import Database
from tidings.store.secrets import SecretBox
from tidings.temporal.converter import with_shared_type_adapters
from workflows.cohort import CohortWorkflow
from workflows.run import JourneyRunWorkflow

log = logging.getLogger(__name__)

WORKFLOWS = [JourneyRunWorkflow, CohortWorkflow]
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


def build_worker(client: Client, settings: Settings, resources: WorkerResources) -> Worker:
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
    # the same connection, with a converter whose type adapters outlive each workflow run
    worker_client = Client(
        **(client.config() | {"data_converter": with_shared_type_adapters(client.data_converter)})
    )
    return Worker(
        worker_client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=[
            delivery.deliver,
            AudienceActivities(resources.db).page,
            records.finish_run,
            records.journey_events,
        ],
        max_concurrent_activities=64,
        max_cached_workflows=(
            settings.workflow_cache_size
            if settings.workflow_cache_size is not None
            else SDK_WORKFLOW_CACHE_SIZE
        ),
        # a worker told to stop lets its sends in flight finish rather than cut them short
        graceful_shutdown_timeout=timedelta(seconds=settings.worker_shutdown_grace_s),
    )
