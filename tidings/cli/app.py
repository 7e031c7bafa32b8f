"""The `tidings` command."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from tidings.cli import designer as designer_cli
from tidings.cli import export as export_cli
from tidings.cli import profiles as profiles_cli
from tidings.cli import schedules as schedules_cli
from tidings.cli import segments as segments_cli
from tidings.cli import webhooks as webhooks_cli
from tidings.cli.designer import problem, success
from tidings.logs import configure_logging
from tidings.settings import Settings
from tidings.startup import configuration_errors, load_settings

if TYPE_CHECKING:
    from tidings.journeys.model import JourneyDefinition
    from tidings.journeys.validation import JourneyIssue
    from tidings.runs.triggers import TriggerState
    from tidings.stack import StackAddresses
    from tidings.store.db import Database
    from tidings.store.rotation import RotationReport

T = TypeVar("T")

app = typer.Typer(
    help="tidings: push-notification journeys on Temporal.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="The store's schema.", no_args_is_help=True)
keys_app = typer.Typer(help="The secret key: make one, rotate to a new one.", no_args_is_help=True)
journeys_app = typer.Typer(help="Journey definitions.", no_args_is_help=True)
apps_app = typer.Typer(help="Apps and their provider credentials.", no_args_is_help=True)
runs_app = typer.Typer(
    help="Journey runs: list, status, cancel, report, promote.", no_args_is_help=True
)
triggers_app = typer.Typer(
    help="Journeys that start on an event: list, show, enable, disable.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(journeys_app, name="journeys")
app.add_typer(apps_app, name="apps")
app.add_typer(runs_app, name="runs")
app.add_typer(triggers_app, name="triggers")
app.add_typer(schedules_cli.app, name="schedules")
app.add_typer(webhooks_cli.app, name="webhooks")
app.add_typer(segments_cli.app, name="segments")
app.add_typer(profiles_cli.app, name="profiles")
app.command()(designer_cli.start)
app.command("test-send")(designer_cli.try_push)
runs_app.command("list")(designer_cli.runs)
runs_app.command("status")(designer_cli.status)
runs_app.command("cancel")(designer_cli.cancel)
runs_app.command("report")(designer_cli.report)
runs_app.command("pushes")(designer_cli.pushes)
runs_app.command("export")(export_cli.export_run)
runs_app.command("promote")(designer_cli.promote)
console = Console()
errors = Console(stderr=True)


def _settings() -> Settings:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"tidings {version('tidings')}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="print the version"),
    ] = False,
) -> None:
    """tidings: push-notification journeys on Temporal."""


@app.command()
def demo(
    profiles: Annotated[int, typer.Option(min=1, max=100_000, help="profiles to seed")] = 200,
    exit_at_once: Annotated[
        bool,
        typer.Option("--exit", help="exit after the funnel instead of serving the console"),
    ] = False,
) -> None:
    """Run the whole product on the embedded stack, print a funnel, then serve the web
    console (with the demo's run) until Ctrl-C."""
    from tidings.cli.demo import DemoOptions, run_demo

    settings = _settings()
    configure_logging("WARNING")
    try:
        asyncio.run(
            run_demo(settings, DemoOptions(profiles=profiles, serve=not exit_at_once), console)
        )
    except KeyboardInterrupt:
        console.print("stopped")


@app.command()
def worker(
    queues: Annotated[
        str,
        typer.Option(
            help="the roles this process serves, comma-separated: interpreter (journey "
            "workflows), delivery (push sends). Apart only with TIDINGS_DELIVERY_TASK_QUEUE.",
        ),
    ] = "interpreter,delivery",
) -> None:
    """Run a worker (the same as `python worker.py`)."""
    from tidings.worker.main import run_worker
    from tidings.worker.resources import QueueChoiceError, check_roles

    roles = [role.strip() for role in queues.split(",") if role.strip()]
    settings = _settings()
    try:
        # before anything starts: a refused choice must not leave a dev server behind
        check_roles(settings, roles)
    except QueueChoiceError as error:
        errors.print(problem(error), soft_wrap=True)
        raise typer.Exit(2) from None
    asyncio.run(run_worker(settings, roles=roles))


@app.command()
def api(
    host: Annotated[
        str | None, typer.Option(help="address to listen on (default TIDINGS_API_HOST)")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="port (default TIDINGS_API_PORT)")
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="API processes sharing the port (uvicorn's)")
    ] = 1,
) -> None:
    """Serve the HTTP API (OpenAPI at /docs). In a container: TIDINGS_API_HOST=0.0.0.0."""
    import uvicorn

    from tidings.api.app import create_app
    from tidings.startup import prepare_store
    from tidings.store.secrets import SecretBox

    settings = _settings()
    prepare_store(settings)  # an embedded store is migrated; a deployment's only checked
    # a bad key stops the command here, in one line, not in each server process' start-up
    SecretBox.from_settings(
        settings.secret_key.get_secret_value() if settings.secret_key else None, settings.home
    )
    bind_host, bind_port = host or settings.api_host, port or settings.api_port
    if workers == 1:
        # log_config None: uvicorn's lines go through tidings' handler, in its format
        uvicorn.run(create_app(settings), host=bind_host, port=bind_port, log_config=None)
    else:
        # each server process builds its own app from the same environment
        uvicorn.run(
            "tidings.api.app:create_app",
            factory=True,
            host=bind_host,
            port=bind_port,
            workers=workers,
            log_config=None,
        )


