"""Every node type end to end on the real stack: wait_until in each profile's own zone,
locale variants with a fallback, a template error kept to one profile, a condition over
attributes and journey facts, a random split drawn per profile, and exits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from tests.scene import SceneFactory, journey, push
from tidings.journeys.model import JourneyDefinition
from tidings.journeys.predicates import AttributePredicate
from tidings.runs.cancel import cancel_run
from tidings.runs.start import AudienceChoice, StartedRun
from tidings.runs.view import run_view
from workflows.nodes.random_split import branch_for, draw


async def test_every_node_type_walks_each_profile_its_own_way(scene: SceneFactory) -> None:
    async with scene() as s:
        await s.profile(
            "ana",
            timezone="Europe/Berlin",
            locale="fr-CA",
            attributes={"plan": "pro", "first_name": "Ana"},
        )
        await s.profile(
            "bob", devices=("fcm",), locale="de", attributes={"plan": "free", "first_name": "Bob"}
        )
        await s.profile("cyd", attributes={"plan": "free"})  # no first_name: template error
        await s.profile("dan", devices=(), attributes={"plan": "pro", "first_name": "Dan"})
        await s.profile(
            "eve", timezone="Asia/Tokyo", attributes={"plan": "pro", "first_name": "Eve"}
        )
        lead = timedelta(seconds=3)

        def morning(now: datetime) -> tuple[datetime, JourneyDefinition]:
            # a wall-clock time 3 s away in Paris (Berlin's offset too); hours away in Tokyo
            at = (now + lead).astimezone(ZoneInfo("Europe/Paris"))
            return at, journey(
                {
                    "id": "morning",
                    "type": "wait_until",
                    "time": at.strftime("%H:%M:%S"),
                    "next": "hello",
                },
                push(
                    "hello",
                    next="check",
                    content={"title": "Hi {{ first_name }}", "body": "welcome"},
                    locales={
                        "fr": {"title": "Salut {{ first_name }}", "body": "bienvenue"},
                        "de": {"title": "Hallo {{ first_name }}", "body": "willkommen"},
                    },
                ),
                {
                    "id": "check",
                    "type": "condition",
                    "predicates": [
                        {"attribute": "plan", "value": "pro"},
                        {"fact": "had_valid_device"},
                    ],
                    "then": "pro-offer",
                    "otherwise": "split",
                },
                push("pro-offer", next="bye"),
                {
                    "id": "split",
                    "type": "random_split",
                    "branches": [{"percent": 50, "next": "left"}, {"percent": 50, "next": "right"}],
                },
                push("left"),
                push("right"),
                {"id": "bye", "type": "exit"},
                timezone="Europe/Paris",
            )

        async def start(window: tuple[datetime, JourneyDefinition]) -> StartedRun:
            return await s.start_journey(window[1], ["ana", "bob", "cyd", "dan", "eve"])

        started, (at, definition) = await s.start_in_window(
            morning, start, still_holds=lambda window, now: now <= window[0] - lead / 2
        )
        right = next(branch for branch in definition.nodes if branch.id == "split")

        def branch(profile: str) -> str:
            index = branch_for(right, draw(definition.id, "split", profile))  # type: ignore[arg-type]
            return ["left", "right"][index]

        expected = {
            ("ana", "hello"): "delivered",
            ("ana", "pro-offer"): "delivered",
            ("bob", "hello"): "delivered",
            ("bob", branch("bob")): "delivered",
            ("cyd", "hello"): "not_sent",
            ("cyd", branch("cyd")): "delivered",
            ("dan", "hello"): "not_sent",
            ("dan", branch("dan")): "not_sent",
        }

        async def everyone_but_eve_done() -> bool:
            rows = await s.ledger(started.run_id)
            return {(r.profile_id, r.node_id) for r in rows if r.status != "pending"} == set(
                expected
            )

        await s.until(everyone_but_eve_done, "every profile but eve through the journey")
        rows = await s.ledger(started.run_id)
        assert {(r.profile_id, r.node_id): r.status for r in rows} == expected
        reasons = {(r.profile_id, r.node_id): r.reason or "" for r in rows}
        assert reasons[("cyd", "hello")].startswith("template error")
        assert reasons[("dan", "hello")] == "no valid device"
        # wait_until held the profiles until the local time came
        assert all(r.created_at >= at.astimezone(UTC) - timedelta(seconds=1) for r in rows)
        # locale variants: French for fr-CA (language fallback), German for de
        titles = [
            (record.payload or {}).get("aps", {}).get("alert", {}).get("title")
            for record in s.sims.apns.accepted()
        ]
        assert "Salut Ana" in titles
        fcm_titles = [
            (record.payload or {}).get("notification", {}).get("title")
            for record in s.sims.fcm.accepted()
        ]
        assert "Hallo Bob" in fcm_titles

        # eve waits for her own morning in Tokyo, hours away
        view = await run_view(s.client, s.db, started.run_id)
        assert view.positions == {"morning": 1}
        await cancel_run(s.client, s.db, started.run_id)
        result = await s.finish(started)
        assert result.status == "cancelled"
        assert result.counts["cancelled"] == 1
        assert result.counts["check.then"] == 1  # ana; dan is pro but had no device
        assert not [r for r in await s.ledger(started.run_id) if r.profile_id == "eve"]


async def test_audiences_by_email_and_by_attribute_filter(scene: SceneFactory) -> None:
    async with scene() as s:
        await s.profile("p1", email="one@example.com", attributes={"plan": "pro", "age": 30})
        await s.profile("p2", email="two@example.com", attributes={"plan": "free", "age": 17})
        await s.profile("p3", attributes={"plan": "pro", "age": 16})
        by_email = await s.start_journey(
            journey(push("hello")), audience=AudienceChoice(emails=["two@example.com"])
        )
        filtered = await s.start_journey(
            journey(push("hello")),
            audience=AudienceChoice(
                where=[
                    AttributePredicate(attribute="plan", value="pro"),
                    AttributePredicate(attribute="age", op="gte", value=18),
                ]
            ),
        )
        await s.finish(by_email)
        await s.finish(filtered)
        assert {r.profile_id for r in await s.ledger(by_email.run_id)} == {"p2"}
        assert {r.profile_id for r in await s.ledger(filtered.run_id)} == {"p1"}
