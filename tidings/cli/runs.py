"""The designer's run commands as the terminal shows them: start and watch a run live, list
runs, a run's status, cancel, and its funnel per node."""

from __future__ import annotations

import asyncio

from pydantic import TypeAdapter
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text
from temporalio.client import Client

from tidings.journeys.model import JourneyDefinition
from tidings.journeys.validation import load_definition, parse_definition
from tidings.runs.audience import journey_file
from tidings.runs.cancel import cancel_run
from tidings.runs.errors import RunNotFound, StartError
from tidings.runs.experiments import ExperimentReport, promote_winner
from tidings.runs.listing import RunSummary
from tidings.runs.listing import list_runs as runs_listed
from tidings.runs.pushes import PushRecord, run_pushes
from tidings.runs.report import BestHourReport, RunReport, run_report
from tidings.runs.start import AudienceChoice, activate_trigger, load_stored, start_run
from tidings.runs.view import RunView, run_view
from tidings.settings import Settings
from tidings.stack import engine, store_only
from tidings.store.db import Database
from tidings.store.models import JourneyRun, RunStatus
from workflows.counts import Counts, Left

REFRESH_S = 1.0


async def start(
    settings: Settings,
    source: str,
    audience: AudienceChoice,
    console: Console,
    *,
    wait: bool = True,
    version: int | None = None,
) -> str:
    """Start a journey; a journey with a trigger is activated instead (its event starts it
    per profile). With ``wait``, watch the run live and print its report at the end."""
    # a file is read (and checked) before anything starts: a bad one costs no dev server
    path = journey_file(source)
    from_file = load_definition(path) if path is not None else None
    async with engine(settings) as (client, database):
        journey = from_file or await load_stored(database, source, version)
        if journey.trigger is not None:
            if audience.listed or audience.where:
                raise StartError(
                    f"journey {journey.id!r} starts on the event {journey.trigger.event!r}; "
                    "it takes no audience"
                )
            activation = await activate_trigger(database, journey)
            console.print(
                Text.assemble(
                    "activated ",
                    (activation.run_id, "bold"),
                    f": the event {activation.event!r} now starts journey {journey.id!r} "
                    "for its profile",
                )
            )
            for old in activation.superseded:
                console.print(Text(f"  {old} takes no new entries any more"))
            return activation.run_id
        started = await start_run(client, database, settings, journey, audience=audience)
        console.print(
            Text.assemble("started run ", (started.run_id, "bold"), f" of journey {journey.id!r}")
        )
        if wait:
            await watch(client, database, started.run_id, console, journey)
            await report(database, started.run_id, console)
        return started.run_id


async def watch(
    client: Client,
    database: Database,
    run_id: str,
    console: Console,
    journey: JourneyDefinition | None = None,
    *,
    follow: bool = True,
) -> RunView:
    """Show a run's progress, refreshed live until it ends (or once, without ``follow``)."""
    order = [n.id for n in journey.nodes] if journey else await _node_order(database, run_id)
    view = await run_view(client, database, run_id)
    if not follow:
        console.print(render_view(view, order))
        return view
    with Live(render_view(view, order), console=console, refresh_per_second=4) as live:
        while view.status == "running":
            await asyncio.sleep(REFRESH_S)
            view = await run_view(client, database, run_id)
            live.update(render_view(view, order))
    return view


def render_view(view: RunView, order: list[str]) -> Group:
    title = Text.assemble(
        (f"{view.run_id}", "bold"),
        f" · journey {view.journey_id} · ",
        (view.status + (" (cancelling)" if view.cancelling else ""), _status_style(view.status)),
    )
    counts = Counts.of(view.counts)
    if view.status == "running":
        nodes = Table(title="profiles per node", header_style="bold", min_width=40)
        nodes.add_column("node")
        nodes.add_column("profiles", justify="right")
        positions = dict(view.positions)
        for node in order:
            if node in positions:
                nodes.add_row(Text(node), str(positions.pop(node)))
        for node, count in sorted(positions.items()):
            nodes.add_row(Text(node), str(count))
    else:
        nodes = Table(title="where profiles left the journey", header_style="bold", min_width=40)
        nodes.add_column("")
        nodes.add_column("profiles", justify="right")
        for label, how in (
            ("at the end of a branch", Left.COMPLETED),
            ("at an exit node", Left.EXITED),
            ("at the goal", Left.GOAL),
            ("stopped by the cancel", Left.CANCELLED),
        ):
            nodes.add_row(label, str(counts.profiles_left(how)))
    sends = Table(title="pushes", header_style="bold", min_width=40)
    sends.add_column("")
    sends.add_column("count", justify="right")
    for label, value in (
        ("profiles", counts[Counts.PROFILES]),
        ("sent", counts.pushes_sent),
        ("delivered", counts.push("delivered")),
        ("failed", counts.push("failed")),
        ("unknown (answer lost)", counts.push("unknown")),
        ("invalidated", counts[Counts.INVALIDATED]),
        ("not sent", counts.push("not_sent")),
        ("postponed (quiet hours)", counts[Counts.POSTPONED]),
    ):
        sends.add_row(label, str(value))
    footer = Text(
        f"cohorts: {view.cohorts_started} started, {view.cohorts_running} running"
        + (f" ({view.cohorts_waiting} of them waiting)" if view.cohorts_waiting else "")
        + ("; audience fully paged" if view.audience_exhausted else "")
        if view.kind == "audience"
        else "triggered journey: one cohort per entering profile"
    )
    return Group(title, nodes, sends, footer)


