"""Bulk import (POST /v1/profiles/import): NDJSON and CSV, streamed, per-row errors, idempotent
upserts by profile id, no partial rows, bounded bodies."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from sqlmodel import col, select

from tests.api.conftest import Api
from tidings.imports.records import Record, RecordSplitter
from tidings.store.models import AppUserMapping, Device, Profile

NDJSON = {"Content-Type": "application/x-ndjson"}
CSV = {"Content-Type": "text/csv; charset=utf-8"}
TOKEN_A = "ab" * 32
TOKEN_B = "cd" * 32


def ndjson(*rows: object) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


async def _stored(api: Api) -> tuple[dict[str, Profile], dict[str, str], dict[str, str]]:
    async with api.db.read() as session:
        profiles = {p.id: p for p in (await session.exec(select(Profile))).all()}
        mappings = {
            m.app_user_id: m.profile_id for m in (await session.exec(select(AppUserMapping))).all()
        }
        devices = {d.token: d.profile_id for d in (await session.exec(select(Device))).all()}
    return profiles, mappings, devices


async def test_ndjson_rows_are_upserted_with_their_mappings_and_devices(api: Api) -> None:
    await api.create_app("shop", with_credentials=True)
    rows = [
        {
            "id": "ann",
            "email": "Ann@Example.com",
            "timezone": "Europe/Paris",
            "attributes": {"plan": "pro"},
            "users": {"shop": "u-ann"},
            "devices": [{"app": "shop", "provider": "apns", "token": TOKEN_A.upper()}],
        },
        {"id": "bob", "phone": "+33612345678", "users": {"shop": "u-bob"}},
    ]
    answer = await api.admin.post("/v1/profiles/import", content=ndjson(*rows), headers=NDJSON)
    assert answer.status_code == 200, answer.text
    assert answer.json() | {"errors": None} == {
        "rows": 2,
        "created": 2,
        "updated": 0,
        "failed": 0,
        "errors": None,
        "errors_truncated": False,
    }
    profiles, mappings, devices = await _stored(api)
    assert profiles["ann"].email == "ann@example.com"
    assert profiles["ann"].attributes == {"plan": "pro"}
    assert mappings == {"u-ann": "ann", "u-bob": "bob"}
    assert devices == {TOKEN_A: "ann"}

    # the same file again: every row an update, nothing new
    again = await api.admin.post("/v1/profiles/import", content=ndjson(*rows), headers=NDJSON)
    assert (again.json()["created"], again.json()["updated"]) == (0, 2)
    # a row replaces the profile's fields; the token and the app user move to the new profile
    moved = {
        "id": "cat",
        "users": {"shop": "u-ann"},
        "devices": [{"app": "shop", "provider": "apns", "token": TOKEN_A}],
    }
    replaced = {"id": "ann", "locale": "fr-FR"}
    answer = await api.admin.post(
        "/v1/profiles/import", content=ndjson(moved, replaced), headers=NDJSON
    )
    assert (answer.json()["created"], answer.json()["updated"]) == (1, 1)
    profiles, mappings, devices = await _stored(api)
    assert (profiles["ann"].email, profiles["ann"].locale, profiles["ann"].attributes) == (
        None,
        "fr-FR",
        {},
    )
    assert mappings["u-ann"] == "cat"
    assert devices == {TOKEN_A: "cat"}


async def test_a_row_with_a_problem_stores_nothing_of_itself(api: Api) -> None:
    await api.create_app("shop", with_credentials=True)
    await api.admin.put("/v1/profiles/owner", json={"email": "taken@example.com"})
    good = {"id": "good", "users": {"shop": "u-good"}}
    body = b"".join(
        [
            ndjson(good),
            b"{not json\n",
            ndjson(
                {
                    "id": "bad-token",
                    "users": {"shop": "u-1"},
                    "devices": [{"app": "shop", "provider": "apns", "token": "nothex"}],
                }
            ),
            ndjson({"id": "no-app", "users": {"nowhere": "u-2"}}),
            ndjson({"id": "taken", "email": "TAKEN@example.com", "users": {"shop": "u-3"}}),
            ndjson({"id": "bad-zone", "timezone": "Mars/Base"}),
            b"\n",
            ndjson({"id": "extra", "colour": "red"}),
            b"\xff\xfe\n",
            ndjson({"email": "no-id@example.com"}),
        ]
    )
    answer = await api.admin.post("/v1/profiles/import", content=body, headers=NDJSON)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["rows"], result["created"], result["failed"]) == (9, 1, 8)
    problems = {(e["line"], e["field"]) for e in result["errors"]}
    assert problems == {
        (2, None),
        (3, "devices.0.token"),
        (4, "users.nowhere"),
        (5, "email"),
        (6, "timezone"),
        (8, "colour"),
        (9, None),
        (10, "id"),
    }
    assert all(e["message"] for e in result["errors"])
    profiles, mappings, devices = await _stored(api)
    assert set(profiles) == {"owner", "good"}
    assert mappings == {"u-good": "good"}
    assert devices == {}


async def test_csv_with_bom_quoting_and_embedded_newlines(api: Api) -> None:
    await api.create_app("shop", with_credentials=True)
    body = (
        "\ufeffid,email,attributes.note,attributes,users.shop,device.app,device.provider,"
        "device.token\r\n"
        'ann,ann@example.com,"two\r\nlines, and a ""quote""","{""plan"": ""pro""}",u-ann,'
        f"shop,apns,{TOKEN_A}\r\n"
        "bob,,,,u-bob,,,\r\n"
        f"cat,,,,,shop,apns,zz\r\n"
        "dan,,too,few\r\n"
        f'"eve",,"",,,shop,fcm,{TOKEN_B}'
    ).encode()
    answer = await api.admin.post("/v1/profiles/import", content=body, headers=CSV)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["rows"], result["created"], result["failed"]) == (5, 3, 2)
    assert {(e["line"], e["field"]) for e in result["errors"]} == {(5, "device.token"), (6, None)}
    profiles, mappings, devices = await _stored(api)
    assert profiles["ann"].attributes == {"note": 'two\r\nlines, and a "quote"', "plan": "pro"}
    assert profiles["bob"].email is None
    assert mappings == {"u-ann": "ann", "u-bob": "bob"}
    assert devices == {TOKEN_A: "ann", TOKEN_B: "eve"}


