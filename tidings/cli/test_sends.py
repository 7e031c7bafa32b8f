"""`tidings test-send`: one push node of a stored journey, rendered for a profile, sent to
its devices (or named ones) without a run; each device's outcome printed."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tidings.cli.runs import print_json
from tidings.runs.test_sends import (
    MAX_WAIT_S,
    TestSendAsk,
    TestSendView,
    split_devices,
    start_test_send,
    wait_for_outcome,
)
from tidings.settings import Settings
from tidings.stack import engine

STYLES = {"sent": "green", "pending": "yellow"}


def ask_for(
    journey_id: str,
    node_id: str,
    profile_id: str,
    devices: Sequence[str],
    version: int | None,
) -> TestSendAsk:
    """A device given as digits is a device id; anything else is a token."""
    ids, tokens = split_devices(devices)
    return TestSendAsk(
        journey_id=journey_id,
        node_id=node_id,
        profile_id=profile_id,
        version=version,
        device_ids=ids,
        tokens=tokens,
        requested_by="cli",
    )


async def send_test(
    settings: Settings, ask: TestSendAsk, console: Console, *, wait_s: float, as_json: bool
) -> TestSendView:
    """Record the test send, have a worker send it (in embedded mode, this command's own),
    and wait up to ``wait_s`` for each device's outcome."""
    async with engine(settings) as (client, database):
        started = await start_test_send(client, database, settings, ask)
        shown = await wait_for_outcome(client, database, started.id, min(wait_s, MAX_WAIT_S))
    view = shown or started
    if as_json:
        print_json(console, view.model_dump_json(indent=2))
    else:
        show(view, console)
    return view


def show(view: TestSendView, console: Console) -> None:
    title = view.message.get("title") or ""
    table = Table(
        title=Text(
            f"test send {view.id} · {view.journey_id} v{view.journey_version} · "
            f"{view.node_id} for {view.profile_id}: {title}"
        ),
        header_style="bold",
    )
    for column in ("device", "provider", "token", "outcome", "reason"):
        table.add_column(column)
    for device in view.devices:
        style = (
            "green"
            if device.status == "sent"
            else "yellow"
            if device.status == "pending"
            else "red"
        )
        table.add_row(
            str(device.device_id),
            device.provider,
            device.token,
            Text(device.status, style=style),
            Text(device.reason or ""),
        )
    console.print(table)
    if view.status == "pending":
        console.print(
            Text(
                f"still sending: GET /v1/test-sends/{view.id} tells the outcome once the "
                "worker sent it"
            )
        )
