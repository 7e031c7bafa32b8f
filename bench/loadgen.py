"""An open-loop HTTP/1.1 load generator that costs the machine little.

At hundreds of requests a second, a general-purpose client (httpx builds a request object,
headers, a response and its stream for each call) needs a core of its own, and on a 2-core
machine the benchmark would measure its own client instead of the API. This one keeps a pool
of keep-alive connections, sends pre-built request bytes, and reads only what it needs from
each answer: the status, and the body when asked.

Open loop: requests are queued at the offered rate whether or not earlier ones have been
answered, so a slow API shows as growing latency, never as a slower offered rate.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int
    body: bytes
    latency_s: float


@dataclass
class LoadResult:
    elapsed_s: float  # first request queued to last answer read
    started_at: float = 0.0  # wall clock (time.time()) when the first request was due
    answers: list[Answer] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # connections that broke, and why


def build_request(host: str, path: str, body: Any, headers: dict[str, str]) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode()
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    length = 0
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length) if length else b""


async def post_open_loop(
    url: str,
    path: str,
    bodies: Sequence[Any],
    rate: float,
    *,
    headers: dict[str, str],
    connections: int = 64,
) -> LoadResult:
    """POST each JSON body to ``url`` + ``path`` at ``rate`` requests per second."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [build_request(parts.netloc, path, body, headers) for body in bodies]
    queue: asyncio.Queue[tuple[bytes, float] | None] = asyncio.Queue()
    result = LoadResult(elapsed_s=0.0)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (item := await queue.get()) is not None:
                request, queued_at = item
                writer.write(request)
                status, body = await _read_answer(reader)
                result.answers.append(Answer(status, body, time.perf_counter() - queued_at))
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            result.failures.append(f"{type(error).__name__}: {error}")
        finally:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    started = time.perf_counter()
    result.started_at = time.time()
    for index, request in enumerate(requests):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        # latency counts from when the request was due, as an open-loop client's should
        queue.put_nowait((request, started + index / rate))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    result.elapsed_s = time.perf_counter() - started
    return result
