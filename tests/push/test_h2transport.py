"""H2Transport against real HTTP/2 servers over TLS sockets.

Frame-level faults come from the scripted server in ``h2script``; one test runs firebase-admin
end to end against the FCM simulator. Each fault test checks the ledger: a request the client
was told was not processed never reached a server that could process it, and a request whose
answer was lost, or that succeeded, was processed exactly once.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import ssl
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import firebase_admin
import httpx
import pytest
from firebase_admin import credentials, exceptions, messaging
from h2.connection import H2Connection
from h2.errors import ErrorCodes

from tests.harness import unique_ids
from tests.push.h2script import Script, ScriptedServer, Seen, ServerConnection
from tidings.push.adapters import OAuthFlow, close_fcm_app
from tidings.push.h2transport import AnswerLost, H2Transport, RequestNotProcessed
from tidings.sim import Answer, Scenario, Simulators
from tidings.sim.tls import CertificateAuthority

Outcome = httpx.Response | BaseException


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("h2-ca"))


def client_for(
    server: ScriptedServer, timeout: float = 5.0, **options: object
) -> tuple[httpx.AsyncClient, H2Transport]:
    transport = H2Transport(ssl_context=server.client_context(), **options)  # type: ignore[arg-type]
    client = httpx.AsyncClient(transport=transport, base_url=server.url, timeout=timeout)
    return client, transport


async def post(
    client: httpx.AsyncClient,
    request_id: str,
    body: bytes = b"{}",
    timeouts: httpx.Timeout | None = None,
) -> httpx.Response:
    return await client.post(
        "/send",
        content=body,
        headers={"x-request-id": request_id},
        timeout=timeouts if timeouts is not None else httpx.USE_CLIENT_DEFAULT,
    )


async def post_all(client: httpx.AsyncClient, ids: list[str]) -> dict[str, Outcome]:
    results = await asyncio.gather(*(post(client, i) for i in ids), return_exceptions=True)
    return dict(zip(ids, results, strict=True))


def check_ledger(server: ScriptedServer, outcomes: dict[str, Outcome]) -> None:
    processed = Counter(server.processed())
    for request_id, outcome in outcomes.items():
        if isinstance(outcome, httpx.Response):
            assert outcome.text == request_id
            assert processed[request_id] == 1, f"{request_id} answered but processed {processed}"
        elif isinstance(outcome, AnswerLost):
            assert processed[request_id] == 1, f"{request_id}: {outcome.reason}"
        elif isinstance(outcome, RequestNotProcessed):
            assert processed[request_id] == 0, f"{request_id} processed: {outcome.reason}"
        else:
            raise AssertionError(f"{request_id}: unexpected {outcome!r}")
    assert not server.protocol_errors


async def until(condition: Callable[[], object], within_s: float = 5.0) -> None:
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def on_first_connection(in_flight: int, act: Callable[[ServerConnection], None]) -> Script:
    """A script: the first connection holds requests until ``in_flight`` are waiting, then
    ``act``s; later connections answer at once."""

    def script(conn: ServerConnection, seen: Seen) -> None:
        if conn.index > 0:
            conn.answer(seen.stream_id)
        elif len(conn.in_flight) == in_flight:
            act(conn)

    return script


def conn_of(response: Outcome) -> int:
    assert isinstance(response, httpx.Response), response
    return int(response.headers["x-conn"])


# -- normal operation ------------------------------------------------------------------------


async def test_many_requests_stay_within_the_servers_stream_limit(ca: CertificateAuthority) -> None:
    def slow(conn: ServerConnection, seen: Seen) -> None:
        conn.answer(seen.stream_id, delay=0.02)

    async with ScriptedServer(ca, slow, max_streams=8) as server:
        client, _ = client_for(server, max_connections=2)
        async with client:
            outcomes = await post_all(client, [f"r{n}" for n in range(60)])
    assert all(isinstance(o, httpx.Response) and o.status_code == 200 for o in outcomes.values())
    assert all(
        o.http_version == "HTTP/2" for o in outcomes.values() if isinstance(o, httpx.Response)
    )
    assert len(server.connections) <= 2
    assert server.open_streams_seen() <= 8
    check_ledger(server, outcomes)


async def test_sni_and_certificate_follow_the_urls_host(ca: CertificateAuthority) -> None:
    async with ScriptedServer(ca) as server:
        transport = H2Transport(ssl_context=server.client_context())
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.post(
                f"https://localhost:{server.port}/send", headers={"x-request-id": "a"}
            )
            assert response.text == "a"
        assert server.connections[0].sni == "localhost"
        # the default context trusts the public roots only: the test CA is refused
        async with httpx.AsyncClient(transport=H2Transport(), base_url=server.url) as client:
            with pytest.raises(RequestNotProcessed) as refused:
                await post(client, "b")
    assert "CERTIFICATE_VERIFY_FAILED" in refused.value.reason
    assert [s.request_id for s in server.completed] == ["a"]


async def test_new_connections_open_when_every_stream_is_busy(ca: CertificateAuthority) -> None:
    def three_at_once(conn: ServerConnection, seen: Seen) -> None:
        held = [(c, s) for c in conn.server.connections for s in c.in_flight]
        if len(held) >= 3:
            for c, stream_id in held:
                c.answer(stream_id)

    async with ScriptedServer(ca, three_at_once, max_streams=1) as server:
        client, _ = client_for(server, max_connections=3)
        async with client:
            outcomes = await post_all(client, [f"r{n}" for n in range(6)])
    assert all(isinstance(o, httpx.Response) for o in outcomes.values()), outcomes
    assert len(server.connections) == 3  # never more than max_connections
    assert server.open_streams_seen() == 1
    check_ledger(server, outcomes)


async def test_a_raised_stream_limit_is_used(ca: CertificateAuthority) -> None:
    def raise_then_hold(conn: ServerConnection, seen: Seen) -> None:
        if len(conn.stream_ids) == 1:
            conn.set_max_streams(5)
        if len(conn.in_flight) == 5:  # only if the client used the raised limit
            for stream_id in list(conn.in_flight):
                conn.answer(stream_id)

    async with ScriptedServer(ca, raise_then_hold, max_streams=1) as server:
        client, _ = client_for(server, max_connections=1)
        async with client:
            outcomes = await post_all(client, [f"r{n}" for n in range(5)])
    assert all(isinstance(o, httpx.Response) for o in outcomes.values()), outcomes
    assert len(server.connections) == 1
    assert server.connections[0].max_open == 5
    check_ledger(server, outcomes)


async def test_a_lowered_stream_limit_is_honoured(ca: CertificateAuthority) -> None:
    def lower_first(conn: ServerConnection, seen: Seen) -> None:
        if seen.request_id == "first":
            conn.set_max_streams(2)  # sent before the answer: the client knows it by then
            conn.answer(seen.stream_id)
        else:
            conn.answer(seen.stream_id, delay=0.02)

    async with ScriptedServer(ca, lower_first, max_streams=10) as server:
        client, _ = client_for(server, max_connections=1)
        async with client:
            first = await post(client, "first")
            outcomes = await post_all(client, [f"r{n}" for n in range(8)])
    assert first.text == "first"
    assert all(isinstance(o, httpx.Response) for o in outcomes.values()), outcomes
    assert len(server.connections) == 1
    assert server.connections[0].max_open == 2
    check_ledger(server, outcomes)


async def test_bodies_larger_than_the_flow_control_windows(ca: CertificateAuthority) -> None:
    answer = os.urandom(3_000_000)  # above the client's 1 MiB stream window

    def big_answer(conn: ServerConnection, seen: Seen) -> None:
        conn.answer(seen.stream_id, body=answer)

    async with ScriptedServer(ca, big_answer, window=16_384) as server:
        client, _ = client_for(server, max_response_bytes=4_000_000)
        async with client:
            sent = {}
            # six answers: 18 MB, beyond the client's 16 MiB connection window
            for n in range(6):
                sent[f"r{n}"] = os.urandom(300_000)  # far above the server's 16 KiB window
                response = await post(client, f"r{n}", body=sent[f"r{n}"])
                assert response.content == answer
    assert {s.request_id: s.body for s in server.completed} == sent
    assert len(server.connections) == 1


async def test_idle_connections_close_after_the_keepalive_expiry(
    ca: CertificateAuthority,
) -> None:
    async with ScriptedServer(ca) as server:
        client, _ = client_for(server, keepalive_expiry=0.2)
        async with client:
            assert (await post(client, "a")).text == "a"
            first = server.connections[0]
            await until(lambda: first.lost.done())
            assert first.client_goaway  # closed with GOAWAY, not dropped
            assert (await post(client, "b")).text == "b"
    assert len(server.connections) == 2


# -- GOAWAY ----------------------------------------------------------------------------------


async def test_graceful_goaway_lets_streams_at_or_below_the_last_id_finish(
    ca: CertificateAuthority,
) -> None:
    def goaway_at_five(conn: ServerConnection) -> None:
        conn.goaway(ErrorCodes.NO_ERROR, last_stream_id=5)
        for stream_id in list(conn.in_flight):
            conn.answer(stream_id, delay=0.05)  # answered after the GOAWAY

    async with ScriptedServer(ca, on_first_connection(6, goaway_at_five)) as server:
        client, _ = client_for(server, max_connections=1)
        async with client:
            outcomes = await post_all(client, [f"r{n}" for n in range(6)])
            first = server.connections[0]
            await until(lambda: first.lost.done())  # the client closes it once drained
    assert all(isinstance(o, httpx.Response) for o in outcomes.values()), outcomes
    stream_of = {s.request_id: s.stream_id for s in server.completed if s.conn == 0}
    for request_id, outcome in outcomes.items():
        assert conn_of(outcome) == (0 if stream_of[request_id] <= 5 else 1), request_id
    assert sorted(first.stream_ids) == [1, 3, 5, 7, 9, 11]  # no stream opened after GOAWAY
    assert first.client_goaway
    check_ledger(server, outcomes)


async def test_goaway_with_last_stream_id_zero_resends_everything(
    ca: CertificateAuthority,
) -> None:
    def goaway_zero(conn: ServerConnection) -> None:
        conn.goaway(ErrorCodes.NO_ERROR, last_stream_id=0)

    async with ScriptedServer(ca, on_first_connection(3, goaway_zero)) as server:
        client, _ = client_for(server)
        async with client:
            outcomes = await post_all(client, ["a", "b", "c"])
    assert [conn_of(o) for o in outcomes.values()] == [1, 1, 1]
    check_ledger(server, outcomes)


async def test_goaway_with_an_error_then_close_loses_the_answers_it_kept(
    ca: CertificateAuthority,
) -> None:
    def goaway_and_close(conn: ServerConnection) -> None:
        conn.goaway(ErrorCodes.INTERNAL_ERROR, last_stream_id=3, close=True)

    async with ScriptedServer(ca, on_first_connection(3, goaway_and_close)) as server:
        client, _ = client_for(server)
        async with client:
            outcomes = await post_all(client, ["a", "b", "c"])
    stream_of = {s.request_id: s.stream_id for s in server.completed if s.conn == 0}
    for request_id, outcome in outcomes.items():
        if stream_of[request_id] <= 3:
            assert isinstance(outcome, AnswerLost), outcome
            assert outcome.reason.startswith(
                "GOAWAY INTERNAL_ERROR last_stream_id=3, then connection"
            )
        else:
            assert conn_of(outcome) == 1  # resent at once, answered on a new connection
    check_ledger(server, outcomes)


# -- stream resets ---------------------------------------------------------------------------


async def test_refused_streams_are_resent_on_another_connection(
    ca: CertificateAuthority,
) -> None:
    def refuse_on_first(conn: ServerConnection, seen: Seen) -> None:
        if conn.index == 0:
            conn.reset(seen.stream_id, ErrorCodes.REFUSED_STREAM)
        else:
            conn.answer(seen.stream_id)

    async with ScriptedServer(ca, refuse_on_first) as server:
        client, _ = client_for(server, max_connections=2)
        async with client:
            outcomes = await post_all(client, ["a", "b", "c"])
    assert [conn_of(o) for o in outcomes.values()] == [1, 1, 1]
    assert Counter(s.request_id for s in server.completed) == {"a": 2, "b": 2, "c": 2}
    check_ledger(server, outcomes)


async def test_a_request_refused_every_time_is_reported_not_processed(
    ca: CertificateAuthority,
) -> None:
    def refuse(conn: ServerConnection, seen: Seen) -> None:
        conn.reset(seen.stream_id, ErrorCodes.REFUSED_STREAM)

    async with ScriptedServer(ca, refuse) as server:
        client, _ = client_for(server, max_resends=3)
        async with client:
            outcomes = await post_all(client, ["a"])
    error = outcomes["a"]
    assert isinstance(error, RequestNotProcessed)
    assert (error.reason, error.resends) == ("stream refused (REFUSED_STREAM)", 3)
    assert len(server.completed) == 4  # the first send and three resends, all refused
    check_ledger(server, outcomes)


async def test_a_stream_reset_after_the_request_was_read_loses_the_answer(
    ca: CertificateAuthority,
) -> None:
    def fail_bad(conn: ServerConnection, seen: Seen) -> None:
        if seen.request_id == "bad":
            conn.reset(seen.stream_id, ErrorCodes.INTERNAL_ERROR)
        else:
            conn.answer(seen.stream_id)

    async with ScriptedServer(ca, fail_bad) as server:
        client, _ = client_for(server)
        async with client:
            outcomes = await post_all(client, ["bad", "good"])
    assert isinstance(outcomes["bad"], AnswerLost)
    assert outcomes["bad"].reason == "stream reset INTERNAL_ERROR"
    assert [s.request_id for s in server.completed].count("bad") == 1  # never resent
    check_ledger(server, outcomes)


# -- lost connections and timeouts -----------------------------------------------------------


async def test_a_tcp_abort_loses_the_answers_in_flight(ca: CertificateAuthority) -> None:
    async with ScriptedServer(ca, on_first_connection(3, ServerConnection.abort)) as server:
        client, _ = client_for(server)
        async with client:
            outcomes = await post_all(client, ["a", "b", "c"])
            after = await post(client, "d")
    for outcome in outcomes.values():
        assert isinstance(outcome, AnswerLost), outcome
        assert outcome.reason.startswith("connection"), outcome.reason
    assert conn_of(after) == 1
    check_ledger(server, {**outcomes, "d": after})


async def test_a_connection_lost_before_the_request_was_whole_resends_it(
    ca: CertificateAuthority,
) -> None:
    # The first connection never acknowledges DATA: a body above its window stays unsent.
    async with ScriptedServer(ca, window=1_000, ack=lambda index: index) as server:
        client, _ = client_for(server)
        async with client:
            sending = asyncio.ensure_future(post(client, "big", body=os.urandom(50_000)))
            await until(lambda: server.connections and server.connections[0].stream_ids)
            server.connections[0].abort()
            response = await sending
    assert (response.text, conn_of(response)) == ("big", 1)
    check_ledger(server, {"big": response})


async def test_a_write_timeout_while_the_window_stays_shut_is_not_processed(
    ca: CertificateAuthority,
) -> None:
    async with ScriptedServer(ca, window=1_000, ack=0) as server:
        client, _ = client_for(server, max_resends=1)
        async with client:
            timeout = httpx.Timeout(5.0, write=0.2)
            with pytest.raises(RequestNotProcessed) as failed:
                await post(client, "big", body=os.urandom(50_000), timeouts=timeout)
            await until(lambda: len(server.client_resets) == 2)
    assert (failed.value.reason, failed.value.resends) == ("write timeout", 1)
    assert not server.completed
    assert {code for _, _, code in server.client_resets} == {ErrorCodes.CANCEL}


async def test_an_unanswered_stream_times_out_and_is_cancelled(ca: CertificateAuthority) -> None:
    def never_answer_hang(conn: ServerConnection, seen: Seen) -> None:
        if seen.request_id != "hang":
            conn.answer(seen.stream_id)

    async with ScriptedServer(ca, never_answer_hang, max_streams=1) as server:
        client, _ = client_for(server, max_connections=1)
        async with client:
            hang = asyncio.ensure_future(
                post(client, "hang", timeouts=httpx.Timeout(5.0, read=0.3))
            )
            await until(lambda: server.completed)
            # the only stream is taken: "next" waits for it to be given up
            after = await post(client, "next")
            with pytest.raises(AnswerLost) as lost:
                await hang
    assert lost.value.reason == "timeout"
    assert server.client_resets == [(0, 1, ErrorCodes.CANCEL)]
    assert conn_of(after) == 0
    check_ledger(server, {"hang": lost.value, "next": after})


async def test_waiting_longer_than_the_pool_timeout_is_not_processed(
    ca: CertificateAuthority,
) -> None:
    def hold(conn: ServerConnection, seen: Seen) -> None:
        pass

    async with ScriptedServer(ca, hold, max_streams=1) as server:
        client, _ = client_for(server, max_connections=1)
        async with client:
            held = asyncio.ensure_future(post(client, "held"))
            await until(lambda: server.completed)
            with pytest.raises(RequestNotProcessed) as waited:
                await post(client, "queued", timeouts=httpx.Timeout(5.0, pool=0.2))
            held.cancel()
    assert waited.value.reason == "pool timeout: no stream came free"
    assert [s.request_id for s in server.completed] == ["held"]


async def test_a_failed_connect_is_not_processed(ca: CertificateAuthority) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    transport = H2Transport(ssl_context=ssl.create_default_context(cafile=str(ca.ca_file)))
    async with httpx.AsyncClient(transport=transport) as client:
        outcomes = await asyncio.gather(
            *(client.post(f"https://127.0.0.1:{port}/send") for _ in range(3)),
            return_exceptions=True,
        )
    for outcome in outcomes:
        assert isinstance(outcome, RequestNotProcessed), outcome
        assert outcome.reason.startswith("connect failed"), outcome.reason


async def test_aclose_fails_each_request_by_what_the_server_could_have_seen(
    ca: CertificateAuthority,
) -> None:
    def hold(conn: ServerConnection, seen: Seen) -> None:
        pass

    async with ScriptedServer(ca, hold, max_streams=2, window=1_000, ack=0) as server:
        client, transport = client_for(server, max_connections=1)
        sent = asyncio.ensure_future(post(client, "sent"))
        await until(lambda: server.completed)
        blocked = asyncio.ensure_future(post(client, "blocked", body=os.urandom(50_000)))
        await until(lambda: len(server.connections[0].stream_ids) == 2)
        queued = asyncio.ensure_future(post(client, "queued"))
        await asyncio.sleep(0.05)
        await transport.aclose()
        outcomes = dict(
            zip(
                ["sent", "blocked", "queued"],
                await asyncio.gather(sent, blocked, queued, return_exceptions=True),
                strict=True,
            )
        )
        await client.aclose()
    assert isinstance(outcomes["sent"], AnswerLost)
    assert isinstance(outcomes["blocked"], RequestNotProcessed)
    assert isinstance(outcomes["queued"], RequestNotProcessed)
    assert {o.reason for o in outcomes.values()} == {"transport closed"}  # type: ignore[union-attr]
    check_ledger(server, outcomes)


def test_h2_still_has_what_the_transport_replaces() -> None:
    """The transport keeps h2 open after a GOAWAY and counts open streams itself; these fail
    loudly if an upgrade of h2 moves what that relies on."""
    assert "self._receive_goaway_frame" in inspect.getsource(H2Connection.__init__)
    assert "self.open_outbound_streams" in inspect.getsource(H2Connection.send_headers)
    # forget() does for one stream what h2's walk over all of them does
    walk = inspect.getsource(H2Connection._open_streams)
    assert "self.streams.pop(stream_id)" in walk
    assert "self._closed_streams[stream_id] = stream.closed_by" in walk


async def test_finished_streams_leave_no_state_behind(ca: CertificateAuthority) -> None:
    def refuse_every_third(conn: ServerConnection, seen: Seen) -> None:
        first_time = [s.request_id for s in conn.server.completed].count(seen.request_id) == 1
        if first_time and int(seen.request_id[1:]) % 3 == 0:
            conn.reset(seen.stream_id, ErrorCodes.REFUSED_STREAM)
        else:
            conn.answer(seen.stream_id)

    async with ScriptedServer(ca, refuse_every_third) as server:
        client, transport = client_for(server, max_connections=1)
        async with client:
            outcomes = await post_all(client, [f"r{n}" for n in range(60)])
            assert all(isinstance(o, httpx.Response) for o in outcomes.values()), outcomes
            [pool] = transport._pools.values()
            [conn] = pool.connections
            assert (conn.streams, conn._h2.streams, conn.reserved) == ({}, {}, 0)
    check_ledger(server, outcomes)


async def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        H2Transport(max_connections=0)
    with pytest.raises(ValueError, match="keepalive_expiry"):
        H2Transport(keepalive_expiry=0)
    async with httpx.AsyncClient(transport=H2Transport()) as client:
        with pytest.raises(httpx.UnsupportedProtocol, match="HTTPS only"):
            await client.get("http://127.0.0.1:1/")


# -- firebase-admin end to end ---------------------------------------------------------------


@pytest.fixture
def fcm_app(sims: Simulators) -> tuple[firebase_admin.App, str]:
    _, _, project = unique_ids()
    account = sims.fcm.create_service_account(project_id=project)
    app = firebase_admin.initialize_app(credentials.Certificate(account), name=f"h2-{uuid.uuid4()}")
    return app, project


async def use_h2_transport(app: firebase_admin.App, endpoint: str, ca_file: Path) -> None:
    """What configure_fcm_app does, with an H2Transport in place of httpx's."""
    service = messaging._get_messaging_service(app)
    service._fcm_url = f"{endpoint}/v1/projects/{service._project_id}/messages:send"
    wrapper = service._async_client
    await wrapper._async_client.aclose()
    wrapper._async_client = httpx.AsyncClient(
        timeout=1.0,
        headers=wrapper._headers,
        auth=OAuthFlow(service._credential),
        transport=H2Transport(
            ssl_context=ssl.create_default_context(cafile=str(ca_file)), max_connections=2
        ),
    )
    wrapper._timeout = 1.0


