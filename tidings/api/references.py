"""Credential references (``env:NAME``, ``file:/path``) read off the event loop, in time.

A ``file:`` reference is read by the API when credentials are saved or checked. Read on the
event loop, a file that does not answer (a FIFO nobody writes to, a hung network mount) would
stall every request, ``/healthz`` included. So each read runs on a daemon thread of its own
and is given ``READ_TIMEOUT_S``: a read that does not finish by then is a SecretError naming
the reference. A stuck thread is left behind (a blocked read cannot be interrupted) but holds
one of ``MAX_STUCK_READS`` slots at most: once they are all held, reads fail at once instead
of piling up threads.

Request bodies are validated by pydantic, synchronously: ``read_body_references`` (a
dependency of the routes that take credentials) reads the body's references beforehand, and
the validator takes what it read from ``preread``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

from fastapi import Request

from tidings.store.apps import read_reference
from tidings.store.secrets import SecretError, reference

T = TypeVar("T")

READ_TIMEOUT_S = 5.0
MAX_STUCK_READS = 8
# the secret field of each credential kind, where a reference may stand in for the secret
SECRET_FIELDS = {"apns": ("signing_key", "certificate"), "fcm": ("service_account",)}

_slots = threading.BoundedSemaphore(MAX_STUCK_READS)
_preread: ContextVar[Mapping[str, str | SecretError] | None] = ContextVar(
    "tidings_preread_references", default=None
)


async def off_loop(what: str, call: Callable[[], T], timeout_s: float = READ_TIMEOUT_S) -> T:
    """``call()`` on a thread of its own; SecretError naming ``what`` if it is not done within
    ``timeout_s`` (or too many earlier reads are still stuck)."""
    if not _slots.acquire(blocking=False):
        raise SecretError(f"{what}: not read, earlier reads of credential files are still stuck")
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def run() -> None:
        try:
            result, error = call(), None
        except BaseException as raised:  # handed to the awaiting coroutine
            result, error = None, raised
        finally:
            _slots.release()
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="tidings-reference-read", daemon=True).start()
    try:
        return await asyncio.wait_for(done, timeout_s)
    except TimeoutError:
        raise SecretError(f"{what}: not read within {timeout_s:g} s") from None


def references_in(data: Any) -> list[str]:
    """The credential references a request body gives in place of secrets."""
    found: list[str] = []
    if not isinstance(data, dict):
        return found
    for provider, fields in SECRET_FIELDS.items():
        section = data.get(provider)
        if not isinstance(section, dict):
            continue
        for field in fields:
            value = section.get(field)
            if isinstance(value, str) and reference(value) is not None:
                found.append(value)
    return found


async def read_body_references(request: Request) -> AsyncIterator[None]:
    """Read the references of the request's body off the loop, before the body is validated
    (FastAPI validates the body after a route's dependencies, in the same context)."""
    try:
        data = await request.json()
    except ValueError:  # not JSON: the body's validation says so
        data = None
    found: dict[str, str | SecretError] = {}
    for value in references_in(data):
        try:
            found[value] = await off_loop(value, functools.partial(read_reference, value))
        except SecretError as error:
            found[value] = error
    _preread.set(found)
    try:
        yield
    finally:
        _preread.set(None)


def secret_of(value: str) -> str:
    """The secret a reference names: as read before validation, else read now (outside a
    request, where nothing else waits on this thread); SecretError if it cannot be read."""
    found = (_preread.get() or {}).get(value)
    if found is None:
        return read_reference(value)
    if isinstance(found, SecretError):
        raise found
    return found
