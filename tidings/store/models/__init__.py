"""The tables of the tidings store, one module per concept."""

from tidings.store.models.apps import App
from tidings.store.models.custom_events import CustomEvent
from tidings.store.models.deliveries import Delivery, DeliveryStatus, SendCause
from tidings.store.models.devices import Device, DeviceState, Provider
from tidings.store.models.erasures import Erasure
from tidings.store.models.interactions import Interaction, InteractionKind, InteractionStatus
from tidings.store.models.journey_events import JourneyEvent
from tidings.store.models.journeys import (
    Journey,
    JourneyRun,
    JourneyVersion,
    RunMember,
    RunStatus,
)
from tidings.store.models.keys import ApiKey
from tidings.store.models.profiles import AppUserMapping, Profile
from tidings.store.models.registrations import (
    RegistrationFailure,
    RegistrationRequest,
    RegistrationStatus,
)
from tidings.store.models.replaced_tokens import ReplacedToken
from tidings.store.models.schedules import JourneySchedule
from tidings.store.models.segments import Segment
from tidings.store.models.send_fences import SendFence
from tidings.store.models.send_rates import SendRateBucket
from tidings.store.models.test_sends import TestSend, TestSendStatus
from tidings.store.models.triggers import JourneyEntry, JourneyTrigger
from tidings.store.models.webhooks import WebhookDelivery, WebhookEndpoint

__all__ = [
    "ApiKey",
    "App",
    "AppUserMapping",
    "CustomEvent",
    "Delivery",
    "DeliveryStatus",
    "Device",
    "DeviceState",
    "Erasure",
    "Interaction",
    "InteractionKind",
    "InteractionStatus",
    "Journey",
    "JourneyEntry",
    "JourneyEvent",
    "JourneyRun",
    "JourneySchedule",
    "JourneyTrigger",
    "JourneyVersion",
    "Profile",
    "Provider",
    "RegistrationFailure",
    "RegistrationRequest",
    "RegistrationStatus",
    "ReplacedToken",
    "RunMember",
    "RunStatus",
    "Segment",
    "SendCause",
    "SendFence",
    "SendRateBucket",
    "TestSend",
    "TestSendStatus",
    "WebhookDelivery",
    "WebhookEndpoint",
]
