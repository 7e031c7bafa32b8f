"""``python -m tidings.sim`` and ``tidings sim`` as separate processes: endpoints.json and
the printed endpoints, a push through the real client, then SIGTERM / Ctrl-C; a port that is
taken fails fast, naming it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from tidings.push.apns import ApnsSender
from tidings.push.credentials import ApnsTokenCredentials
from tidings.push.message import PushMessage
from tidings.push.outcome import Outcome
from tidings.push.sender import ProviderRoutes, SendItem
from tidings.sim import SimulatorClient, read_endpoints
from tidings.sim.tls import CertificateAuthority

REPO = Path(__file__).resolve().parents[2]
TIDINGS = ("-c", "from tidings.cli.app import main; main()")


async def test_module_serves_publishes_endpoints_and_stops_on_sigterm(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("apns: {max_concurrent_streams: 10}\nfcm: {seed: 9}\n")
    home = tmp_path / "home"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tidings.sim",
        "--home",
        str(home),
        "--scenario",
        str(scenario),
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        endpoints_file = home / "sim" / "endpoints.json"

        async def published() -> None:
            while not endpoints_file.exists():
                assert process.returncode is None, "python -m tidings.sim exited early"
                await asyncio.sleep(0.05)

        await asyncio.wait_for(published(), 30)
        endpoints = read_endpoints(home)
        assert endpoints["pid"] == process.pid
        assert Path(endpoints["ca_file"]) == home / "sim" / "ca.pem"
        assert endpoints["apns_endpoint"].startswith("127.0.0.1:")
        assert endpoints["fcm_endpoint"].startswith("https://127.0.0.1:")
        async with SimulatorClient(endpoints["control_url"]) as client:
            assert await client.healthz()
            assert (await client.get_scenario("apns")).max_concurrent_streams == 10
            assert (await client.get_scenario("fcm")).seed == 9
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
        assert not endpoints_file.exists()
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.TransportError):
                await http.get(f"{endpoints['control_url']}/healthz", timeout=1)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_ca_is_reused_across_runs(tmp_path: Path) -> None:
    first = CertificateAuthority(tmp_path)
    first.server_certificate()
    second = CertificateAuthority(tmp_path)
    assert first.cert == second.cert
    assert (tmp_path / "ca.pem").read_bytes() == second.ca_file.read_bytes()


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIDINGS_", "TEMPORAL_"))}
    return env | {"TIDINGS_HOME": str(home), "COLUMNS": "80"}


async def _tidings_sim(home: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *TIDINGS,
        "sim",
        *args,
        cwd=REPO,
        env=_env(home),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _printed_endpoints(process: asyncio.subprocess.Process) -> dict[str, str]:
    """What ``tidings sim`` printed, up to its control API line."""
    assert process.stdout is not None
    printed: dict[str, str] = {}
    while "control" not in printed:
        line = (await process.stdout.readline()).decode()
        assert line, "tidings sim exited before it was ready"
        exported = re.match(r"\s*export (TIDINGS_\w+)=(\S+)$", line)
        if exported:
            printed[exported.group(1)] = exported.group(2)
        elif line.startswith("control API: "):
            printed["control"] = line.removeprefix("control API: ").strip()
    return printed


async def _printed_control_calls(process: asyncio.subprocess.Process) -> list[str]:
    """The rest of the banner, after the control API line."""
    assert process.stdout is not None
    lines = []
    while not (line := (await process.stdout.readline()).decode()).startswith("endpoints also"):
        assert line, "tidings sim exited before it was ready"
        lines.append(line.rstrip("\n"))
    return lines


async def _check_control_calls(control_url: str, lines: list[str]) -> None:
    """What the banner says works: each GET it names answers, and its curl example (run
    with httpx) creates an APNs key."""
    text = "\n".join(lines)
    [example] = [line for line in lines if "curl" in line]
    match = re.search(r"curl -X POST (\S+) -H '([^:]+): ([^']+)' -d '(.*)'$", example)
    assert match is not None, example
    url, header, value, body = match.groups()
    async with httpx.AsyncClient() as http:
        created = await http.post(url, content=body, headers={header: value})
        assert created.status_code == 200
        assert created.json()["key_pem"].startswith("-----BEGIN PRIVATE KEY-----")
        named = re.findall(r"GET (/\S+)", text)
        assert {p.split("?")[0] for p in named} >= {"/{apns|fcm}/records", "/{apns|fcm}/summary"}
        for path in named:
            path = path.replace("{apns|fcm}", "apns").replace("token=", "token=ab")
            answer = await http.get(f"{control_url}{path.replace('accepted_only=true', '')}")
            assert answer.status_code == 200, path


async def test_tidings_sim_prints_working_endpoints_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """Every printed endpoint works as printed: the real aioapns client pushes to the APNs
    simulator through the exported variables, and the control API sees it."""
    home = tmp_path / "home"
    process = await _tidings_sim(home, "--host", "127.0.0.1")
    try:
        printed = await asyncio.wait_for(_printed_endpoints(process), 60)
        calls = await asyncio.wait_for(_printed_control_calls(process), 10)
        await _check_control_calls(printed["control"], calls)
        assert set(printed) == {
            "TIDINGS_APNS_ENDPOINT",
            "TIDINGS_FCM_ENDPOINT",
            "TIDINGS_PROVIDER_CA_FILE",
            "control",
        }
        ca_file = Path(printed["TIDINGS_PROVIDER_CA_FILE"])
        assert ca_file.is_absolute()
        assert ca_file == (home / "sim" / "ca.pem").resolve()
        endpoints = read_endpoints(home)
        assert printed["TIDINGS_APNS_ENDPOINT"] == endpoints["apns_endpoint"]
        assert printed["TIDINGS_FCM_ENDPOINT"] == endpoints["fcm_endpoint"]
        assert printed["control"] == endpoints["control_url"]
        async with httpx.AsyncClient() as http:  # what it prints exists; /docs does not
            assert (await http.get(f"{printed['control']}/healthz")).status_code == 200
            assert (await http.get(f"{printed['control']}/docs")).status_code == 404

        async with SimulatorClient(printed["control"]) as control:
            pem = await control.create_apns_key("TEAM000001", "KEY0000001", ["com.example.sim"])
            credentials = ApnsTokenCredentials(
                team_id="TEAM000001",
                key_id="KEY0000001",
                bundle_id="com.example.sim",
                signing_key=SecretStr(pem),
            )
            routes = ProviderRoutes.from_strings(
                printed["TIDINGS_APNS_ENDPOINT"], printed["TIDINGS_FCM_ENDPOINT"], ca_file
            )
            sender = ApnsSender(credentials, routes=routes, max_in_flight=4, timeout_s=10.0)
            token = "5e" * 32
            try:
                result = await sender.send(SendItem(token, "from-the-cli", PushMessage(title="hi")))
            finally:
                await sender.close()
            assert result.outcome is Outcome.DELIVERED, result.describe
            [record] = await control.accepted("apns", token=token)
            assert record.tracking_id == "from-the-cli"

        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        assert not (home / "sim" / "endpoints.json").exists()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize("option", ["--apns-port", "--fcm-port", "--control-port"])
async def test_a_taken_port_fails_fast_naming_it(tmp_path: Path, option: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        process = await _tidings_sim(tmp_path, option, str(port))
        try:
            # it exits on its own (the timeout only guards against the old endless wait)
            stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 1
    message = stderr.decode()
    assert f"127.0.0.1:{port} ({option}) already in use" in message
    assert "simulators ready" not in stdout.decode()
    assert not (tmp_path / "sim" / "endpoints.json").exists()