@app.command()
def up(
    simulators: Annotated[
        bool,
        typer.Option(
            "--sim/--no-sim",
            help="serve the APNs and FCM simulators and send to them (--no-sim: to the "
            "providers the settings name)",
        ),
    ] = True,
) -> None:
    """Run the whole embedded stack in the foreground: Temporal's dev server, the
    simulators, the API and a worker with its forwarder. Ctrl-C stops what it started."""
    from tidings.stack import serve_stack
    from tidings.store.migrate import SchemaOutOfDate
    from tidings.temporal.devserver import StackError

    settings = _settings()
    # the store is brought up to date by up and by its worker: say it once, if at all
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        asyncio.run(serve_stack(settings, _announce_stack, simulators=simulators))
    except (StackError, SchemaOutOfDate) as error:
        errors.print(problem(f"tidings up: {error}"), soft_wrap=True)
        raise typer.Exit(1) from None
    except (asyncio.CancelledError, KeyboardInterrupt):
        errors.print(problem("tidings up: stopped at once, the worker not drained"))
        raise typer.Exit(130) from None


def _announce_stack(stack: StackAddresses) -> None:
    """Where each piece listens, copy-pastable (never wrapped)."""
    temporal = stack.temporal
    if not temporal.embedded:
        owner = "configured (TEMPORAL_ADDRESS)"
    elif temporal.started_here:
        owner = "embedded, started here"
    else:
        owner = "embedded, already running: left running (`tidings down` stops it)"
    lines = [
        f"tidings up · state in {stack.home.resolve()}",
        f"  API            {stack.api}",
        f"  OpenAPI docs   {stack.docs}",
        f"  console        {stack.api}/console  (log in with the admin key)",
        f"  Temporal       {temporal.address}  ({owner})",
    ]
    if temporal.ui_address:
        lines.append(f"  Temporal UI    {temporal.ui_address}")
    sims = stack.simulators
    if sims is not None:
        reused = "" if sims.started_here else f"  (already running in pid {sims.pid}: reused)"
        lines += [
            f"  simulators     control API {sims.control_url}{reused}",
            f"                 APNs {sims.apns_endpoint}, FCM {sims.fcm_endpoint}",
        ]
    lines += [
        f"  worker         task queue {stack.task_queue!r}, with its forwarder",
        f"the admin API key: TIDINGS_ADMIN_KEY, or the file {(stack.home / 'admin.key').resolve()}",
        "ready; Ctrl-C stops everything this command started",
    ]
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command()
def down() -> None:
    """Stop the embedded Temporal dev server other commands left running for this home
    (<home>/temporal.json)."""
    from tidings.temporal.devserver import StackError, stop_dev_server

    settings = _settings()
    try:
        stopped = stop_dev_server(settings.home)
    except StackError as error:
        errors.print(problem(f"tidings down: {error}"), soft_wrap=True)
        raise typer.Exit(1) from None
    if stopped is None:
        console.print(Text(f"no embedded Temporal server runs for {settings.home.resolve()}"))
        return
    console.print(
        success(f"stopped Temporal's dev server at {stopped.address} (pid {stopped.pid})")
    )


