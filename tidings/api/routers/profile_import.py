"""``POST /v1/profiles/import``: profiles, their user mappings and devices in bulk, from a
streamed NDJSON or CSV body (the Content-Type says which), written in chunks as the body
arrives (:mod:`tidings.imports.service`). Each row is an upsert by profile id; a row with a
problem stores nothing of itself and is answered with its line, field and problem."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from tidings.api.deps import Admin, State
from tidings.api.errors import ERROR_RESPONSES, ApiError, responses
from tidings.api.gate import BodyTooLarge
from tidings.imports.rows import CSV_COLUMNS
from tidings.imports.service import (
    MAX_ERRORS_LISTED,
    MAX_RECORD_BYTES,
    ImportFormat,
    ImportRefused,
    ImportReport,
    import_profiles,
)

log = logging.getLogger(__name__)

MEDIA_TYPES = {
    "application/x-ndjson": ImportFormat.NDJSON,
    "application/ndjson": ImportFormat.NDJSON,
    "application/jsonl": ImportFormat.NDJSON,
    "application/json-lines": ImportFormat.NDJSON,
    "text/csv": ImportFormat.CSV,
}
ROW_SCHEMA = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {"type": "string", "maxLength": 128},
        "email": {"type": "string"},
        "phone": {"type": "string", "description": "E.164"},
        "timezone": {"type": "string"},
        "locale": {"type": "string"},
        "attributes": {"type": "object"},
        "users": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "app id -> the app's user id, mapped to this profile",
        },
        "devices": {
            "type": "array",
            "maxItems": 20,
            "items": {
                "type": "object",
                "required": ["app", "provider", "token"],
                "properties": {
                    "app": {"type": "string"},
                    "provider": {"enum": ["apns", "fcm"]},
                    "token": {"type": "string"},
                    "environment": {"enum": ["production", "sandbox"]},
                },
            },
        },
    },
}

router = APIRouter(
    prefix="/v1/profiles", tags=["profiles"], dependencies=[Admin], responses=ERROR_RESPONSES
)


class ImportProblem(BaseModel):
    line: int = Field(description="the line the row starts on (1 is the CSV header)")
    field: str | None = Field(description="the row's field at fault, as the row names it")
    message: str


class ImportAnswer(BaseModel):
    rows: int = Field(description="rows read (a CSV header and blank lines are not rows)")
    created: int = Field(description="profiles created")
    updated: int = Field(description="profiles that existed, replaced by their row")
    failed: int = Field(description="rows with a problem: nothing of them is stored")
    errors: list[ImportProblem] = Field(
        description=f"the failed rows, by line (the first {MAX_ERRORS_LISTED})"
    )
    errors_truncated: bool = Field(description="more rows failed than are listed")

    @classmethod
    def of(cls, report: ImportReport) -> ImportAnswer:
        return cls(
            rows=report.rows,
            created=report.created,
            updated=report.updated,
            failed=report.failed,
            errors=[
                ImportProblem(line=e.line, field=e.field, message=e.message) for e in report.errors
            ],
            errors_truncated=report.errors_truncated,
        )


def _format(request: Request) -> ImportFormat:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    fmt = MEDIA_TYPES.get(media_type)
    if fmt is None:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the rows as application/x-ndjson (one JSON object a line) or text/csv, "
            f"not {media_type or 'a body without a Content-Type'!r}",
        )
    charset = request.headers.get("content-type", "").lower().partition("charset=")[2]
    if charset and charset.strip('" ').replace("_", "-") not in ("utf-8", "utf8"):
        raise ApiError(415, "unsupported_media_type", "the rows must be UTF-8")
    return fmt


OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "NDJSON: one object a line, of the shape below. CSV: a header row "
        f"naming its columns among {CSV_COLUMNS}, then one row a profile (RFC 4180 quoting; "
        f"a UTF-8 byte order mark is skipped). A row takes at most {MAX_RECORD_BYTES >> 10} "
        "KiB.",
        "content": {
            "application/x-ndjson": {"schema": ROW_SCHEMA},
            "text/csv": {"schema": {"type": "string"}},
        },
    }
}


@router.post("/import", openapi_extra=OPENAPI_BODY, responses=responses(413, 415, 422))
async def import_rows(request: Request, state: State) -> ImportAnswer:
    """Import profiles with their user mappings and devices. The body is streamed and written
    in chunks (one transaction each) as it arrives; each row is an upsert by profile id, so
    importing the same file again changes nothing but `updated_at`. Rows with a problem are
    answered in `errors` and store nothing; the others are stored."""
    fmt = _format(request)
    report = ImportReport()
    try:
        await import_profiles(state.db, request.stream(), fmt, report=report)
    except ImportRefused as error:
        details = [{"loc": ["body", "header", error.field or ""], "msg": str(error)}]
        raise ApiError(422, "invalid_header", str(error), details) from None
    except BodyTooLarge as error:
        message = (
            f"{error.detail}; the rows before line {report.last_line_stored + 1} are stored"
            if report.last_line_stored
            else f"{error.detail}; nothing was stored"
        )
        raise ApiError(
            413,
            "too_large",
            message,
            [{"loc": ["body"], "msg": message, "last_line_stored": report.last_line_stored}],
        ) from None
    log.info(
        "profiles imported: %d rows, %d created, %d updated, %d failed",
        report.rows,
        report.created,
        report.updated,
        report.failed,
    )
    return ImportAnswer.of(report)
