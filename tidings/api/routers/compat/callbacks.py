"""Registration callbacks (``x-ms-callback-url``), kept from reaching inside the network.

The callback URL comes from whoever registers a device, and tidings POSTs to it from inside
its own network, so it is held to :mod:`tidings.egress` (public addresses only, unless ops
allow-list hosts or networks with ``TIDINGS_CALLBACK_ALLOWED``):

- when the request arrives, once its ``ApiToken`` is known to be valid (no name is resolved
  for a stranger), the host is resolved and every address it names is checked: a refused
  one answers 400 naming the header;
- when the callback is sent, the connection goes to an address checked again at that moment;
- the callback is bounded in time, its answer is never read, and redirects are not followed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from tidings.api.errors import ApiError
from tidings.egress import DestinationRefused, check_destination, guarded_transport
from tidings.egress import EgressPolicy as CallbackPolicy

log = logging.getLogger(__name__)

HEADER = "x-ms-callback-url"

__all__ = ["HEADER", "Callback", "CallbackPolicy", "check_callback_url", "post_callback"]


async def check_callback_url(url: str, policy: CallbackPolicy) -> None:
    """400, naming the header, unless the policy allows every address the URL's host names."""
    try:
        await check_destination(url, policy)
    except DestinationRefused as error:
        raise ApiError(
            400,
            "callback_url_not_allowed",
            f"{HEADER} is refused: {error}",
            [{"loc": ["header", HEADER], "msg": str(error)}],
        ) from None


@dataclass(frozen=True)
class Callback:
    url: str
    headers: dict[str, str] = field(default_factory=dict)


async def post_callback(
    callback: Callback, body: dict[str, Any], policy: CallbackPolicy
) -> int | None:
    """POST once, within the policy's time; the status code, or None when it failed (logged
    with the host only: the URL may carry secrets)."""
    host = urlsplit(callback.url).hostname
    try:
        async with (
            asyncio.timeout(policy.timeout_s),
            httpx.AsyncClient(
                transport=guarded_transport(policy),
                timeout=policy.timeout_s,
                follow_redirects=False,
                trust_env=False,
            ) as client,
            # streamed and never read: the receiver's answer is its status alone
            client.stream("POST", callback.url, json=body, headers=callback.headers) as answer,
        ):
            log.info("registration callback to %s answered %s", host, answer.status_code)
            return answer.status_code
    except Exception as error:  # the registration is done: a failed callback is only logged
        log.warning("registration callback to %s failed: %s", host, type(error).__name__)
        return None
