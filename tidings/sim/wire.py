"""What the simulators' HTTP/2 and HTTP/1.1 servers share with the simulators they serve.

A simulator turns a complete request into a :class:`Reply` the moment the request arrives
(checks, the scenario's answer, the latency), but nothing is *processed* then: the reply's
record is committed through :meth:`Handler.commit` only when the answer is written to the
connection, or, when a fault means it never will be, committed as unanswered with the reason
(:data:`RESET`, :data:`HANG`, ...). A connection lost with answers still waiting drops them
unprocessed, as a provider that never got to them would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .records import SimRecord
from .scenario import Action

# Why an answer was never written; a record committed with one has status 0.
RESET = "reset"
"""The scenario's ``reset``: the connection was aborted; every stream in flight on it too."""
HANG = "hang"
"""The scenario's ``hang``: the stream is never answered."""
REFUSED = "refused"
"""The scenario's ``refuse``: RST_STREAM REFUSED_STREAM (HTTP/1.1: closed unanswered)."""
GOAWAY_REFUSED = "goaway-refused"
"""Above the last-stream-id of a graceful GOAWAY (the triggering stream included)."""
DROPPED = "dropped"
"""The connection went away under it: closed by the client, aborted by another stream's
``answer_lost``, or the simulator stopping."""
CANCELLED = "cancelled"
"""The client reset the stream before its answer was due."""
ANSWER_LOST = "answer_lost"
"""Not a fault of the record: the reason an *accepted* (status 200) record carries when the
scenario's ``answer_lost`` aborted the connection before its answer was written."""


@dataclass(slots=True)
class Request:
    """A complete request. ``headers`` carry HTTP/2 pseudo-headers (``:method``, ``:path``,
    ``:authority``) first, also for HTTP/1.1, and lower-case names."""

    stream_id: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(slots=True)
class Reply:
    """An answer the server writes after ``delay_s``, or the fault ``action`` it plays instead.

    ``record`` is what the simulator commits once the answer's fate is known.
    """

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    delay_s: float = 0.0
    action: Action | None = None
    goaway_data: bytes = b""
    record: SimRecord | None = None


class ServerConnection:
    """What a handler may read and keep on one client connection, whatever its HTTP version."""

    def __init__(self) -> None:
        self.closed = False
        self.server_name: str | None = None
        self.peer_cert: bytes | None = None
        self.state: Any = None

    def advertise_stream_limit(self, limit: int) -> None:
        """HTTP/2's MAX_CONCURRENT_STREAMS; a connection without streams ignores it."""

    def abort(self, unanswered: str = DROPPED, *, linger: bool = True) -> None:
        raise NotImplementedError


class Handler(Protocol):
    """What a simulator plugs into the servers."""

    def initial_stream_limit(self, conn: ServerConnection) -> int:
        """MAX_CONCURRENT_STREAMS to advertise when an HTTP/2 connection opens."""
        ...

    def handle(self, request: Request, conn: ServerConnection) -> Reply:
        """Decide the answer (and its record) of a request just received."""
        ...

    def commit(self, reply: Reply, unanswered: str | None) -> None:
        """``reply`` was written (``unanswered`` is None) or never will be (the reason)."""
        ...
