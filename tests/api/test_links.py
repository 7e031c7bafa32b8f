"""Tracked links: a push's `link` is a signed redirect through tidings that records the click
once; `originalLink` stays raw; a link tidings did not sign is refused and records nothing."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from sqlmodel import select
from temporalio.client import Client

from tests.api.conftest import Api, sent_push
from tests.harness import app_credentials, make_settings, real_stack, unique_ids
from tidings.journeys import parse_definition
from tidings.push.links import KEY_PURPOSE, LinkSigner, link_tracking, tracked_link
from tidings.push.message import PushMessage, apns_payload, size_problem
from tidings.runs.start import start_run
from tidings.sim import Simulators
from tidings.store.models import Interaction

PUBLIC = "https://push.example.com"
LINK = "https://shop.example.com/sale?item=42&colour=r%C3%A9d#top"
TRACKING = "4f1c7a52-8f6e-5b0e-9a51-2f0c3f6d9e10"


def signer(public_url: str | None = PUBLIC) -> LinkSigner:
    return LinkSigner(b"k" * 32, public_url)


def test_a_tracked_link_carries_the_link_and_a_signature_over_it() -> None:
    tracked = signer().tracked(TRACKING, LINK)
    parts = urlsplit(tracked)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{PUBLIC}/l/{TRACKING}"
    query = parse_qs(parts.query)
    assert query["u"] == [LINK]  # back byte for byte, & = # and %XX included
    assert signer().verify(TRACKING, LINK, query["s"][0])
    assert not signer().verify(TRACKING, LINK + "x", query["s"][0])
    assert not signer().verify("another-push", LINK, query["s"][0])
    assert not LinkSigner(b"o" * 32, PUBLIC).verify(TRACKING, LINK, query["s"][0])
    # deep links open the app directly, and without a public URL nothing is tracked
    assert signer().tracked(TRACKING, "myapp://product/42") == "myapp://product/42"
    assert signer(None).tracked(TRACKING, LINK) == LINK


def test_the_push_data_carries_the_tracked_link_and_the_original() -> None:
    message = PushMessage(title="Sale", link=LINK)
    assert apns_payload(message, TRACKING)["link"] == LINK  # no tracking configured
    with link_tracking(signer()):
        data = apns_payload(message, TRACKING)
        assert data["link"] == tracked_link(TRACKING, LINK)
        assert data["link"].startswith(f"{PUBLIC}/l/{TRACKING}?u=")
        assert data["originalLink"] == LINK
        assert data["trackingId"] == TRACKING
    assert apns_payload(message, TRACKING)["link"] == LINK  # restored on exit


def test_the_size_check_counts_the_tracked_link() -> None:
    """The size check runs on the rendered payload: tracking wraps the link (about a hundred
    bytes more), so a payload just under the limit with raw links is over it with a tracked
    one, and is refused before any send."""
    long_link = "https://shop.example.com/" + "a" * 1600
    message = PushMessage(title="t", body="b" * 190, link=long_link)
    assert size_problem(message) is None
    with link_tracking(signer()):
        problem = size_problem(message)
    assert problem is not None
    assert "4096-byte limit" in problem


async def follow(api: Api, tracked: str) -> tuple[int, str | None]:
    parts = urlsplit(tracked)
    async with api.client(None) as browser:  # no API key: a device follows the link
        answer = await browser.get(f"{parts.path}?{parts.query}")
    return answer.status_code, answer.headers.get("location")


async def clicks(api: Api) -> list[Interaction]:
    async with api.db.read() as session:
        return list((await session.exec(select(Interaction))).all())


def api_signer(api: Api) -> LinkSigner:
    """The API's own signer, as a process with a public URL holds it."""
    return LinkSigner(api.app.state.tidings.secrets.derived_key(KEY_PURPOSE), PUBLIC)


