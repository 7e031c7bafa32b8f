"""`tidings segments`: saved audience filters. The commands call the same service layer as
/v1/segments (the store only; no Temporal needed); `tidings start JOURNEY --segment NAME`
starts a run for one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tidings.cli.designer import _settings, problem, success

if TYPE_CHECKING:
    from tidings.journeys.segments import SegmentDefinition
    from tidings.runs.segments import SegmentPreview
    from tidings.store.db import Database

T = TypeVar("T")
console = Console()
errors = Console(stderr=True)
app = typer.Typer(
    help="Saved segments: named audience filters over profiles, devices and behaviour.",
    no_args_is_help=True,
)
NameArg = Annotated[str, typer.Argument(help="the segment's name")]
FileArg = Annotated[
    Path,
    typer.Argument(help="the definition, YAML or JSON", dir_okay=False, exists=True),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON (what the API answers)")]
Description = Annotated[str | None, typer.Option(help="what the segment is for")]


def _call(step: Callable[[Database], Awaitable[T]]) -> T:
    """Run a step on the store; what a designer can fix is printed in a line, exit 1."""
    from tidings.journeys.segments import SegmentInvalid
    from tidings.runs.segments import SegmentExists, SegmentInUse, SegmentNotFound
    from tidings.stack import store_only

    settings = _settings()

    async def go() -> T:
        async with store_only(settings) as database:
            return await step(database)

    try:
        return asyncio.run(go())
    except SegmentInvalid as error:
        for item in error.problems:
            errors.print(problem(item), soft_wrap=True)
        raise typer.Exit(1) from None
    except (SegmentExists, SegmentNotFound, SegmentInUse) as error:
        errors.print(problem(error, "cannot do that:"), soft_wrap=True)
        raise typer.Exit(1) from None


def _read(path: Path) -> SegmentDefinition:
    from tidings.journeys.segments import SegmentInvalid, load_segment_text

    try:
        return load_segment_text(path.read_text(encoding="utf-8"), source=str(path))
    except (SegmentInvalid, OSError, UnicodeDecodeError) as error:
        problems = getattr(error, "problems", [error])
        for item in problems:
            errors.print(problem(item), soft_wrap=True)
        raise typer.Exit(1) from None


def _print_json(data: bytes) -> None:
    from tidings.cli.runs import print_json

    print_json(console, data)


@app.command("create")
def create(name: NameArg, path: FileArg, description: Description = None) -> None:
    """Save a segment from a definition file; a bad one is refused, each problem by field."""
    from tidings.runs.segments import create_segment

    definition = _read(path)
    _call(lambda db: create_segment(db, name, definition.to_data(), description))
    console.print(success(f"segment {name} saved"))


@app.command("update")
def update(name: NameArg, path: FileArg, description: Description = None) -> None:
    """Replace a segment's definition; runs already started keep theirs."""
    from tidings.runs.segments import update_segment

    definition = _read(path)
    _call(lambda db: update_segment(db, name, definition.to_data(), description))
    console.print(success(f"segment {name} updated"))


@app.command("list")
def list_all(as_json: JsonFlag = False) -> None:
    """The saved segments, by name."""
    from pydantic import TypeAdapter

    from tidings.runs.segments import SegmentView, list_segments

    async def every(db: Database) -> list[SegmentView]:
        found: list[SegmentView] = []
        after: str | None = None
        while True:
            page, after = await list_segments(db, after=after, limit=500)
            found += page
            if after is None:
                return found

    segments = _call(every)
    if as_json:
        _print_json(TypeAdapter(list[SegmentView]).dump_json(segments, indent=2))
        return
    table = Table(title="segments", header_style="bold")
    for column in ("name", "description", "updated"):
        table.add_column(column)
    for segment in segments:
        table.add_row(
            Text(segment.name),
            Text(segment.description or ""),
            f"{segment.updated_at:%Y-%m-%d %H:%M:%S}",
        )
    console.print(table)


@app.command("show")
def show(name: NameArg, as_json: JsonFlag = False) -> None:
    """A segment's definition."""
    import json

    import yaml

    from tidings.runs.segments import get_segment

    segment = _call(lambda db: get_segment(db, name))
    if as_json:
        _print_json(segment.model_dump_json(indent=2).encode())
        return
    console.print(Text(f"{segment.name}: {segment.description or ''}".rstrip(": ")))
    text = yaml.safe_dump(json.loads(json.dumps(segment.definition)), sort_keys=False)
    console.print(Text(text.rstrip()))


@app.command("delete")
def delete(name: NameArg) -> None:
    """Delete a segment; refused while a stored journey takes it as its audience."""
    from tidings.runs.segments import delete_segment

    _call(lambda db: delete_segment(db, name))
    console.print(success(f"segment {name} deleted"))


@app.command("preview")
def preview(
    name: Annotated[str | None, typer.Argument(help="a saved segment (or give --file)")] = None,
    path: Annotated[
        Path | None,
        typer.Option("--file", help="preview a definition file instead", dir_okay=False),
    ] = None,
    sample: Annotated[int, typer.Option(min=0, max=100, help="ids to show")] = 10,
    as_json: JsonFlag = False,
) -> None:
    """How many profiles a segment selects now, and the first of their ids."""
    from tidings.runs.segments import preview_definition, preview_segment

    if (name is None) == (path is None):
        errors.print(problem("name a saved segment or give --file, not both"))
        raise typer.Exit(2)
    if path is not None:
        definition = _read(path)
        found = _call(lambda db: preview_definition(db, definition, sample=sample))
    else:
        assert name is not None
        found = _call(lambda db: preview_segment(db, name, sample=sample))
    _show_preview(found, as_json)


def _show_preview(found: SegmentPreview, as_json: bool) -> None:
    if as_json:
        _print_json(found.model_dump_json(indent=2).encode())
        return
    console.print(Text(f"{found.count} profiles match"))
    for profile_id in found.sample:
        console.print(Text(f"  {profile_id}"))
    if found.count > len(found.sample) and found.sample:
        console.print(Text(f"  ... and {found.count - len(found.sample)} more"))
