"""Bulk import of profiles, their user mappings and devices, from a streamed NDJSON or CSV
body: shared by ``POST /v1/profiles/import``, ``tidings profiles import`` and the console.

The body is read as it arrives, cut into records (:mod:`tidings.imports.records`), each
checked on its own (:mod:`tidings.imports.rows`), and written in chunks, one transaction a
chunk (:mod:`tidings.store.profile_import`). A row with a problem stores nothing of itself
and is answered with its line, its field and the problem; the others are stored. Rows that
would write the same profile, email, phone, user mapping or device as an earlier row of the
chunk start the next chunk, so a later row wins as if the rows were written one by one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy.exc import IntegrityError

from tidings.imports.records import Record, RecordSplitter
from tidings.imports.rows import CheckedRow, CsvHeaderError, RowError, check_row, csv_header
from tidings.store.db import Database
from tidings.store.profile_import import ChunkWritten, ProfileRow, Refusal, write_chunk
from tidings.store.types import utcnow

BOM = b"\xef\xbb\xbf"
MAX_RECORD_BYTES = 256 << 10
CHUNK_ROWS = 2000
YIELD_EVERY_ROWS = 50
MAX_ERRORS_LISTED = 1000


class ImportFormat(StrEnum):
    NDJSON = "ndjson"
    CSV = "csv"


class ImportRefused(ValueError):
    """The body cannot be imported at all (a CSV header tidings does not understand);
    nothing was stored."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    failed: int = 0
    errors: list[RowError] = field(default_factory=list)
    errors_truncated: bool = False
    last_line_stored: int = 0

    def fail(self, error: RowError) -> None:
        self.failed += 1
        if len(self.errors) < MAX_ERRORS_LISTED:
            self.errors.append(error)
        else:
            self.errors_truncated = True


def _stored(row: CheckedRow) -> ProfileRow:
    r = row.row
    return ProfileRow(
        id=r.id,
        email=r.email,
        phone=r.phone,
        timezone=r.timezone,
        locale=r.locale,
        attributes=r.attributes,
        users=dict(r.users),
        devices=[(d.app, d.provider.value, d.token, d.environment) for d in r.devices],
    )


class _Importer:
    def __init__(self, database: Database, fmt: ImportFormat, chunk_rows: int) -> None:
        self.database = database
        self.fmt = fmt
        self.chunk_rows = chunk_rows
        self.report = ImportReport()
        self.columns: list[str] | None = None
        self.first = True
        self.chunk: list[CheckedRow] = []
        self.keys: set[tuple[str, ...]] = set()
        self.writing: asyncio.Task[None] | None = None

    async def take(self, record: Record) -> None:
        if self.writing is not None and self.report.rows % YIELD_EVERY_ROWS == 0:
            # checking rows never awaits: without a turn now and then, the chunk being
            # written would only reach the store once the next one is full
            await asyncio.sleep(0)
        data = record.data
        if self.first and data.startswith(BOM):
            data = data[len(BOM) :]
        if record.too_long:
            self.first = False
            self.report.rows += 1
            message = f"is longer than {MAX_RECORD_BYTES >> 10} KiB"
            self.report.fail(RowError(record.line, None, message))
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            self.first = False
            self.report.rows += 1
            self.report.fail(RowError(record.line, None, f"is not UTF-8: {error.reason}"))
            return
        if not text.strip():
            return
        if self.first and self.fmt is ImportFormat.CSV:
            self.first = False
            try:
                self.columns = csv_header(text)
            except CsvHeaderError as problem:
                raise ImportRefused(str(problem.args[0]), problem.args[1]) from None
            return
        self.first = False
        self.report.rows += 1
        checked = check_row(record.line, text, self.columns)
        if isinstance(checked, RowError):
            self.report.fail(checked)
            return
        keys = checked.keys
        if len(self.chunk) >= self.chunk_rows or not keys.isdisjoint(self.keys):
            await self.flush()
        self.chunk.append(checked)
        self.keys |= keys

    async def flush(self) -> None:
        """Start writing the chunk, once the previous one is written: the next chunk is read
        and checked while the store writes this one."""
        if not self.chunk:
            return
        chunk, self.chunk, self.keys = self.chunk, [], set()
        await self.written()
        self.writing = asyncio.create_task(self._write(chunk))

    async def written(self) -> None:
        if self.writing is not None:
            writing, self.writing = self.writing, None
            await writing

    async def _write(self, chunk: list[CheckedRow]) -> None:
        try:
            async with self.database.write() as session:
                written = await write_chunk(session, [_stored(r) for r in chunk], utcnow())
        except IntegrityError:
            # another writer took an email, phone or token since the chunk was checked: the
            # chunk is rolled back and its rows written one by one, each on its own
            written = await self._write_one_by_one(chunk)
        self.report.created += written.created
        self.report.updated += written.updated
        refused = {r.index: r for r in written.refused}
        for index, row in enumerate(chunk):
            if index in refused:
                problem = refused[index]
                field = problem.field
                if self.columns is not None and field.startswith("devices."):
                    field = "device." + field.split(".", 2)[2]
                self.report.fail(RowError(row.line, field or None, problem.message))
        self.report.last_line_stored = chunk[-1].line

    async def _write_one_by_one(self, chunk: list[CheckedRow]) -> ChunkWritten:
        created = updated = 0
        refused = []
        for index, row in enumerate(chunk):
            try:
                async with self.database.write() as session:
                    one = await write_chunk(session, [_stored(row)], utcnow())
            except IntegrityError:
                message = "conflicts with what another request stored meanwhile"
                refused.append(Refusal(index, "", message))
                continue
            created += one.created
            updated += one.updated
            refused.extend(Refusal(index, r.field, r.message) for r in one.refused)
        return ChunkWritten(created, updated, refused)


async def import_profiles(
    database: Database,
    body: AsyncIterable[bytes],
    fmt: ImportFormat,
    *,
    chunk_rows: int = CHUNK_ROWS,
    report: ImportReport | None = None,
) -> ImportReport:
    """Import the body's rows. ``report`` (if given) is filled in as chunks are stored, so a
    caller whose body is cut short still knows what was stored."""
    importer = _Importer(database, fmt, chunk_rows)
    if report is not None:
        importer.report = report
    splitter = RecordSplitter(csv=fmt is ImportFormat.CSV, max_record_bytes=MAX_RECORD_BYTES)
    try:
        async for piece in body:
            for record in splitter.feed(piece):
                await importer.take(record)
        for record in splitter.close():
            await importer.take(record)
        await importer.flush()
    finally:
        # a chunk being written is finished (or its error raised) before the answer
        await importer.written()
    importer.report.errors.sort(key=lambda e: e.line)
    return importer.report
