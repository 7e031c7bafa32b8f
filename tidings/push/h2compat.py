"""The one change tidings needs in the h2 library's client connection.

h2 closes its connection state machine on any GOAWAY and drops the frames still queued, so
the answers a graceful server goes on sending for streams at or below the GOAWAY's
last-stream-id raise ProtocolError and are lost (python-hyper/h2 issue 1181). Those requests
were processed: losing their answers turns a delivered push into an unknown outcome and its
resend into a duplicate. Here a GOAWAY only reports itself; the client stops opening streams
on the connection and reads the answers still due.

tests/push/test_h2transport.py fails loudly if an h2 upgrade moves what this relies on.
"""

from __future__ import annotations

from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, Event
from hyperframe.frame import Frame, GoAwayFrame


class GoawayKeepsStreams(H2Connection):
    """An h2 connection that keeps its streams open after a GOAWAY."""

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Frame], list[Event]]:
        event = ConnectionTerminated()
        try:
            event.error_code = ErrorCodes(frame.error_code)
        except ValueError:
            event.error_code = frame.error_code
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]