@app.command()
def sim(
    host: Annotated[
        str, typer.Option(help="address to listen on (0.0.0.0: every interface)")
    ] = "127.0.0.1",
    apns_port: Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port")] = 0,
    fcm_port: Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port")] = 0,
    control_port: Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port")] = 0,
    scenario: Annotated[Path | None, typer.Option(exists=True, dir_okay=False)] = None,
) -> None:
    """Serve the APNs and FCM simulators until Ctrl-C; their endpoints also go to
    <home>/sim/endpoints.json."""
    from tidings.sim import read_endpoints, serve

    settings = _settings()
    ports = {"--apns-port": apns_port, "--fcm-port": fcm_port, "--control-port": control_port}

    async def serve_and_announce() -> None:
        ready = asyncio.Event()
        serving = asyncio.create_task(
            serve(settings.home, host, apns_port, fcm_port, control_port, scenario, ready)
        )
        listening = asyncio.create_task(ready.wait())
        # serve() ends early, with its error, when it cannot listen: never wait for it forever
        await asyncio.wait({serving, listening}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.is_set():
            listening.cancel()
            error = serving.exception() if not serving.cancelled() else None
            errors.print(problem(_sim_failure(error, host, ports)), soft_wrap=True)
            raise typer.Exit(1)
        endpoints = read_endpoints(settings.home)
        _announce_sim(endpoints, settings.home, host)
        await serving

    asyncio.run(serve_and_announce())


def _sim_failure(error: BaseException | None, host: str, ports: dict[str, int]) -> str:
    """Why the simulators could not start, naming the port that is taken when one is."""
    import errno
    import socket

    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        taken = []
        for option, port in ports.items():
            if not port:
                continue
            try:
                with socket.create_server((host, port)):
                    pass
            except OSError:
                taken.append(f"{host}:{port} ({option})")
        if taken:
            return (
                f"cannot serve the simulators: {', '.join(taken)} already in use; "
                "choose another port, or 0 for a free one"
            )
        return (
            f"cannot serve the simulators: a port is already in use ({error.strerror}); "
            "give each simulator its own port, or 0 for a free one"
        )
    if isinstance(error, OSError):
        return f"cannot serve the simulators on {host}: {error.strerror or error}"
    if error is None:
        return "the simulators stopped before they were ready"
    return f"cannot serve the simulators: {error}"


def _announce_sim(endpoints: dict[str, object], home: Path, host: str) -> None:
    """What a user needs to point tidings at the simulators, copy-pastable (never wrapped)."""
    lines = [
        "simulators ready; point tidings at them with:",
        f"  export TIDINGS_APNS_ENDPOINT={endpoints['apns_endpoint']}",
        f"  export TIDINGS_FCM_ENDPOINT={endpoints['fcm_endpoint']}",
        f"  export TIDINGS_PROVIDER_CA_FILE={Path(str(endpoints['ca_file'])).resolve()}",
        f"control API: {endpoints['control_url']}",
        '  (JSON bodies; the README\'s "The simulators" describes each call)',
        "  credentials  POST /apns/keys {team_id, key_id, topics} -> {key_pem}",
        "               POST /apns/client-certificates {topics} -> {cert_pem, key_pem}",
        "               POST /fcm/service-accounts {project_id} -> service-account JSON",
        "  tokens gone  POST /{apns|fcm}/unregistered {tokens: [...], at_ms}",
        "  faults       PUT /{apns|fcm}/scenario {seed, scripted, mix, latency, ...}"
        " (or --scenario FILE)",
        "  received     GET /{apns|fcm}/records?token=&tracking_id=&accepted_only=true",
        "               GET /{apns|fcm}/displayed?token=  GET /{apns|fcm}/summary  GET /stats",
        "  start over   POST /reset (keys and service accounts stay)",
        f"  e.g. curl -X POST {endpoints['control_url']}/apns/keys"
        " -H 'content-type: application/json'"
        """ -d '{"team_id": "TEAM000001", "key_id": "KEY0000001","""
        """ "topics": ["com.example.app"]}'""",
        f"endpoints also in {(home / 'sim' / 'endpoints.json').resolve()}; Ctrl-C stops them",
    ]
    if host in ("0.0.0.0", "::", ""):
        lines.append(
            f"listening on every interface: from elsewhere, use this machine's address for {host}"
        )
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[
        str, typer.Argument(help="target revision (default: the newest)")
    ] = "heads",
) -> None:
    """Apply the store's migrations."""
    from tidings.store.migrate import upgrade

    settings = _settings()
    upgrade(settings.resolved_database_url, revision)
    console.print(
        "the store is up to date" if revision == "heads" else f"the store is at {revision}"
    )


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="revision to go back to; `-- -1`: one step")],
) -> None:
    """Undo migrations down to a revision (stop the workers and the API first)."""
    from tidings.store.migrate import downgrade

    settings = _settings()
    downgrade(settings.resolved_database_url, revision)
    console.print(f"the store is at {revision}", markup=False, highlight=False)


