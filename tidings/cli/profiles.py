"""`tidings profiles import FILE`: profiles, user mappings and devices in bulk, through the
same service layer as POST /v1/profiles/import (the store only; no API or Temporal needed).
The file is read in pieces, never whole."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tidings.cli.designer import _settings

console = Console()
errors = Console(stderr=True)
app = typer.Typer(help="Profiles: bulk import.", no_args_is_help=True)
PIECE = 256 << 10


async def _pieces(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as file:
        while piece := file.read(PIECE):
            yield piece


@app.command("import")
def import_file(
    file: Annotated[
        Path,
        typer.Argument(help="NDJSON (.ndjson, .jsonl) or CSV (.csv)", dir_okay=False, exists=True),
    ],
    fmt: Annotated[
        str | None, typer.Option("--format", help="ndjson or csv; default: by the file's suffix")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print JSON (what the API answers)")
    ] = False,
) -> None:
    """Import the file's rows: each an upsert by profile id (see the README's "Bulk import").
    Rows with a problem are listed by line and store nothing; exit 1 if any failed."""
    from tidings.imports.service import ImportFormat, ImportRefused, import_profiles
    from tidings.stack import store_only

    name = (fmt or file.suffix.lstrip(".")).lower()
    kind = {"csv": ImportFormat.CSV, "ndjson": ImportFormat.NDJSON, "jsonl": ImportFormat.NDJSON}
    if name not in kind:
        errors.print(f"cannot tell the format of {file.name}: give --format ndjson or csv")
        raise typer.Exit(2)
    settings = _settings()

    async def go() -> object:
        async with store_only(settings) as database:
            return await import_profiles(database, _pieces(file), kind[name])

    try:
        report = asyncio.run(go())
    except ImportRefused as error:
        errors.print(f"{file.name}: {error}", soft_wrap=True)
        raise typer.Exit(1) from None
    from tidings.imports.service import ImportReport

    assert isinstance(report, ImportReport)
    if as_json:
        answer = {
            "rows": report.rows,
            "created": report.created,
            "updated": report.updated,
            "failed": report.failed,
            "errors": [vars(e) for e in report.errors],
            "errors_truncated": report.errors_truncated,
        }
        console.print_json(json.dumps(answer))
    else:
        console.print(
            f"{report.rows} rows: {report.created} created, {report.updated} updated, "
            f"{report.failed} failed"
        )
        for row_error in report.errors:
            where = f"line {row_error.line}" + (f", {row_error.field}" if row_error.field else "")
            errors.print(f"{where}: {row_error.message}", soft_wrap=True, markup=False)
        if report.errors_truncated:
            errors.print("(more failed rows than are listed)")
    if report.failed:
        raise typer.Exit(1)
