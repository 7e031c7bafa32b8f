"""One imported row: a profile, its user mappings and its devices, checked before anything of
it is written. NDJSON rows are JSON objects of this shape; CSV rows name the same fields in
their header (see :data:`CSV_COLUMNS`)."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    TypeAdapter,
    ValidationError,
)

from tidings.api.types import (
    AppUserIdText,
    Attributes,
    LocaleTag,
    PhoneNumber,
    ProfileIdText,
    TimeZoneName,
)
from tidings.store.devices import InvalidToken, check_token
from tidings.store.models import Provider
from tidings.store.profiles import normalise_email

# an app's id, as apps are created with
AppSlug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
MAX_USERS = 50
# Plain ASCII addresses that email-validator (pydantic's EmailStr) accepts as they are: they
# skip its IDNA and Unicode checks, which would take most of an import's time; anything else
# goes through EmailStr, so the import accepts exactly what the profiles API accepts.
PLAIN_EMAIL = re.compile(
    r"^[A-Za-z0-9_%+-]{1,64}(?:\.[A-Za-z0-9_%+-]{1,64})*@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,63})$"
)
_EMAIL = TypeAdapter(EmailStr)


def _email(value: str) -> str:
    plain = PLAIN_EMAIL.match(value)
    if (
        plain is not None
        and len(value) <= 254
        and len(value.partition("@")[0]) <= 64
        and "--" not in value.partition("@")[2]
        and plain.group(1).lower() not in SPECIAL_USE_DOMAIN_NAMES
    ):
        return value
    return _EMAIL.validate_python(value)


Email = Annotated[str, Field(max_length=320), AfterValidator(_email)]
MAX_DEVICES = 20

CSV_FIELDS = ("id", "email", "phone", "timezone", "locale", "attributes")
CSV_DEVICE_FIELDS = ("device.app", "device.provider", "device.token", "device.environment")
CSV_COLUMNS = (
    "id, email, phone, timezone, locale, attributes (a JSON object), attributes.NAME (a text "
    "attribute), users.APP (the app's user id), device.app, device.provider, device.token, "
    "device.environment"
)


class ImportDevice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app: AppSlug
    provider: Provider
    token: Annotated[str, Field(min_length=1, max_length=4096)]
    environment: Literal["production", "sandbox"] | None = None


class ImportRow(BaseModel):
    """A profile (every personal field: absent ones are emptied), the app user ids that map
    to it (by app) and devices registered to it."""

    model_config = ConfigDict(extra="forbid")

    id: ProfileIdText
    email: Email | None = None
    phone: PhoneNumber | None = None
    timezone: TimeZoneName | None = None
    locale: LocaleTag | None = None
    attributes: Attributes = Field(default_factory=dict)
    users: dict[AppSlug, AppUserIdText] = Field(default_factory=dict, max_length=MAX_USERS)
    devices: list[ImportDevice] = Field(default_factory=list, max_length=MAX_DEVICES)


@dataclass(frozen=True)
class RowError:
    line: int
    field: str | None
    message: str


@dataclass(frozen=True)
class CheckedRow:
    """A row that passed every check of its own; ``devices`` hold checked tokens."""

    line: int
    row: ImportRow

    @property
    def keys(self) -> set[tuple[str, ...]]:
        """What another row of the same chunk may not also write (it waits for the next)."""
        keys: set[tuple[str, ...]] = {("id", self.row.id)}
        if self.row.email is not None:
            keys.add(("email", self.row.email))
        if self.row.phone is not None:
            keys.add(("phone", self.row.phone))
        keys.update(("user", app, user) for app, user in self.row.users.items())
        keys.update(("device", d.app, d.token) for d in self.row.devices)
        return keys


class CsvHeaderError(ValueError):
    """The CSV header names a column tidings does not know, or lacks ``id``."""


def csv_header(text: str) -> list[str]:
    [columns] = list(csv.reader([text])) or [[]]
    columns = [c.strip() for c in columns]
    unknown = [
        c
        for c in columns
        if c not in CSV_FIELDS
        and c not in CSV_DEVICE_FIELDS
        and not (c.startswith("attributes.") and len(c) > len("attributes."))
        and not (c.startswith("users.") and len(c) > len("users."))
    ]
    if unknown:
        raise CsvHeaderError(
            f"unknown column {unknown[0]!r}: the columns are {CSV_COLUMNS}", unknown[0]
        )
    if "id" not in columns:
        raise CsvHeaderError("the header has no id column", "id")
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise CsvHeaderError(f"column {repeated[0]!r} is given twice", repeated[0])
    return columns


def _from_csv(columns: list[str], text: str) -> dict[str, Any] | RowError:
    """The CSV record as the NDJSON object it stands for (empty cells are absent)."""
    cells = next(csv.reader([text]), [])
    if len(cells) != len(columns):
        return RowError(0, None, f"{len(cells)} cells where the header has {len(columns)}")
    raw: dict[str, Any] = {}
    device: dict[str, str] = {}
    for column, cell in zip(columns, cells, strict=True):
        if cell == "":
            continue
        if column == "attributes":
            try:
                value = json.loads(cell)
            except ValueError:
                return RowError(0, column, "is not JSON: write a JSON object")
            if not isinstance(value, dict):
                return RowError(0, column, "is not a JSON object")
            raw.setdefault("attributes", {}).update(value)
        elif column.startswith("attributes."):
            raw.setdefault("attributes", {})[column.removeprefix("attributes.")] = cell
        elif column.startswith("users."):
            raw.setdefault("users", {})[column.removeprefix("users.")] = cell
        elif column.startswith("device."):
            device[column.removeprefix("device.")] = cell
        else:
            raw[column] = cell
    if device:
        raw["devices"] = [device]
    return raw


def _field(loc: tuple[int | str, ...], csv_rows: bool) -> str | None:
    if not loc:
        return None
    if csv_rows and loc[0] == "devices":
        return "device." + ".".join(str(p) for p in loc[2:]) if len(loc) > 2 else "device"
    return ".".join(str(p) for p in loc)


def check_row(line: int, text: str, columns: list[str] | None) -> CheckedRow | RowError:
    """A record's text as a checked row, or the first problem found in it (with its field,
    as the header or the JSON names it). ``columns``: the CSV header; None for NDJSON."""
    if columns is not None:
        raw: Any = _from_csv(columns, text)
        if isinstance(raw, RowError):
            return RowError(line, raw.field, raw.message)
    else:
        try:
            raw = json.loads(text)
        except ValueError as error:
            return RowError(line, None, f"is not JSON: {error}")
        if not isinstance(raw, dict):
            return RowError(line, None, "is not a JSON object")
    try:
        row = ImportRow.model_validate(raw)
    except ValidationError as error:
        first = error.errors(include_input=False, include_url=False)[0]
        field = _field(tuple(first["loc"]), columns is not None)
        return RowError(line, field, first["msg"])
    # the row was validated just now and nothing else holds it: its checked values replace
    # the raw ones in place (a model_copy per row took a third of an import's CPU)
    for index, device in enumerate(row.devices):
        try:
            device.token = check_token(device.provider, device.token)
        except InvalidToken as problem:
            field = "device.token" if columns is not None else f"devices.{index}.token"
            return RowError(line, field, str(problem))
    row.email = normalise_email(row.email)
    return CheckedRow(line, row)