@db_app.command("current")
def db_current() -> None:
    """The store's revision, and whether this tidings needs another one (exit code 1)."""
    from tidings.store.migrate import current_revisions, head_revisions

    settings = _settings()
    current, heads = current_revisions(settings.resolved_database_url), head_revisions()
    shown = ", ".join(sorted(current)) or "none (not migrated)"
    console.print(f"the store is at {shown}", markup=False, highlight=False)
    if current != heads:
        errors.print(
            problem(f"this tidings needs {', '.join(sorted(heads))}: `tidings db upgrade`")
        )
        raise typer.Exit(1)


@db_app.command("history")
def db_history() -> None:
    """Every migration, oldest first; the store's current one marked."""
    from tidings.store.migrate import current_revisions, history

    settings = _settings()
    current = current_revisions(settings.resolved_database_url)
    for revision, summary in history():
        mark = "*" if revision in current else " "
        console.print(
            f"{mark} {revision}  {summary}", markup=False, highlight=False, soft_wrap=True
        )


@keys_app.command("generate")
def keys_generate() -> None:
    """Print a new secret key. To rotate: put it first in TIDINGS_SECRET_KEY (new,old) on
    every process, run `tidings keys rotate`, then drop the old key."""
    from tidings.store.secrets import generate_key

    console.print(generate_key(), markup=False, highlight=False, soft_wrap=True)


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored credential under the newest key of TIDINGS_SECRET_KEY."""
    from tidings.stack import store_only
    from tidings.store.rotation import rotate_credentials
    from tidings.store.secrets import SecretBox

    settings = _settings()
    if settings.secret_key is None:
        errors.print(problem("TIDINGS_SECRET_KEY is not set: rotate needs the new key first"))
        raise typer.Exit(2)
    box = SecretBox.from_settings(settings.secret_key.get_secret_value(), settings.home)

    async def rotate() -> RotationReport:
        async with store_only(settings) as database:
            return await rotate_credentials(database, box)

    report = asyncio.run(rotate())
    console.print(
        success(
            f"{report.resealed} credentials re-encrypted under the newest key, "
            f"{report.current} already were, {report.references} are references "
            f"(env:/file:), {report.changed_meanwhile} saved again meanwhile"
        )
    )
    if report.unreadable:
        for where in report.unreadable:
            errors.print(problem(f"{where}: no key in TIDINGS_SECRET_KEY opens it"))
        raise typer.Exit(1)
    if box.key_count > 1:
        console.print("every process may now drop the older keys from TIDINGS_SECRET_KEY")


@journeys_app.command("validate")
def journeys_validate(
    path: Annotated[Path, typer.Argument(dir_okay=False)],
    as_json: Annotated[
        bool, typer.Option("--json", help="print JSON (what the API answers)")
    ] = False,
) -> None:
    """Check a journey file; list every problem with its node and field (exit code 1), and
    every warning (exit code 0). With a store configured, its apps must exist there."""
    from tidings.cli.runs import print_json
    from tidings.journeys.validation import JourneyInvalid, load_definition
    from tidings.journeys.warnings import journey_warnings
    from tidings.runs.journeys import JourneyProblem, ValidationResult

    settings = Settings()
    configure_logging("WARNING")
    try:
        journey = load_definition(path)
        missing = _missing_apps(settings, journey)
        if missing:
            raise JourneyInvalid(missing)
    except JourneyInvalid as error:
        if as_json:
            problems = [JourneyProblem.of(issue) for issue in error.issues]
            print_json(
                console, ValidationResult(valid=False, problems=problems).model_dump_json(indent=2)
            )
            raise typer.Exit(1) from None
        for issue in error.issues:
            errors.print(problem(issue))
        raise typer.Exit(1) from None
    warnings = journey_warnings(journey)
    if as_json:
        result = ValidationResult(
            valid=True, journey_id=journey.id, warnings=[JourneyProblem.of(w) for w in warnings]
        )
        print_json(console, result.model_dump_json(indent=2))
        return
    for warning in warnings:
        errors.print(Text.assemble(("!", "yellow"), " ", str(warning)))
    console.print(success(f"{path}: journey {journey.id!r}, {len(journey.nodes)} nodes"))


def _missing_apps(settings: Settings, journey: JourneyDefinition) -> list[JourneyIssue]:
    """The journey's apps the store lacks, when a store is configured (an explicit URL, or
    the home's SQLite file already made): a journey checked on its own is not judged."""
    from tidings.journeys.warnings import missing_apps
    from tidings.stack import store_only

    if not settings.database_url and not (settings.home / "tidings.db").exists():
        return []

    async def read() -> list[JourneyIssue]:
        async with store_only(settings) as database, database.read() as session:
            return await missing_apps(session, journey)

    return asyncio.run(read())


