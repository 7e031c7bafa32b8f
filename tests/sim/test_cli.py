"""``python -m tidings.sim`` as a separate process: endpoints.json, then SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import httpx
import pytest

from tidings.sim import SimulatorClient, read_endpoints
from tidings.sim.tls import CertificateAuthority

REPO = Path(__file__).resolve().parents[2]


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
