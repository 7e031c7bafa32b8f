"""A run's audience as a designer gives it: a file of profile ids or emails, listed ids,
attribute filters, an app."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tidings.journeys.predicates import parse_where
from tidings.runs.errors import StartError
from tidings.runs.start import AudienceChoice

HEADER_CELLS = {"profile_id", "profile", "id", "email"}


@dataclass(frozen=True)
class AudienceFile:
    profile_ids: list[str]
    emails: list[str]


def read_audience_file(path: Path) -> AudienceFile:
    return read_audience_text(path.read_text(encoding="utf-8"))


def read_audience_text(text: str) -> AudienceFile:
    """Profile ids and/or emails, one per line (a CSV's first column); blank lines, #
    comments and a header row are skipped. A value with an @ is an email."""
    ids: list[str] = []
    emails: list[str] = []
    for number, line in enumerate(text.splitlines()):
        value = line.split(",", 1)[0].strip().strip('"')
        if not value or value.startswith("#"):
            continue
        if number == 0 and value.lower() in HEADER_CELLS:
            continue
        (emails if "@" in value else ids).append(value)
    return AudienceFile(ids, emails)


def audience_choice(
    *,
    file: Path | None = None,
    profile_ids: Sequence[str] = (),
    emails: Sequence[str] = (),
    where: Sequence[str] = (),
    app: str | None = None,
    segment: str | None = None,
) -> AudienceChoice:
    """The audience as a command line gives it; a bad filter raises StartError."""
    ids, mails = list(profile_ids), list(emails)
    if file is not None:
        listed = read_audience_file(file)
        ids += listed.profile_ids
        mails += listed.emails
    try:
        predicates = [parse_where(text) for text in where]
    except ValueError as error:
        raise StartError(str(error)) from None
    return AudienceChoice(ids, mails, predicates, app, segment)


def journey_file(source: str) -> Path | None:
    """The journey file ``source`` names, or None for a stored journey's id (a slug: no
    dot, no slash)."""
    path = Path(source)
    return path if path.suffix or len(path.parts) > 1 else None