@journeys_app.command("schema")
def journeys_schema() -> None:
    """Print the JSON Schema of journey files (for editors' completion and checks)."""
    from tidings.journeys.schema import journey_schema

    console.out(json.dumps(journey_schema(), indent=2), highlight=False)


@journeys_app.command("save")
def journeys_save(path: Annotated[Path, typer.Argument(dir_okay=False, exists=True)]) -> None:
    """Check a journey file and store it as the journey's newest version (runs keep the
    version they started with); start it later by its id."""
    from tidings.journeys.validation import JourneyInvalid, load_definition
    from tidings.runs.start import save_journey
    from tidings.stack import store_only

    settings = _settings()
    try:
        journey = load_definition(path)
    except JourneyInvalid as error:
        for issue in error.issues:
            errors.print(problem(issue))
        raise typer.Exit(1) from None

    async def save() -> int:
        async with store_only(settings) as database:
            return await save_journey(database, journey)

    version = asyncio.run(save())
    console.print(success(f"stored journey {journey.id!r} as version {version}"))


@journeys_app.command("list")
def journeys_list(
    as_json: Annotated[
        bool, typer.Option("--json", help="print JSON (what the API answers)")
    ] = False,
) -> None:
    """The stored journeys and their latest versions."""
    from pydantic import TypeAdapter
    from rich.table import Table

    from tidings.cli.runs import print_json
    from tidings.runs.journeys import JourneySummary, list_journeys
    from tidings.stack import store_only

    settings = _settings()

    async def read() -> list[JourneySummary]:
        async with store_only(settings) as database:
            return await list_journeys(database)

    journeys = asyncio.run(read())
    if as_json:
        print_json(console, TypeAdapter(list[JourneySummary]).dump_json(journeys, indent=2))
        return
    table = Table(title="stored journeys", header_style="bold")
    for column in ("id", "name", "latest version", "updated"):
        table.add_column(column)
    for journey in journeys:
        table.add_row(
            Text(journey.id),
            Text(journey.name),
            str(journey.latest_version),
            f"{journey.updated_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)


@journeys_app.command("show")
def journeys_show(
    journey_id: Annotated[str, typer.Argument(help="the journey's id")],
    as_json: Annotated[
        bool, typer.Option("--json", help="print JSON (what the API answers)")
    ] = False,
) -> None:
    """A stored journey with its versions (newest first) and its number of runs."""
    from rich.table import Table

    from tidings.cli.runs import print_json
    from tidings.runs.journeys import JourneyDetail, get_journey
    from tidings.stack import store_only

    settings = _settings()

    async def read() -> JourneyDetail | None:
        async with store_only(settings) as database:
            return await get_journey(database, journey_id)

    found = asyncio.run(read())
    if found is None:
        errors.print(problem(f"no journey {journey_id!r} in the store"))
        raise typer.Exit(1)
    if as_json:
        print_json(console, found.model_dump_json(indent=2))
        return
    table = Table(
        title=Text(f"journey {found.id} · {found.name} · {found.runs} runs"), header_style="bold"
    )
    for column in ("version", "saved", "nodes"):
        table.add_column(column)
    for version in found.versions:
        nodes = ", ".join(str(n.get("id")) for n in version.definition.get("nodes", []))
        table.add_row(str(version.version), f"{version.created_at:%Y-%m-%d %H:%M}", Text(nodes))
    console.print(table)


JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON (what the API answers)")]


def _trigger_command(step: Callable[[Database], Awaitable[T]]) -> T:
    """Run a triggers command on the store; what a designer can fix is one line, exit 1."""
    from tidings.runs.errors import StartError
    from tidings.runs.triggers import TriggerNotFound
    from tidings.stack import store_only

    settings = _settings()

    async def go() -> T:
        async with store_only(settings) as database:
            return await step(database)

    try:
        return asyncio.run(go())
    except (StartError, TriggerNotFound) as error:
        errors.print(problem(error, "cannot do that:"))
        raise typer.Exit(1) from None


def _print_triggers(states: list[TriggerState], as_json: bool) -> None:
    from pydantic import TypeAdapter
    from rich.table import Table

    from tidings.cli.runs import print_json

    if as_json:
        print_json(console, TypeAdapter(list[TriggerState]).dump_json(states, indent=2))
        return
    table = Table(title="triggered journeys", header_style="bold")
    width = max((len(s.run_id) for s in states), default=3)
    for column in ("journey", "event", "enabled", "version", "entered", "run"):
        table.add_column(
            column, no_wrap=column == "run", min_width=width if column == "run" else None
        )
    for state in states:
        table.add_row(
            Text(state.journey_id),
            Text(state.event),
            "yes" if state.enabled else "no",
            str(state.journey_version or ""),
            str(state.profiles_entered),
            Text(state.run_id),
        )
    console.print(table)


@triggers_app.command("list")
def triggers_list(as_json: JsonFlag = False) -> None:
    """Every journey ever enabled on its event, and whether it takes entries now."""
    from tidings.runs.triggers import list_triggers

    _print_triggers(_trigger_command(list_triggers), as_json)


@triggers_app.command("show")
def triggers_show(
    journey_id: Annotated[str, typer.Argument(help="the journey's id")], as_json: JsonFlag = False
) -> None:
    """One triggered journey: enabled or not, its activation run, profiles entered."""
    from tidings.runs.triggers import trigger_state

    state = _trigger_command(lambda db: trigger_state(db, journey_id))
    if as_json:
        from tidings.cli.runs import print_json

        print_json(console, state.model_dump_json(indent=2))
        return
    _print_triggers([state], False)


@triggers_app.command("enable")
def triggers_enable(
    journey_id: Annotated[str, typer.Argument(help="a stored journey's id")],
    version: Annotated[int | None, typer.Option(help="default: the latest")] = None,
) -> None:
    """From now on the journey's event starts it for the event's profile."""
    from tidings.runs.triggers import enable_trigger

    state = _trigger_command(lambda db: enable_trigger(db, journey_id, version))
    console.print(success(f"journey {journey_id!r} starts on {state.event!r}: run {state.run_id}"))


@triggers_app.command("disable")
def triggers_disable(journey_id: Annotated[str, typer.Argument(help="the journey's id")]) -> None:
    """No new entries; entries in flight finish (cancel the run to stop them too)."""
    from tidings.runs.triggers import disable_trigger

    _trigger_command(lambda db: disable_trigger(db, journey_id))
    console.print(success(f"journey {journey_id!r} takes no new entries"))


@apps_app.command("check")
def apps_check(app_id: Annotated[str, typer.Argument(help="the app's id")]) -> None:
    """Check the app's APNs and FCM credentials against the providers (or the simulators
    the settings point at); name each wrong field. Exit code 1 when one is wrong."""
    from tidings.cli.apps import check_stored_app

    settings = _settings()
    try:
        problems = asyncio.run(check_stored_app(settings, app_id))
    except LookupError as error:
        errors.print(problem(error))
        raise typer.Exit(1) from None
    for found in problems:
        errors.print(
            Text.assemble(("?", "yellow"), " ", str(found)) if found.transient else problem(found)
        )
    if problems:
        raise typer.Exit(1 if any(not p.transient for p in problems) else 2)
    console.print(success(f"app {app_id!r}: the providers accept its credentials"))


def main() -> None:
    with configuration_errors():
        app()
