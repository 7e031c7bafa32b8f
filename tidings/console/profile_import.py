"""The console's import page: rows pasted as NDJSON or CSV go through the same import as
POST /v1/profiles/import, and the answer (counts, failed rows by line and field) is shown
with the text kept. Larger files go to the API or `tidings profiles import`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tidings.console.mount import BASE, page, signed_in, state_of, to_login
from tidings.imports.service import ImportFormat, ImportRefused, import_profiles

router = APIRouter(prefix=BASE, include_in_schema=False)
FORM_LIMIT = 4 << 20  # pasted rows, urlencoded


def _page(request: Request, status: int = 200, **context: Any) -> Response:
    return page(
        request, "import.html", "Import profiles", status=status, section="import", **context
    )


@router.get("/import")
async def import_form(request: Request) -> Response:
    if not signed_in(request):
        return to_login(request)
    return _page(request)


@router.post("/import")
async def import_rows(request: Request) -> Response:
    if not signed_in(request):
        return to_login(request)
    body = await request.body()
    if len(body) > FORM_LIMIT:
        problem = "the form is over 4 MiB: import larger files with the API or the CLI"
        return _page(request, status=413, refused=problem)
    form = parse_qs(body.decode(errors="replace"))
    rows = (form.get("rows") or [""])[0]
    fmt = ImportFormat.CSV if (form.get("format") or [""])[0] == "csv" else ImportFormat.NDJSON
    kept = {"rows": rows, "format": fmt.value}

    async def pieces() -> AsyncIterator[bytes]:
        yield rows.encode()

    try:
        report = await import_profiles(state_of(request).db, pieces(), fmt)
    except ImportRefused as error:
        return _page(request, status=422, refused=str(error), form=kept)
    return _page(request, report=report, form=kept)