async def test_following_a_link_twice_records_one_click_and_redirects(api: Api) -> None:
    await api.create_app("links")
    tracking = await sent_push(api.db, app_id="links", profile_id="p", node_id="sale")
    tracked = api_signer(api).tracked(tracking, LINK)
    first, second = await follow(api, tracked), await follow(api, tracked)
    assert first == second == (302, LINK)
    [row] = await clicks(api)
    assert (row.kind, row.status, row.source, row.node_id, row.profile_id) == (
        "clicked",
        "matched",
        "link",
        "sale",
        "p",
    )
    # the app reporting the same click through the API counts it once too
    again = await api.admin.post(
        "/v1/interactions", json={"tracking_id": tracking, "kind": "clicked"}
    )
    assert again.json()["duplicate"] is True


async def test_a_tampered_link_is_refused_and_records_nothing(api: Api) -> None:
    await api.create_app("links")
    tracking = await sent_push(api.db, app_id="links", profile_id="p")
    signature = api_signer(api).signature(tracking, LINK)
    async with api.client(None) as browser:
        for params in (
            {"u": "https://evil.example.net/", "s": signature},  # another target
            {"u": LINK, "s": signature[:-1] + ("A" if signature[-1] != "A" else "B")},
            {"u": LINK + "&more=1", "s": signature},
        ):
            answer = await browser.get(f"/l/{tracking}", params=params)
            assert answer.status_code == 400, params
            assert answer.json()["error"]["code"] == "bad_link_signature"
            assert "location" not in answer.headers
        other_push = await browser.get(
            "/l/00000000-0000-0000-0000-000000000000", params={"u": LINK, "s": signature}
        )
        assert other_push.status_code == 400
        # tidings signs web links only: a signature over another scheme is never honoured
        script = "javascript:alert(1)"
        scripted = await browser.get(
            f"/l/{tracking}", params={"u": script, "s": api_signer(api).signature(tracking, script)}
        )
        assert scripted.status_code == 400
        missing = await browser.get(f"/l/{tracking}", params={"u": LINK})
        assert missing.status_code == 422
    assert await clicks(api) == []


async def test_a_signed_link_of_an_unknown_push_still_redirects(api: Api) -> None:
    ghost = "11111111-2222-3333-4444-555555555555"
    status, target = await follow(api, api_signer(api).tracked(ghost, LINK))
    assert (status, target) == (302, LINK)
    [row] = await clicks(api)
    assert (row.tracking_id, row.status) == (ghost, "unmatched")  # kept for inspection


async def test_a_real_push_carries_a_tracked_link_that_records_the_click(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> None:
    settings = make_settings(tmp_path, database_url, sims, public_url="http://tidings.test")
    team, key_id, project = unique_ids()
    token = "ab" * 32
    async with real_stack(settings, temporal_client) as stack:
        body = {"id": "shop", "name": "Shop"} | app_credentials(
            sims, team_id=team, key_id=key_id, project_id=project
        )
        assert (await stack.http.post("/v1/apps", json=body)).status_code == 201
        await stack.http.post(
            "/v1/apps/shop/devices",
            json={"profile_id": "p", "create_profile": True, "provider": "apns", "token": token},
        )
        journey = parse_definition(
            {
                "id": "sale",
                "name": "Sale",
                "app": "shop",
                "nodes": [{"id": "hi", "type": "push", "content": {"body": "Sale!", "link": LINK}}],
            }
        )
        run = await start_run(temporal_client, stack.db, settings, journey, profile_ids=["p"])
        await run.handle.result()
        [sent] = sims.apns.accepted()
        assert sent.payload is not None
        assert sent.payload["originalLink"] == LINK
        tracked = str(sent.payload["link"])
        assert tracked.startswith(f"http://tidings.test/l/{sent.tracking_id}?")
        parts = urlsplit(tracked)
        for _ in range(2):
            answer = await stack.http.get(f"{parts.path}?{parts.query}")
            assert (answer.status_code, answer.headers["location"]) == (302, LINK)
        async with stack.db.read() as session:
            [row] = (await session.exec(select(Interaction))).all()
        assert (row.kind, row.status, row.node_id, row.tracking_id) == (
            "clicked",
            "matched",
            "hi",
            sent.tracking_id,
        )
