"""A streamed body cut into records, one at a time, without holding more than one record.

NDJSON: a record is a line. CSV (RFC 4180, as the csv module writes it): a record ends at a
line break outside quotes, and a quoted field may hold line breaks; since only `"` opens and
closes quotes (a doubled `""` inside quotes keeps the count even), a line break ends the
record exactly when the record so far holds an even number of `"`. Both bytes are ASCII and
never part of a UTF-8 multibyte character, so records are cut on bytes and each is decoded
on its own: a bad byte spoils its record only.

A record longer than the per-record cap is skipped up to its end and reported as such; the
caller never sees more than ``max_record_bytes`` of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

QUOTE = 0x22
NEWLINE = 0x0A


@dataclass(frozen=True)
class Record:
    """One record's bytes (line break removed) and the line it starts on (1-based);
    ``too_long`` records carry no bytes."""

    line: int
    data: bytes
    too_long: bool = False


class RecordSplitter:
    """Feed it the body's chunks as they arrive; it yields the records they complete."""

    def __init__(self, *, csv: bool, max_record_bytes: int) -> None:
        self.csv = csv
        self.max_record_bytes = max_record_bytes
        self._buffer = bytearray()
        self._quotes = 0
        self._line = 1
        self._start_line = 1
        self._skipping = False

    def feed(self, chunk: bytes) -> Iterator[Record]:
        start = 0
        while start < len(chunk):
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if self.csv:
                self._quotes += piece.count(QUOTE)
            if not self._skipping:
                if len(self._buffer) + len(piece) > self.max_record_bytes:
                    self._skipping = True
                    self._buffer.clear()
                else:
                    self._buffer += piece
            if end < 0:
                return
            self._line += 1
            if self.csv and self._quotes % 2:
                # a line break inside a quoted field: part of the record
                if not self._skipping:
                    if len(self._buffer) + 1 > self.max_record_bytes:
                        self._skipping = True
                        self._buffer.clear()
                    else:
                        self._buffer += b"\n"
                start = end + 1
                continue
            yield self._take()
            start = end + 1

    def close(self) -> Iterator[Record]:
        """The last record, when the body does not end with a line break."""
        if self._buffer or self._skipping:
            yield self._take()

    def _take(self) -> Record:
        record = (
            Record(self._start_line, b"", too_long=True)
            if self._skipping
            else Record(self._start_line, bytes(self._buffer).removesuffix(b"\r"))
        )
        self._buffer.clear()
        self._quotes = 0
        self._skipping = False
        self._start_line = self._line
        return record
