"""TIDINGS_LOG_FORMAT=json: one JSON object a line with the ids in context, uvicorn's lines
included, no colour codes, tokens masked and bearer keys never written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tidings.settings import Settings

SCRIPT = """
import asyncio, logging, os
import httpx
from tidings.api.app import create_app
from tidings.logs import configure_logging
from tidings.observe.context import bound
from tidings.push.masking import mask_token
from tidings.settings import Settings

settings = Settings()
configure_logging(settings.log_level, settings.log_format)
logging.getLogger("uvicorn.error").info("Started server process")
with bound(app_id="shop", run_id="run-1", workflow_id="wf-1"):
    logging.getLogger("tidings.test").info(
        "sent to %s with Authorization: Bearer %s", mask_token("ab" * 32), "s3cret-admin-key"
    )

async def request():
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            answer = await http.get("/healthz", headers={"X-Request-ID": "req-42"})
            assert answer.headers["x-request-id"] == "req-42"

asyncio.run(request())
"""


def run_logging(tmp_path: Path, database_url: str, **env: str) -> list[str]:
    environment = os.environ | {
        "TIDINGS_HOME": str(tmp_path),
        "TIDINGS_DATABASE_URL": database_url,
        "TIDINGS_ADMIN_KEY": "s3cret-admin-key",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=environment | env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    return done.stderr.splitlines()


def test_json_lines_carry_ids_and_never_secrets(tmp_path: Path, database_url: str) -> None:
    lines = run_logging(
        tmp_path, database_url, TIDINGS_LOG_FORMAT="JSON", TIDINGS_LOG_LEVEL="debug"
    )
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all("\x1b[" not in line for line in lines)
    assert all("s3cret-admin-key" not in line for line in lines)
    by_logger = {record["logger"]: record for record in records}
    assert by_logger["uvicorn.error"]["message"] == "Started server process"
    sent = by_logger["tidings.test"]
    assert (sent["app_id"], sent["run_id"], sent["workflow_id"]) == ("shop", "run-1", "wf-1")
    assert "abab" + "ab" * 28 not in sent["message"]  # the token is masked
    assert "[redacted]" in sent["message"]
    access = by_logger["tidings.api.access"]
    assert access["request_id"] == "req-42"
    assert access["route"] == "/healthz"
    assert {"time", "level"} <= set(access)


def test_text_lines_off_a_terminal_have_no_colour_codes(tmp_path: Path, database_url: str) -> None:
    lines = run_logging(tmp_path, database_url, TIDINGS_LOG_LEVEL="Info")
    assert any("Started server process" in line for line in lines)
    assert all("\x1b[" not in line for line in lines)
    assert all("s3cret-admin-key" not in line for line in lines)


@pytest.mark.parametrize("given", ["debug", "Warning", "ERROR", " info "])
def test_log_levels_are_case_insensitive(given: str) -> None:
    assert Settings(log_level=given).log_level == given.strip().upper()