def message(token: str) -> messaging.Message:
    return messaging.Message(token=token, data={"trackingId": token})


async def test_firebase_admin_reports_which_sends_may_have_gone_out(
    sims: Simulators, fcm_app: tuple[firebase_admin.App, str]
) -> None:
    app, _ = fcm_app
    await use_h2_transport(app, sims.fcm_endpoint, sims.ca_file)
    hang, reset = "hang:APA91b" + "h" * 40, "reset:APA91b" + "r" * 40
    healthy = [f"ok{n}:APA91b" + "x" * 40 for n in range(5)]
    sims.fcm.set_scenario(
        Scenario(scripted={hang: [Answer(action="hang")], reset: [Answer(action="reset")]})
    )
    try:
        batch = await messaging.send_each_async([message(t) for t in [*healthy, hang]], app=app)
        *ok, hung = batch.responses
        assert all(r.success for r in ok)
        assert isinstance(hung.exception, exceptions.FirebaseError)
        assert isinstance(hung.exception.cause, AnswerLost)
        assert hung.exception.cause.reason == "timeout"

        [aborted] = (await messaging.send_each_async([message(reset)], app=app)).responses
        assert isinstance(aborted.exception, exceptions.FirebaseError)
        assert isinstance(aborted.exception.cause, AnswerLost)
        assert len(sims.fcm.records(token=reset)) == 1  # never resent by the transport

        # the same connection pool recovers: a new connection for the next batch
        again = await messaging.send_each_async([message(t) for t in healthy], app=app)
        assert all(r.success for r in again.responses)

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            dead = f"https://127.0.0.1:{probe.getsockname()[1]}"
        await use_h2_transport(app, dead, sims.ca_file)
        unreachable = await messaging.send_each_async([message(t) for t in healthy], app=app)
        for response in unreachable.responses:
            assert isinstance(response.exception, exceptions.FirebaseError)
            assert isinstance(response.exception.cause, RequestNotProcessed)
    finally:
        await close_fcm_app(app)