async def test_a_header_or_a_body_it_cannot_read_is_refused_before_anything_is_stored(
    api: Api,
) -> None:
    unknown = await api.admin.post(
        "/v1/profiles/import", content=b"id,colour\nann,red\n", headers=CSV
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "invalid_header"
    assert "colour" in unknown.json()["error"]["message"]
    no_id = await api.admin.post("/v1/profiles/import", content=b"email\na@b.co\n", headers=CSV)
    assert no_id.status_code == 422
    json_body = await api.admin.post("/v1/profiles/import", json=[{"id": "x"}])
    assert json_body.status_code == 415
    assert json_body.json()["error"]["code"] == "unsupported_media_type"
    latin = await api.admin.post(
        "/v1/profiles/import",
        content=b"id\nx\n",
        headers={"Content-Type": "text/csv; charset=latin-1"},
    )
    assert latin.status_code == 415
    assert (await _stored(api))[0] == {}


async def test_only_the_admin_imports(api: Api) -> None:
    key = await api.create_app("shop")
    async with api.client(key) as backend:
        refused = await backend.post(
            "/v1/profiles/import", content=ndjson({"id": "x"}), headers=NDJSON
        )
    assert refused.status_code == 403


async def test_a_streamed_body_is_written_chunk_by_chunk_and_later_rows_win(api: Api) -> None:
    rows = [{"id": f"p{n:05d}", "attributes": {"n": n}} for n in range(5000)]
    # the same profile twice, and an email moving from one profile to another
    rows += [
        {"id": "p00001", "attributes": {"n": "last"}},
        {"id": "x", "email": "moving@example.com"},
        {"id": "x"},
        {"id": "y", "email": "moving@example.com"},
    ]

    async def streamed() -> AsyncIterator[bytes]:
        body = ndjson(*rows)
        for start in range(0, len(body), 7777):
            yield body[start : start + 7777]

    answer = await api.admin.post("/v1/profiles/import", content=streamed(), headers=NDJSON)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["created"], answer.json()["failed"]) == (5002, 0)
    async with api.db.read() as session:
        one = await session.get(Profile, "p00001")
        y = await session.get(Profile, "y")
        count = len((await session.exec(select(col(Profile.id)))).all())
    assert one is not None
    assert one.attributes == {"n": "last"}
    assert y is not None
    assert y.email == "moving@example.com"
    assert count == 5002


def test_records_are_cut_on_line_breaks_outside_quotes_and_bounded() -> None:
    splitter = RecordSplitter(csv=True, max_record_bytes=16)
    body = b'a,"b\nc"\r\n' + b"x" * 40 + b'\n"q""\n""",1\nlast'
    records: list[Record] = []
    for start in range(0, len(body), 3):
        records.extend(splitter.feed(body[start : start + 3]))
    records.extend(splitter.close())
    assert [(r.line, r.data, r.too_long) for r in records] == [
        (1, b'a,"b\nc"', False),
        (3, b"", True),
        (4, b'"q""\n""",1', False),
        (6, b"last", False),
    ]
