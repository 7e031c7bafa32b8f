"""FCM over HTTP/1.1, chosen by ALPN on the same port as HTTP/2, as Google's endpoint serves
both: ``requests`` (pyfcm), firebase-admin's synchronous ``messaging.send()`` and httpx without
h2. The simulators run on the test's event loop, so blocking clients run in a thread."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import h11
import httpx
import pytest
import requests
from firebase_admin import App, messaging

from tests.sim.conftest import FCM_TOKEN, AppFactory, fcm_token
from tidings.sim import Answer, Scenario, Simulators


def send_url(sims: Simulators, project: str = "demo-project") -> str:
    return f"{sims.fcm_endpoint}/v1/projects/{project}/messages:send"


def bearer(app: App) -> dict[str, str]:
    return {"authorization": f"Bearer {app.credential.get_access_token().access_token}"}


def message(token: str, tracking_id: str) -> dict[str, Any]:
    return {"message": {"token": token, "data": {"trackingId": tracking_id}}}


async def post_with_requests(
    sims: Simulators, app: App, body: dict[str, Any], timeout_s: float = 10
) -> requests.Response:
    return await asyncio.to_thread(
        requests.post,
        send_url(sims),
        json=body,
        headers=bearer(app),
        verify=str(sims.ca_file),
        timeout=timeout_s,
    )


async def test_requests_speaks_http1_and_is_answered_as_over_http2(
    sims: Simulators, fcm_app: AppFactory
) -> None:
    app = fcm_app()
    response = await post_with_requests(sims, app, message(FCM_TOKEN, "over-h1"))
    assert response.raw.version == 11
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    assert response.json()["name"].startswith("projects/demo-project/messages/0:")
    [record] = sims.fcm.accepted(tracking_id="over-h1")
    assert record.message_id == response.json()["name"]
    refused = await post_with_requests(sims, app, message("abc", "bad-token"))
    assert refused.status_code == 400
    violation = refused.json()["error"]["details"][1]["fieldViolations"][0]
    assert violation["field"] == "message.token"


async def test_firebase_admin_synchronous_send(
    sims: Simulators, fcm_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync path: requests through google-auth's AuthorizedSession, at the URL
    configure_fcm_app sets, trusting the simulators' CA."""
    app = fcm_app("sync-project", fresh=True)
    # requests takes its CA bundle from the environment before the session's own setting.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(sims.ca_file))
    session = messaging._get_messaging_service(app)._client.session
    # The SDK's own retries (with backoff) would only hide a failure here.
    session.mount("https://", requests.adapters.HTTPAdapter(max_retries=0))
    gone = fcm_token("sync-gone")
    sims.fcm.mark_unregistered([gone])

    def send(token: str) -> str:
        name: str = messaging.send(
            messaging.Message(fid=token, data={"trackingId": "sync"}), app=app
        )
        return name

    name = await asyncio.to_thread(send, FCM_TOKEN)
    assert name.startswith("projects/sync-project/messages/0:")
    with pytest.raises(messaging.UnregisteredError):
        await asyncio.to_thread(send, gone)
    assert [(r.status, r.reason) for r in sims.fcm.records(tracking_id="sync")] == [
        (200, None),
        (404, "UNREGISTERED"),
    ]


async def test_alpn_chooses_the_protocol_on_one_port(sims: Simulators, fcm_app: AppFactory) -> None:
    app = fcm_app()
    ctx = ssl.create_default_context(cafile=str(sims.ca_file))
    for http2, version in ((False, "HTTP/1.1"), (True, "HTTP/2")):
        async with httpx.AsyncClient(http2=http2, verify=ctx) as client:
            answers = [
                await client.post(
                    send_url(sims), json=message(FCM_TOKEN, version), headers=bearer(app)
                )
                for _ in range(3)  # kept alive between requests
            ]
        assert {(a.http_version, a.status_code) for a in answers} == {(version, 200)}
    assert len(sims.fcm.accepted(tracking_id="HTTP/1.1")) == 3


async def open_http1(sims: Simulators) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    ctx = ssl.create_default_context(cafile=str(sims.ca_file))
    ctx.set_alpn_protocols(["http/1.1"])
    host, port = sims.fcm_endpoint.removeprefix("https://").rsplit(":", 1)
    return await asyncio.open_connection(
        host, int(port), ssl=ctx, server_hostname="fcm.googleapis.com"
    )


async def read_responses(reader: asyncio.StreamReader, count: int) -> list[tuple[int, bytes]]:
    """Parse ``count`` responses with h11, which tracks a request per response: it is told
    of a stand-in request before each (the real ones were written raw, pipelined)."""
    client = h11.Connection(h11.CLIENT)
    answers: list[tuple[int, bytes]] = []
    status, body = 0, b""

    def stand_in() -> None:
        client.send(h11.Request(method="POST", target="/", headers=[("host", "x")]))
        client.send(h11.EndOfMessage())

    stand_in()
    while len(answers) < count:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(await asyncio.wait_for(reader.read(65536), 10))
        elif isinstance(event, h11.Response):
            status, body = event.status_code, b""
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            answers.append((status, body))
            if len(answers) < count:
                client.start_next_cycle()
                stand_in()
        elif isinstance(event, h11.ConnectionClosed):
            break
    return answers


def raw_post(app: App, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    head = (
        "POST /v1/projects/demo-project/messages:send HTTP/1.1\r\n"
        "host: fcm.googleapis.com\r\n"
        f"authorization: {bearer(app)['authorization']}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


async def test_pipelined_requests_are_answered_in_order(
    sims: Simulators, fcm_app: AppFactory
) -> None:
    app = fcm_app()
    sims.fcm.set_scenario(Scenario(scripted={fcm_token("slow"): [Answer(latency_ms=300)]}))
    reader, writer = await open_http1(sims)
    try:
        writer.write(
            raw_post(app, message(fcm_token("slow"), "p1"))
            + raw_post(app, message(FCM_TOKEN, "p2"))
        )
        answers = await read_responses(reader, 2)
    finally:
        writer.close()
    assert [status for status, _ in answers] == [200, 200]
    assert [r.tracking_id for r in sims.fcm.accepted()] == ["p1", "p2"]
    assert [json.loads(b)["name"] for _, b in answers] == [
        r.message_id for r in sims.fcm.accepted()
    ]


async def test_a_malformed_request_gets_400_and_the_connection_closes(sims: Simulators) -> None:
    reader, writer = await open_http1(sims)
    try:
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        [(status, _)] = await read_responses(reader, 1)
        assert status == 400
        assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        writer.close()
    assert sims.fcm.records() == []


@pytest.mark.parametrize(
    ("action", "error", "fate"),
    [
        ("reset", requests.ConnectionError, (0, "reset")),
        ("goaway", requests.ConnectionError, (0, "goaway-refused")),
        ("refuse", requests.ConnectionError, (0, "refused")),
        ("answer_lost", requests.ConnectionError, (200, "answer_lost")),
        ("hang", requests.Timeout, (0, "hang")),
    ],
)
async def test_faults_over_http1(
    sims: Simulators,
    fcm_app: AppFactory,
    action: str,
    error: type[Exception],
    fate: tuple[int, str],
) -> None:
    device = fcm_token(f"h1-{action}")
    sims.fcm.set_scenario(Scenario(scripted={device: [Answer.model_validate({"action": action})]}))
    app = fcm_app()
    with pytest.raises(error):
        await post_with_requests(sims, app, message(device, action), timeout_s=1)
    assert [(r.status, r.reason) for r in sims.fcm.records(token=device)] == [fate]
    retried = await post_with_requests(sims, app, message(device, action))
    assert retried.status_code == 200
