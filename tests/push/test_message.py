"""One content model, rendered for APNs and FCM: what each provider receives."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr, ValidationError

from tests.harness import BUNDLE_ID, unique_ids
from tidings.journeys import parse_definition
from tidings.journeys.model import PushContent
from tidings.journeys.render import render_message
from tidings.journeys.validation import JourneyInvalid
from tidings.push.apns import ApnsSender
from tidings.push.credentials import ApnsTokenCredentials, FcmCredentials
from tidings.push.fcm import FcmSender
from tidings.push.message import (
    AndroidOptions,
    ApnsOptions,
    PushMessage,
    apns_payload,
    apns_priority,
    fcm_message_dict,
    payload_sizes,
    size_problem,
)
from tidings.push.sender import ProviderRoutes, SendItem
from tidings.sim import Simulators

TRACKING = "3f2c8a4e-5b1d-5e0f-9a7b-1c2d3e4f5a6b"
FULL = PushMessage.model_validate(
    {
        "title": "Hello Ada",
        "subtitle": "A subtitle",
        "body": "Something new",
        "image_url": "https://img.example/x.png",
        "link": "app://offers/42",
        "data": {"offer": "42", "count": 3, "vip": True},
        "badge": 2,
        "sound": "chime.caf",
        "category": "OFFER",
        "thread_id": "offers",
        "priority": "normal",
        "apns": {"interruption_level": "time-sensitive", "relevance_score": 0.5},
        "android": {"channel_id": "offers", "color": "#ff8800", "tag": "offer-42"},
    }
)


def test_apns_payload_carries_every_field_and_the_tracking_id() -> None:
    assert apns_payload(FULL, TRACKING) == {
        "aps": {
            "alert": {"title": "Hello Ada", "subtitle": "A subtitle", "body": "Something new"},
            "sound": "chime.caf",
            "badge": 2,
            "category": "OFFER",
            "thread-id": "offers",
            "mutable-content": 1,  # the image needs the notification service extension
            "interruption-level": "time-sensitive",
            "relevance-score": 0.5,
        },
        "offer": "42",
        "count": "3",
        "vip": "true",
        "trackingId": TRACKING,
        "title": "Hello Ada",
        "body": "Something new",
        "imageUrl": "https://img.example/x.png",
        "link": "app://offers/42",
        "originalLink": "app://offers/42",
    }
    assert apns_priority(FULL) == 5


def test_fcm_message_carries_every_field_strings_only_and_the_collapse_id() -> None:
    message = fcm_message_dict(FULL, "tok", TRACKING, ttl_s=60, expiration=1_800_000_000)
    assert all(isinstance(v, str) for v in message["data"].values())
    assert message["data"]["trackingId"] == TRACKING
    assert message["notification"] == {
        "title": "Hello Ada",
        "body": "Something new",
        "image": "https://img.example/x.png",
    }
    assert message["android"] == {
        "collapse_key": TRACKING,
        "priority": "normal",
        "ttl": "60s",
        "notification": {
            "channel_id": "offers",
            "click_action": "OFFER",
            "sound": "chime.caf",
            "color": "#ff8800",
            "tag": "offer-42",
            "notification_count": 2,
        },
    }
    # iOS devices registered through FCM get the same collapse id, priority and expiry
    assert message["apns"]["headers"] == {
        "apns-collapse-id": TRACKING,
        "apns-priority": "5",
        "apns-push-type": "alert",
        "apns-expiration": "1800000000",
    }
    aps = message["apns"]["payload"]["aps"]
    assert aps["thread-id"] == "offers"
    assert aps["alert"] == {"subtitle": "A subtitle"}  # FCM writes title and body itself


def test_background_pushes_carry_data_only() -> None:
    quiet = PushMessage(push_type="background", title="ignored", data={"sync": "1"})
    assert apns_payload(quiet, TRACKING)["aps"] == {"content-available": 1}
    assert apns_priority(quiet) == 5
    fcm = fcm_message_dict(quiet, "tok", TRACKING)
    assert "notification" not in fcm
    assert "notification" not in fcm["android"]
    assert fcm["apns"]["headers"]["apns-push-type"] == "background"


def test_per_platform_overrides() -> None:
    message = PushMessage(
        title="t",
        sound="default",
        category="GENERIC",
        apns=ApnsOptions(sound="ios.caf", category="IOS_CAT"),
        android=AndroidOptions(sound="android_sound", click_action="OPEN_ACTIVITY"),
    )
    aps = apns_payload(message, TRACKING)["aps"]
    assert (aps["sound"], aps["category"]) == ("ios.caf", "IOS_CAT")
    notification = fcm_message_dict(message, "tok", TRACKING)["android"]["notification"]
    assert (notification["sound"], notification["click_action"]) == (
        "android_sound",
        "OPEN_ACTIVITY",
    )


@pytest.mark.parametrize(
    "key", ["from", "google.sent_time", "gcm.notification", "aps", "trackingId"]
)
def test_reserved_data_keys_are_refused(key: str) -> None:
    with pytest.raises(ValidationError, match="reserved"):
        PushContent(title="t", data={key: "x"})


def test_size_is_counted_in_utf8_bytes() -> None:
    # 1,400 characters, 4,200 bytes: too large although len() says 1,400
    euros = PushMessage(title="t", body="€" * 1400)
    sizes = payload_sizes(euros)
    assert sizes["apns"] > 4096
    assert "UTF-8" in (size_problem(euros) or "")
    assert size_problem(PushMessage(title="t", body="a" * 1400)) is None


def test_a_journey_whose_push_is_too_large_fails_validation_naming_the_node() -> None:
    definition = {
        "id": "big",
        "name": "Big",
        "app": "app",
        "nodes": [{"id": "too-big", "type": "push", "content": {"title": "t", "body": "€" * 1400}}],
    }
    with pytest.raises(JourneyInvalid) as raised:
        parse_definition(definition)
    assert [(i.node, i.field) for i in raised.value.issues] == [("too-big", "content")]


def test_templates_render_into_every_text_field_and_the_data() -> None:
    content = PushContent.model_validate(
        {
            "title": "Hi {{ first_name }}",
            "body": "{{ profile.attributes.city }} news",
            "link": "app://p/{{ profile.id }}",
            "data": {"greeting": "hello {{ first_name }}", "n": 7},
            "android": {"channel_id": "news"},
        }
    )
    profile = {"id": "p1", "attributes": {"first_name": "Ada", "city": "Paris"}}
    message = render_message(content, 30, profile)
    assert (message.title, message.body, message.link) == ("Hi Ada", "Paris news", "app://p/p1")
    assert message.data == {"greeting": "hello Ada", "n": "7"}
    assert (message.android.channel_id, message.ttl_s) == ("news", 30)


async def test_what_the_providers_receive_is_what_the_model_renders(sims: Simulators) -> None:
    """The real clients put the rendered message on the wire unchanged: the simulators'
    records equal tidings' own rendering (which the size check measures)."""
    team, key_id, project = unique_ids()
    routes = ProviderRoutes.from_strings(sims.apns_endpoint, sims.fcm_endpoint, sims.ca_file)
    apns = ApnsSender(
        ApnsTokenCredentials(
            team_id=team,
            key_id=key_id,
            bundle_id=BUNDLE_ID,
            signing_key=SecretStr(sims.apns.create_signing_key(team, key_id, [BUNDLE_ID])),
        ),
        routes=routes,
        max_in_flight=4,
        timeout_s=5,
    )
    fcm = FcmSender(
        FcmCredentials(
            service_account=SecretStr(json.dumps(sims.fcm.create_service_account(project)))
        ),
        app_name=f"wire-{project}",
        routes=routes,
        max_in_flight=4,
        timeout_s=5,
    )
    apns_token, fcm_token = "ab" * 32, "wire:APA91b" + "c" * 40
    expires_at = datetime.now(UTC) + timedelta(seconds=300)
    try:
        before = int(time.time())
        assert (await apns.send(SendItem(apns_token, TRACKING, FULL, expires_at))).status == 200
        assert (await fcm.send(SendItem(fcm_token, TRACKING, FULL, expires_at))).status == 200
        after = int(time.time())
    finally:
        await apns.close()
        await fcm.close()
    [apns_record] = sims.apns.records(token=apns_token)
    assert apns_record.payload == apns_payload(FULL, TRACKING)
    headers = apns_record.headers
    assert headers["apns-collapse-id"] == TRACKING
    assert headers["apns-priority"] == "5"
    assert headers["apns-push-type"] == "alert"
    assert before + 298 <= int(headers["apns-expiration"]) <= after + 300
    [fcm_record] = sims.fcm.records(token=fcm_token)
    assert fcm_record.payload is not None
    ttl = fcm_record.payload["android"]["ttl"]
    assert 298 <= int(ttl.removesuffix("s")) <= 300
    expiration = int(fcm_record.payload["apns"]["headers"]["apns-expiration"])
    expected = fcm_message_dict(
        FULL, fcm_token, TRACKING, ttl_s=int(ttl.removesuffix("s")), expiration=expiration
    )
    assert fcm_record.payload == expected
