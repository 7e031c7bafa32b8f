"""`tidings api` on a laptop: a fresh home's store is migrated by the command itself, as the
worker's and the designer's commands do, so the API serves at once."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.cli.processes import TIDINGS, clean_env, start, stop, wait_for_line
from tidings.temporal.devserver import free_port


async def test_api_on_a_fresh_home_migrates_its_embedded_store_and_serves(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    log = tmp_path / "api.log"
    api = start(
        [str(TIDINGS), "api", "--port", str(port)],
        clean_env(TIDINGS_HOME=str(home), TIDINGS_ENV="development"),
        log,
    )
    try:
        await wait_for_line(api, log, r"Uvicorn running on")
        key = (home / "admin.key").read_text().strip()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            listed = await http.get("/v1/apps", headers={"Authorization": f"Bearer {key}"})
            assert listed.status_code == 200, listed.text
            assert listed.json()["items"] == []
            # the store is tidings' own: an app saved now is there to read back
            made = await http.post(
                "/v1/apps",
                json={"id": "laptop", "name": "Laptop"},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert made.status_code == 201, made.text
    finally:
        stop(api)
    assert "revision none" not in log.read_text()
