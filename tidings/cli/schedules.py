"""`tidings schedules`: journeys started on a schedule (Temporal Schedules). The commands
call the same service layer as /v1/schedules; the firings themselves run on the workers
(`tidings worker`, `tidings up`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, TypeVar, cast
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tidings.cli.designer import _settings, problem, success

if TYPE_CHECKING:
    from temporalio.client import Client

    from tidings.runs.schedule_spec import Kind
    from tidings.store.db import Database

T = TypeVar("T")
console = Console()
errors = Console(stderr=True)
app = typer.Typer(
    help="Journeys started on a schedule: once, daily, weekly or every interval.",
    no_args_is_help=True,
)
ScheduleIdArg = Annotated[str, typer.Argument(help="the schedule's id")]
JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON (what the API answers)")]


def _call(step: Callable[[Client, Database], Awaitable[T]]) -> T:
    """Run a step with Temporal and the store; what a designer can fix is one line, exit 1."""
    from tidings.runs.schedule_spec import ScheduleInvalid
    from tidings.runs.schedules import ScheduleExists, ScheduleNotFound
    from tidings.stack import temporal_and_store

    settings = _settings()

    async def go() -> T:
        async with temporal_and_store(settings) as (client, database):
            return await step(client, database)

    try:
        return asyncio.run(go())
    except (ScheduleInvalid, ScheduleExists, ScheduleNotFound) as error:
        errors.print(problem(error, "cannot do that:"), soft_wrap=True)
        raise typer.Exit(1) from None


@app.command("create")
def create(
    journey_id: Annotated[str, typer.Argument(help="a stored journey's id")],
    once: Annotated[
        str | None, typer.Option(help="fire once at a local date and time: 2026-12-24T09:00")
    ] = None,
    daily: Annotated[str | None, typer.Option(help="fire every day at a local time: 09:00")] = None,
    weekly: Annotated[
        str | None, typer.Option(help="fire every week on a day at a local time: monday@09:00")
    ] = None,
    every: Annotated[str | None, typer.Option(help="fire every interval: 6h, 1d")] = None,
    tz: Annotated[str, typer.Option("--tz", help="the IANA time zone of the local time")] = "UTC",
    version: Annotated[int | None, typer.Option(help="default: the latest when it fires")] = None,
    where: Annotated[
        list[str] | None, typer.Option(help="attribute filter, repeatable: plan=pro")
    ] = None,
    profile: Annotated[
        list[str] | None, typer.Option(help="a listed profile id, repeatable")
    ] = None,
    app_id: Annotated[
        str | None, typer.Option("--app", help="every profile with a device in this app")
    ] = None,
    segment: Annotated[
        str | None, typer.Option(help="the profiles a saved segment selects at each firing")
    ] = None,
    schedule_id: Annotated[str | None, typer.Option("--id", help="default: generated")] = None,
) -> None:
    """Start a stored journey on a schedule; each firing is a run, its audience (the
    journey's own, --where filters, --profile ids) resolved when it fires."""
    from activities.contracts import ScheduledAudience
    from tidings.journeys.predicates import parse_where
    from tidings.runs.schedule_spec import Cadence
    from tidings.runs.schedules import ScheduleRequest, create_schedule

    given = [(k, v) for k, v in (("once", once), ("daily", daily), ("weekly", weekly)) if v]
    given += [("every", every)] if every else []
    if len(given) != 1:
        errors.print(problem("give one of --once, --daily, --weekly or --every"))
        raise typer.Exit(2)
    kind, value = given[0]
    weekday = None
    if kind == "weekly":
        weekday, _, value = value.partition("@")
    try:
        filters = [parse_where(text) for text in where or []]
    except ValueError as error:
        errors.print(problem(f"--where: {error}"))
        raise typer.Exit(2) from None
    cadence = Cadence(
        kind=cast("Kind", kind),
        at=None if kind == "every" else value,
        weekday=weekday,
        every=value if kind == "every" else None,
        time_zone=tz,
    )
    request = ScheduleRequest(
        journey_id=journey_id,
        cadence=cadence,
        version=version,
        audience=ScheduledAudience(
            app=app_id, where=filters, profile_ids=list(profile or []), segment=segment
        ),
        schedule_id=schedule_id,
    )
    settings = _settings()
    view = _call(lambda client, db: create_schedule(client, db, settings, request))
    nxt = _local(view.next_times[0], view.time_zone) if view.next_times else "never"
    console.print(success(f"schedule {view.id}: journey {journey_id!r} {view.when}; next {nxt}"))


@app.command("list")
def list_(
    journey_id: Annotated[str | None, typer.Option("--journey", help="one journey's")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Every schedule with its next firing times (in its time zone), paused or not, and its
    latest firing's run or why it started none."""
    from pydantic import TypeAdapter

    from tidings.cli.runs import print_json
    from tidings.runs.schedules import ScheduleView, list_schedules

    views = _call(lambda client, db: list_schedules(client, db, journey_id=journey_id))
    if as_json:
        print_json(console, TypeAdapter(list[ScheduleView]).dump_json(views, indent=2))
        return
    table = Table(title="schedules", header_style="bold")
    for column in ("id", "journey", "when", "state", "next", "latest firing"):
        table.add_column(column, no_wrap=column in ("id", "next"))
    for view in views:
        state = "missing" if view.missing else "paused" if view.paused else "active"
        latest = (
            Text(f"no run: {view.last_error}", style="red")
            if view.last_error
            else Text(view.last_run_id or "")
        )
        table.add_row(
            Text(view.id),
            Text(view.journey_id),
            Text(view.when),
            state,
            "\n".join(_local(t, view.time_zone) for t in view.next_times),
            latest,
        )
    console.print(table)


@app.command("pause")
def pause(
    schedule_id: ScheduleIdArg,
    note: Annotated[str | None, typer.Option(help="why, shown in Temporal")] = None,
) -> None:
    """No firing until resumed (firings due meanwhile are not taken back)."""
    from tidings.runs.schedules import pause_schedule

    _call(lambda client, db: pause_schedule(client, db, schedule_id, note))
    console.print(success(f"schedule {schedule_id} paused"))


@app.command("resume")
def resume(schedule_id: ScheduleIdArg) -> None:
    """Fire again at the schedule's times."""
    from tidings.runs.schedules import resume_schedule

    view = _call(lambda client, db: resume_schedule(client, db, schedule_id))
    nxt = _local(view.next_times[0], view.time_zone) if view.next_times else "never"
    console.print(success(f"schedule {schedule_id} resumed; next {nxt}"))


@app.command("trigger")
def trigger(schedule_id: ScheduleIdArg) -> None:
    """Fire once now, besides the schedule's times."""
    from tidings.runs.schedules import fire_now

    _call(lambda client, db: fire_now(client, db, schedule_id))
    console.print(success(f"schedule {schedule_id} fired"))


@app.command("delete")
def delete(schedule_id: ScheduleIdArg) -> None:
    """No more firings; runs it started go on (`tidings runs cancel` stops them)."""
    from tidings.runs.schedules import delete_schedule

    _call(lambda client, db: delete_schedule(client, db, schedule_id))
    console.print(success(f"schedule {schedule_id} deleted"))


def _local(moment: datetime, time_zone: str) -> str:
    return f"{moment.astimezone(ZoneInfo(time_zone)):%Y-%m-%d %H:%M:%S %Z}"