def _status_style(status: str) -> str:
    return {"running": "yellow", "completed": "green", "cancelled": "magenta"}.get(status, "red")


async def _node_order(database: Database, run_id: str) -> list[str]:
    async with database.read() as session:
        run = await session.get(JourneyRun, run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id!r}")
    return [n.id for n in parse_definition(run.definition).nodes]


async def status(
    settings: Settings, run_id: str, console: Console, *, follow: bool, as_json: bool = False
) -> RunView:
    async with engine(settings) as (client, database):
        if as_json:
            view = await run_view(client, database, run_id)
            print_json(console, TypeAdapter(RunView).dump_json(view, indent=2))
            return view
        return await watch(client, database, run_id, console, follow=follow)


async def cancel(settings: Settings, run_id: str, console: Console, *, wait: bool = True) -> None:
    async with engine(settings) as (client, database):
        outcome = await cancel_run(client, database, run_id)
        if outcome.already_finished:
            console.print(Text(f"run {run_id} had already finished"))
            return
        console.print(
            Text.assemble(
                "cancelling run ", (run_id, "bold"), ": no new sends; sends in flight settle"
            )
        )
        if wait:
            await watch(client, database, run_id, console)
            await report(database, run_id, console)


async def list_runs(
    settings: Settings,
    console: Console,
    limit: int = 20,
    *,
    journey_id: str | None = None,
    run_status: RunStatus | None = None,
    as_json: bool = False,
) -> list[RunSummary]:
    async with store_only(settings) as database:
        runs = await runs_listed(database, journey_id=journey_id, status=run_status, limit=limit)
    if as_json:
        print_json(console, TypeAdapter(list[RunSummary]).dump_json(runs, indent=2))
        return runs
    table = Table(title="journey runs", header_style="bold")
    # run ids print whole: they are what status, cancel and report take
    width = max((len(run.id) for run in runs), default=3)
    table.add_column("run", no_wrap=True, min_width=width)
    for column in ("journey", "version", "entry", "status", "started", "finished"):
        table.add_column(column)
    for run in runs:
        entry = run.entry
        how = (
            f"trigger {entry['trigger']}" if "trigger" in entry else str(entry.get("audience", ""))
        )
        table.add_row(
            Text(run.id),
            Text(run.journey_id),
            str(run.journey_version or ""),
            Text(how),
            Text(str(run.status), _status_style(str(run.status))),
            f"{run.started_at:%Y-%m-%d %H:%M:%S}",
            f"{run.finished_at:%Y-%m-%d %H:%M:%S}" if run.finished_at else "",
        )
    console.print(table)
    return runs


async def list_pushes(
    settings: Settings,
    run_id: str,
    console: Console,
    *,
    outcome: str | None = None,
    limit: int = 100,
    as_json: bool = False,
) -> list[PushRecord]:
    async with store_only(settings) as database:
        found = await run_pushes(database, run_id, outcome=outcome, limit=limit)
    if as_json:
        print_json(console, TypeAdapter(list[PushRecord]).dump_json(found, indent=2))
        return found
    table = Table(title=Text(f"run {run_id}: pushes"), header_style="bold")
    for column in ("node", "profile", "device", "tracking id", "outcome", "reason"):
        table.add_column(column, no_wrap=column == "tracking id")
    for push in found:
        table.add_row(
            Text(push.node_id),
            Text(push.profile_id),
            str(push.device_id or "-"),
            Text(push.tracking_id),
            Text(push.outcome),
            Text(push.reason or ""),
        )
    console.print(table)
    return found


def print_json(console: Console, data: bytes | str) -> None:
    """Machine-readable output: plain JSON on stdout, never reflowed or coloured."""
    text = data.decode() if isinstance(data, bytes) else data
    console.file.write(text + "\n")
    console.file.flush()


