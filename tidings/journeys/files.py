"""Reading a journey file into plain data, the one way every command reads one.

A journey file is small, written by hand and read by the CLI, ``starter.py`` and the demo.
Two limits keep a hostile or broken file from costing more than its size:

- the file may be at most :data:`MAX_JOURNEY_FILE_BYTES` (256 KiB, far above any journey a
  designer writes);
- YAML aliases (``*name``) are refused: a few hundred bytes of nested aliases ("billion
  laughs") expand into billions of values once the definition is modelled or stored, and a
  journey has no use for them (anchors alone are harmless and left alone).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

MAX_JOURNEY_FILE_BYTES = 256 * 1024


class JourneyFileError(ValueError):
    """The file cannot be read as a journey's data; the message names the problem."""


class _JourneyYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases where the composer meets them (before any
    expansion happens)."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None,
                None,
                "YAML aliases (*name) are not allowed in a journey file: write the value out",
                event.start_mark,
            )
        return super().compose_node(parent, index)


def read_journey_data(path: Path) -> Any:
    """The file's data: JSON for a ``.json`` file, YAML otherwise."""
    text = _read_text(path)
    return parse_journey_text(text, json_text=path.suffix == ".json", source=str(path))


def parse_journey_text(text: str, *, json_text: bool = False, source: str = "journey") -> Any:
    """A journey's text as data, under the same limits as a file."""
    size = len(text.encode("utf-8"))
    if size > MAX_JOURNEY_FILE_BYTES:
        raise JourneyFileError(_too_large(source, size))
    try:
        if json_text:
            return json.loads(text)
        return yaml.load(text, Loader=_JourneyYamlLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        what = "; ".join(part for part in (error.context, error.problem) if part)
        raise JourneyFileError(f"{source}{where}: {what}") from None
    except yaml.YAMLError as error:
        raise JourneyFileError(f"{source}: {error}") from None
    except RecursionError:
        raise JourneyFileError(f"{source}: nested too deeply to be a journey") from None
    except ValueError as error:  # JSON syntax, or a number too long to convert
        raise JourneyFileError(f"{source}: {error}") from None


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_JOURNEY_FILE_BYTES + 1)
    except OSError as error:
        raise JourneyFileError(f"{path}: {error.strerror or error}") from None
    if len(raw) > MAX_JOURNEY_FILE_BYTES:
        raise JourneyFileError(_too_large(str(path), None))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise JourneyFileError(
            f"{path}: is not UTF-8 text (byte {error.start}: {error.reason})"
        ) from None


def _too_large(source: str, size: int | None) -> str:
    measured = f" ({size} bytes)" if size is not None else ""
    return (
        f"{source}: too large{measured}: a journey file may be at most "
        f"{MAX_JOURNEY_FILE_BYTES // 1024} KiB ({MAX_JOURNEY_FILE_BYTES} bytes)"
    )
