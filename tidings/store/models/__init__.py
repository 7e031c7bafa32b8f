"""The tables of the tidings store, one module per concept."""

from tidings.store.models.apps import App
from tidings.store.models.deliveries import Delivery, DeliveryStatus
from tidings.store.models.devices import Device, DeviceState, Provider
from tidings.store.models.interactions import Interaction, InteractionKind, InteractionStatus
from tidings.store.models.journeys import (
    Journey,
    JourneyRun,
    JourneyVersion,
    RunMember,
    RunStatus,
)
from tidings.store.models.profiles import AppUserMapping, Profile

__all__ = [
    "App",
    "AppUserMapping",
    "Delivery",
    "DeliveryStatus",
    "Device",
    "DeviceState",
    "Interaction",
    "InteractionKind",
    "InteractionStatus",
    "Journey",
    "JourneyRun",
    "JourneyVersion",
    "Profile",
    "Provider",
    "RunMember",
    "RunStatus",
]