async def report(
    database: Database, run_id: str, console: Console, *, as_json: bool = False
) -> RunReport:
    """The funnel per push node: targeted, sent, delivered, failed (retries exhausted),
    unknown (sent, answer lost), retried (took more than one request), opened, clicked, not
    sent by reason, tokens invalidated (and sends postponed for quiet hours); each
    random_split branch's size and conversion to the goal; the hours each best_hour node
    chose, by source. The API answers the same object."""
    found = await run_report(database, run_id)
    if as_json:
        print_json(console, found.model_dump_json(indent=2))
        return found
    table = Table(title=Text(f"run {run_id}: funnel per node"), header_style="bold")
    table.add_column("node")
    for column in (
        "targeted",
        "sent",
        "delivered",
        "failed",
        "unknown",
        "retried",
        "opened",
        "clicked",
        "invalidated",
        "postponed",
    ):
        table.add_column(column, justify="right")
    table.add_column("not sent (reason: count)")
    for funnel in found.nodes:
        table.add_row(
            Text(funnel.node_id),
            str(funnel.targeted),
            str(funnel.sent),
            str(funnel.delivered),
            str(funnel.failed),
            str(funnel.unknown),
            str(funnel.retried),
            str(funnel.opened),
            str(funnel.clicked),
            str(funnel.tokens_invalidated),
            str(funnel.postponed),
            Text("\n".join(f"{r}: {n}" for r, n in sorted(funnel.not_sent.items())) or "-"),
        )
    console.print(table)
    console.print(Text(found.opened_rule, style="dim"))
    for split in found.splits:
        branches = Table(
            title=Text(f"random split {split.node_id} (from the {split.counted_from})"),
            header_style="bold",
        )
        for column in ("branch", "percent", "next", "profiles", "reached the goal", "conversion"):
            branches.add_column(column)
        for branch in split.branches:
            branches.add_row(
                str(branch.index),
                f"{branch.percent:g}",
                Text(branch.next or "(end)"),
                str(branch.profiles),
                "-" if branch.converted is None else str(branch.converted),
                "-" if branch.conversion is None else f"{branch.conversion:.1%}",
            )
        console.print(branches)
        if split.experiment is not None:
            console.print(experiment_table(split.experiment))
    for wait in found.best_hours:
        console.print(best_hour_table(wait))
    run = found.run
    goal = found.goal_reached
    console.print(
        Text(
            f"status {run.status}"
            + (f"; {goal} profiles left at the goal" if goal else "")
            + (f"; {run.error}" if run.error else "")
        )
    )
    return found


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f}"


def experiment_table(experiment: ExperimentReport) -> Group:
    """An experiment split: per branch its sample, conversions, rate and the difference with
    the control (in percentage points, with its interval), then the verdict in words."""
    table = Table(
        title=Text(
            f"experiment {experiment.node_id}: {experiment.goal} within "
            f"{experiment.window_s:g}s, {experiment.confidence:.0%} confidence"
        ),
        header_style="bold",
    )
    for column in ("branch", "profiles", "conversions", "rate", "vs control (points)"):
        table.add_column(column, justify="right" if column != "branch" else "left")
    table.add_column(f"{experiment.ci_level} CI")
    table.add_column("p")
    for branch in experiment.branches:
        interval = (
            "-"
            if branch.ci_low is None or branch.ci_high is None
            else f"{_points(branch.ci_low)} to {_points(branch.ci_high)}"
        )
        table.add_row(
            f"{branch.index}{' (control)' if branch.index == 0 else ''}",
            str(branch.profiles)
            + (f" +{branch.promoted_profiles} promoted" if branch.promoted_profiles else ""),
            str(branch.conversions),
            "-" if branch.rate is None else f"{branch.rate:.1%}",
            _points(branch.difference),
            interval,
            "-" if branch.p_value is None else f"{branch.p_value:.3g}",
        )
    lines = [Text(experiment.explanation, style="bold" if experiment.winner is not None else "")]
    if experiment.promoted is not None:
        promoted = experiment.promoted
        lines.append(
            Text(
                f"promoted: branch {promoted.branch} "
                f"({promoted.by}, {promoted.at:%Y-%m-%d %H:%M:%S} UTC)"
            )
        )
    return Group(table, *lines)


async def promote(
    settings: Settings,
    run_id: str,
    node_id: str,
    console: Console,
    *,
    branch: int | None = None,
    as_json: bool = False,
) -> None:
    async with engine(settings) as (client, database):
        outcome = await promote_winner(client, database, run_id, node_id, branch=branch, by="cli")
    if as_json:
        print_json(console, outcome.model_dump_json(indent=2))
        return
    console.print(
        Text.assemble(
            "promoted branch ",
            (str(outcome.branch), "bold"),
            f" of {node_id}: profiles that reach it from now on take it ({outcome.explanation})",
        )
    )


def best_hour_table(wait: BestHourReport) -> Table:
    """The local hours a best_hour node chose, and whose opens chose each (only the hours
    chosen at least once)."""
    sources = (f"{s} {n}" for s, n in wait.by_source.items())
    table = Table(
        title=Text(f"best hour {wait.node_id}: {wait.profiles} profiles ({', '.join(sources)})"),
        header_style="bold",
    )
    table.add_column("local hour")
    table.add_column("profiles", justify="right")
    for source in wait.by_hour_and_source:
        table.add_column(f"by {source}", justify="right")
    for hour, total in enumerate(wait.by_hour):
        if total:
            table.add_row(
                f"{hour:02d}:00",
                str(total),
                *(str(hours[hour]) for hours in wait.by_hour_and_source.values()),
            )
    return table


async def report_run(
    settings: Settings, run_id: str, console: Console, *, as_json: bool = False
) -> RunReport:
    async with store_only(settings) as database:
        return await report(database, run_id, console, as_json=as_json)
