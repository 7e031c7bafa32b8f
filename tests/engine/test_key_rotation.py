"""Rotating the secret key with runs in flight: every process lists the new key first and the
old one after it, `tidings keys rotate` re-encrypts the stored credentials meanwhile, and no
push, credential or tracked link is lost."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import update
from sqlmodel import col, select

from tests.scene import APP, SceneFactory, journey, push
from tidings.push.links import KEY_PURPOSE, LinkSigner
from tidings.store.models import App
from tidings.store.rotation import rotate_credentials
from tidings.store.secrets import SecretBox, SecretError, generate_key

PUBLIC = "https://push.example.com"
LINK = "https://shop.example.com/sale?x=1"
PROFILES = [f"rot-{n}" for n in range(6)]


def linked(node_id: str, **fields: Any) -> dict[str, Any]:
    node = push(node_id, **fields)
    node["content"]["link"] = LINK
    return node


async def test_rotating_the_key_mid_run_loses_no_credential_push_or_link(
    scene: SceneFactory,
) -> None:
    old, new = generate_key(), generate_key()
    only_old, only_new = SecretBox(old.encode()), SecretBox(new.encode())
    async with scene(secret_key=f"{new},{old}", public_url=PUBLIC) as s:
        both = s.stack.resources.secrets
        # the app's credentials as they were stored before the new key existed
        async with s.db.write() as session:
            app = (await session.exec(select(App).where(col(App.id) == APP))).one()
            assert app.apns_secret is not None
            assert app.fcm_secret is not None
            await session.exec(
                update(App)
                .where(col(App.id) == APP)
                .values(
                    apns_secret=only_old.seal(both.open(app.apns_secret)),
                    fcm_secret=only_old.seal(both.open(app.fcm_secret)),
                )
            )
        for profile in PROFILES:
            await s.profile(profile, devices=("apns", "fcm"))
        definition = journey(
            linked("before", next="pause"),
            {"id": "pause", "type": "delay", "duration": "2s", "next": "after"},
            linked("after"),
        )
        started = await s.start_journey(definition, PROFILES)
        first = await s.delivered(started.run_id, "before", PROFILES[0])

        # the run is in flight (between its two pushes) while the store is rotated
        report = await rotate_credentials(s.db, both)
        assert (report.resealed, report.unreadable) == (2, [])
        again = await rotate_credentials(s.db, both)
        assert (again.resealed, again.current) == (0, 2)

        result = await s.finish(started)
        rows = await s.ledger(started.run_id)
        assert len(rows) == len(PROFILES) * 2 * 2  # two devices, two pushes each
        assert {r.status for r in rows} == {"delivered"}
        assert result.counts  # the run ended normally

        # every credential now opens under the new key alone, none under the old one
        async with s.db.read() as session:
            app = (await session.exec(select(App).where(col(App.id) == APP))).one()
        for sealed in (app.apns_secret, app.fcm_secret):
            assert sealed is not None
            assert only_new.open(sealed)
            try:
                only_old.open(sealed)
            except SecretError:
                pass
            else:
                raise AssertionError("a credential still opens under the retired key")

        # a link signed under the old key, as a process that had only the old key wrote it
        # before the rotation, still redirects through the API holding both keys
        old_link = LinkSigner(only_old.derived_key(KEY_PURPOSE), PUBLIC).tracked(
            first.tracking_id, LINK
        )
        new_link = LinkSigner(only_new.derived_key(KEY_PURPOSE), PUBLIC).tracked(
            first.tracking_id, LINK
        )
        for link in (old_link, new_link):
            parts = urlsplit(link)
            query = parse_qs(parts.query)
            answer = await s.stack.http.get(
                parts.path, params={"u": query["u"][0], "s": query["s"][0]}
            )
            assert answer.status_code == 302, answer.text
            assert answer.headers["location"] == LINK
        # and a link from another key is still refused
        stranger = SecretBox(generate_key().encode())
        forged = urlsplit(
            LinkSigner(stranger.derived_key(KEY_PURPOSE), PUBLIC).tracked(first.tracking_id, LINK)
        )
        forged_query = parse_qs(forged.query)
        refused = await s.stack.http.get(
            forged.path, params={"u": forged_query["u"][0], "s": forged_query["s"][0]}
        )
        assert refused.status_code == 400
