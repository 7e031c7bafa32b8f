"""``file:`` credential references that do not answer: a FIFO nobody writes to, a read that
never ends. The API names the reference and goes on serving; it never hangs on one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import Api, offline_credentials
from tidings.api.references import off_loop
from tidings.store.models import App
from tidings.store.secrets import SecretError


@contextlib.contextmanager
def fifo(path: Path) -> Iterator[Path]:
    """A FIFO at ``path``. Should anything block opening it for reading, a writer comes after a
    few seconds and leaves at once, so the reader sees an empty file instead of hanging the
    test run for ever."""
    os.mkfifo(path)
    stop = threading.Event()

    def unblock() -> None:
        if not stop.wait(3.0):
            os.close(os.open(path, os.O_RDWR))  # never blocks on a FIFO

    writer = threading.Thread(target=unblock, daemon=True)
    writer.start()
    try:
        yield path
    finally:
        stop.set()
        writer.join()


async def test_saving_a_reference_to_a_fifo_names_it_and_never_stalls(
    api: Api, tmp_path: Path
) -> None:
    apns = offline_credentials()["apns"]
    with fifo(tmp_path / "apns.p8") as path:
        saving = asyncio.create_task(
            api.admin.post(
                "/v1/apps",
                json={"id": "piped", "name": "P", "apns": apns | {"signing_key": f"file:{path}"}},
            )
        )
        health = await api.admin.get("/healthz")
        refused = await saving
    assert health.status_code == 200
    assert refused.status_code == 422, refused.text
    [problem] = refused.json()["error"]["details"]
    assert problem["loc"] == ["body", "apns", "signing_key"]
    assert f"file:{path}" in problem["msg"]
    assert "not a regular file" in problem["msg"]
    assert (await api.admin.get("/v1/apps/piped")).status_code == 404


async def test_checking_a_stored_reference_that_became_a_fifo_names_it(
    api: Api, tmp_path: Path
) -> None:
    credentials = offline_credentials()
    key_file = tmp_path / "apns.p8"
    key_file.write_text(credentials["apns"]["signing_key"])
    apns = credentials["apns"] | {"signing_key": f"file:{key_file}"}
    saved = await api.admin.post("/v1/apps", json={"id": "moved", "name": "M", "apns": apns})
    assert saved.status_code == 201, saved.text
    key_file.unlink()
    with fifo(key_file):
        checked = await api.admin.post("/v1/apps/moved/check")
    assert checked.status_code == 200, checked.text
    [apns_check] = checked.json()["providers"]
    assert apns_check["result"] == "inconclusive"
    [problem] = apns_check["problems"]
    assert problem["field"] == "apns.signing_key"
    assert f"file:{key_file}" in problem["message"]
    assert "not a regular file" in problem["message"]
    async with api.db.read() as session:
        app = await session.get(App, "moved")
    assert app is not None
    assert app.apns_secret == f"file:{key_file}"


async def test_a_read_that_does_not_finish_in_time_is_an_error_naming_it() -> None:
    released = threading.Event()
    ticks = 0

    async def ticking() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(ticking())
    try:
        with pytest.raises(SecretError, match=r"^file:/mnt/hung/key\.p8: not read within 0\.5 s$"):
            await off_loop("file:/mnt/hung/key.p8", released.wait, timeout_s=0.5)
    finally:
        released.set()
        ticker.cancel()
    assert ticks > 1  # the event loop went on meanwhile
