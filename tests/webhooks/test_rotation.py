"""`tidings keys rotate` reseals webhook signing secrets too: after it, a dispatcher holding
only the new key still signs with the secret the receiver was given."""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet

from tests.scene import FAST_WEBHOOKS
from tests.webhooks.conftest import Receiver
from tidings.egress import EgressPolicy
from tidings.store.db import Database
from tidings.store.rotation import rotate_credentials
from tidings.store.secrets import SecretBox
from tidings.store.types import utcnow
from tidings.store.webhooks import WebhookEvent, WebhookEventType, enqueue
from tidings.webhooks.dispatcher import Dispatcher
from tidings.webhooks.service import EndpointRequest, create_endpoint


async def test_rotated_secrets_still_sign(db: Database, receiver: Receiver) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    policy = EgressPolicy(allowed_hosts=frozenset({"127.0.0.1"}))
    request = EndpointRequest(url=receiver.url, event_types=[WebhookEventType.RUN_STARTED])
    created = await create_endpoint(db, SecretBox(old), policy, request, caller_app=None)

    report = await rotate_credentials(db, SecretBox([new, old]))
    assert report.resealed == 1
    assert report.unreadable == []

    now = utcnow()
    async with db.write() as session:
        event = WebhookEvent(WebhookEventType.RUN_STARTED, "run-1", None, now, {"run_id": "r"})
        await enqueue(session, [event], now)
    dispatcher = Dispatcher(db, SecretBox(new), policy, FAST_WEBHOOKS)
    try:
        async with receiver.serving():
            assert (await dispatcher.dispatch_once()).sent == 1
    finally:
        await dispatcher.close()
    [request_seen] = receiver.received
    timestamp = request_seen.headers["webhook-timestamp"]
    digest = hmac.new(
        created.secret.encode(), f"{timestamp}.".encode() + request_seen.body, hashlib.sha256
    ).digest()
    assert request_seen.headers["webhook-signature"] == "v1," + base64.b64encode(digest).decode()
