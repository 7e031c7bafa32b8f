"""Tracked links: a push's ``link`` goes through tidings, which records the click and
redirects to the link itself (Customer Insights - Journeys' ``link``; ``originalLink`` keeps
the raw one for users who did not consent to tracking).

A tracked link is ``<public url>/l/<tracking id>?u=<link>&s=<signature>``. The signature is
an HMAC-SHA256 over the tracking id and the link, with a key derived from the server's secret
key, so tidings redirects only to links it put in its own pushes (no open redirect) and counts
clicks only on its own pushes. Links are signed with the newest secret key and verified under
every listed key, so a push sent before a key rotation keeps a working link. Only web links
(http, https) are tracked: a deep link (``myapp://...``) opens the app itself and is sent as
it is.

Which signer a process uses is set once per process (:func:`link_tracking`, by the worker
and the API at start-up): the push payload is written by the senders, which hold no settings,
and the size check must count the same tracked link the senders write.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    from tidings.settings import Settings
    from tidings.store.secrets import SecretBox

LINK_PREFIX = "/l"
KEY_PURPOSE = "tracked-links-v1"
SIGNATURE_BYTES = 16  # 128 bits: ample for a MAC, and short in a 4 KB payload
TRACKED_SCHEMES = ("http", "https")
# characters a link keeps as they are inside the query value; everything else (notably & = #
# + and %) is percent-encoded, so the link comes back byte for byte
QUERY_SAFE = ":/@!$'()*,;"
# characters a Location header keeps; only what HTTP cannot carry (non-ASCII, spaces) is
# encoded, an existing %XX stays
LOCATION_SAFE = ":/?#[]@!$&'()*+,;=%~"


class LinkSigner:
    def __init__(self, key: bytes | Sequence[bytes], public_url: str | None) -> None:
        # newest first: signs with the first, verifies with any
        self._keys = [key] if isinstance(key, bytes) else list(key)
        self.public_url = public_url.rstrip("/") if public_url else None

    @classmethod
    def of(cls, settings: Settings, secrets: SecretBox) -> LinkSigner:
        return cls(secrets.derived_keys(KEY_PURPOSE), settings.public_url)

    def signature(self, tracking_id: str, url: str) -> str:
        return _signature(self._keys[0], tracking_id, url)

    def verify(self, tracking_id: str, url: str, signature: str) -> bool:
        if not trackable(url):
            return False
        given = signature.encode()
        # every key is tried, so the time taken does not tell which one matched
        matches = [
            hmac.compare_digest(_signature(key, tracking_id, url).encode(), given)
            for key in self._keys
        ]
        return any(matches)

    def tracked(self, tracking_id: str, url: str) -> str:
        """The tracked form of a link, or the link itself when it is not a web link or no
        public URL is configured."""
        if self.public_url is None or not trackable(url):
            return url
        return (
            f"{self.public_url}{LINK_PREFIX}/{quote(tracking_id, safe='')}"
            f"?u={quote(url, safe=QUERY_SAFE)}&s={self.signature(tracking_id, url)}"
        )


def _signature(key: bytes, tracking_id: str, url: str) -> str:
    # length-prefixed, so no (tracking id, url) pair signs like another
    message = f"{len(tracking_id)}:{tracking_id}{url}".encode("utf-8", "surrogatepass")
    digest = hmac.new(key, message, hashlib.sha256).digest()[:SIGNATURE_BYTES]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def trackable(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in TRACKED_SCHEMES and bool(parts.netloc)


def location(url: str) -> str:
    """The link as a Location header can carry it."""
    return quote(url, safe=LOCATION_SAFE)


_signer: LinkSigner | None = None


@contextmanager
def link_tracking(signer: LinkSigner | None) -> Iterator[None]:
    """Write tracked links with this signer while the context lasts (None: raw links)."""
    global _signer
    previous, _signer = _signer, signer
    try:
        yield
    finally:
        _signer = previous


def tracked_link(tracking_id: str, url: str) -> str:
    """What a push's ``link`` carries: the tracked form when this process tracks links."""
    return url if _signer is None else _signer.tracked(tracking_id, url)
