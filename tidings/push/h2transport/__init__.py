"""An httpx transport over HTTP/2 that knows which failed requests cannot have been processed.

httpx's own HTTP/2 transport (httpcore) fails every stream still waiting once a GOAWAY
arrives, even the ones a graceful server goes on to answer, and raises one
``RemoteProtocolError`` for a stream the server refused (REFUSED_STREAM: never processed) and
for one reset after processing. A push sender then cannot tell "resend at once, it cannot
duplicate" from "the push may have gone out". This transport drives ``h2`` itself and sorts
every failure into exactly one of two exceptions (RFC 9113 §6.8 and §8.7):

* :class:`RequestNotProcessed`: the server cannot have processed the request. The connection
  could not be made, no stream came free in time, the stream was refused, its id was above a
  GOAWAY's last-stream-id, or the request's END_STREAM never left this process. The transport
  resends such a request at once on another connection, up to ``max_resends`` times, and
  raises only when those are used up (or when resending cannot help: a failed connect, a pool
  timeout, a closed transport).
* :class:`AnswerLost`: the request was written whole and no answer came (the connection was
  lost, the read timed out, the stream was reset with any code but REFUSED_STREAM). The
  server may have processed it; the transport never resends these.

How it works, and why:

* One asyncio ``Protocol`` per connection; a request runs in its caller's task and waits on
  a future that the protocol resolves. No task or thread per request.
* Frames produced in one turn of the event loop leave in one socket write.
* A new connection takes requests once the server's first SETTINGS frame has arrived (its
  connection preface, RFC 9113 §3.4), so the real MAX_CONCURRENT_STREAMS is known before the
  first stream opens. Guessing 100 would get requests refused by a server that allows fewer
  (APNs allows one stream until it has seen a valid token); guessing 1 would trickle. Waiting
  costs one round trip per new connection, not per request.
* A GOAWAY stops new streams on its connection; streams at or below its last-stream-id keep
  waiting for their answers, those above are resent elsewhere, and the connection closes once
  its streams are done. ``h2`` itself shuts its state machine on any GOAWAY and drops queued
  frames, so ``_connection.GracefulH2Connection`` keeps it open (and counts open streams
  without walking them all, which h2 does on every new stream).
* Modules: ``_errors`` (the two exceptions), ``_connection`` (one connection and its
  streams), ``_pool`` (the connections to one origin and the requests waiting for a stream),
  ``_transport`` (the httpx transport, resending what was not processed).
"""

from ._errors import AnswerLost, RequestNotProcessed
from ._transport import H2Transport

__all__ = ["AnswerLost", "H2Transport", "RequestNotProcessed"]
