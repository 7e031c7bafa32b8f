"""The journey language beyond push and delay: every check names the node and the field."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tidings.journeys import JourneyInvalid, load_definition, parse_definition
from tidings.journeys.locales import choose_variant
from tidings.journeys.localtime import next_local_time, quiet_until, zone_for
from tidings.journeys.model import upgrade_legacy_content
from tidings.journeys.predicates import AttributePredicate, attribute_matches, parse_where
from tidings.runs.audience import audience_choice, read_audience_file
from tidings.runs.errors import StartError

EXAMPLES = Path(__file__).resolve().parents[2] / "tidings" / "journeys" / "examples"


def journey(*nodes: dict[str, object], **extra: object) -> dict[str, object]:
    return {"id": "j", "name": "J", "app": "demo", "nodes": list(nodes), **extra}


def push(node_id: str, **fields: object) -> dict[str, object]:
    return {"id": node_id, "type": "push", "content": {"title": "t", "body": "b"}, **fields}


def issues(data: dict[str, object]) -> list[str]:
    with pytest.raises(JourneyInvalid) as caught:
        parse_definition(data)
    return [str(issue) for issue in caught.value.issues]


@pytest.mark.parametrize(
    "name", ["welcome.yaml", "reengage.yaml", "onboarding.yaml", "weekly_digest.yaml"]
)
def test_the_examples_are_valid(name: str) -> None:
    assert load_definition(EXAMPLES / name).nodes


def test_a_loop_without_a_wait_is_reported_with_its_path() -> None:
    found = issues(
        journey(
            push("a", next="check"),
            {
                "id": "check",
                "type": "condition",
                "predicates": [{"fact": "delivered", "node": "a"}],
                "then": "a",
                "otherwise": "out",
            },
            {"id": "out", "type": "exit"},
        )
    )
    assert any(
        i.startswith("node 'a', next: is on a loop with no wait in it (a → check → a)")
        for i in found
    ), found


def test_a_loop_through_a_wait_is_fine() -> None:
    parse_definition(
        journey(
            push("a", next="pause"),
            {"id": "pause", "type": "delay", "duration": "1d", "next": "a"},
        )
    )


def test_a_delay_of_zero_does_not_count_as_a_wait() -> None:
    found = issues(
        journey(
            push("a", next="pause"), {"id": "pause", "type": "delay", "duration": 0, "next": "a"}
        )
    )
    assert any("loop with no wait" in i for i in found)


def test_wait_for_must_name_an_earlier_push() -> None:
    wait: dict[str, object] = {
        "id": "w",
        "type": "wait_for",
        "interaction": "opened",
        "timeout": "1h",
    }
    assert "node 'w', push: names no earlier push: 'later' does not come before this node" in (
        issues(journey(wait | {"push": "later", "matched": "later"}, push("later")))
    )
    assert "node 'w', push: names no earlier push: 'x' is a exit node" in issues(
        journey(
            push("a", next="w"), wait | {"push": "x", "matched": "x"}, {"id": "x", "type": "exit"}
        )
    )
    assert any(
        i.startswith("node 'w', push: is missing")
        for i in issues(journey(push("a", next="w"), {k: v for k, v in wait.items()}))
    )
    assert "node 'w', timeout: must be longer than 0s" in issues(
        journey(push("a", next="w"), wait | {"push": "a", "timeout": 0})
    )


def test_conditions_and_splits_are_checked_by_field() -> None:
    found = issues(
        journey(
            push("a", next="c"),
            {
                "id": "c",
                "type": "condition",
                "predicates": [{"fact": "opened"}, {"fact": "event"}],
                "then": "s",
            },
            {
                "id": "s",
                "type": "random_split",
                "branches": [{"percent": 60, "next": "a"}, {"percent": 30}],
            },
        )
    )
    assert "node 'c', predicates.0.node: is missing: name an earlier push node" in found
    assert "node 'c', predicates.1.event: is missing: name the custom event" in found
    assert "node 's', branches: percentages add up to 90, not 100" in found


def test_model_errors_name_the_node_and_field_too() -> None:
    found = issues(
        journey(
            push("a", next="c", locales={"x": {"body": "b"}}),
            {
                "id": "c",
                "type": "condition",
                "predicates": [{"attribute": "age", "op": "gt", "value": True}],
            },
            timezone="Mars/Olympus",
        )
    )
    assert any(i.startswith("journey, timezone:") and "not a time zone" in i for i in found)
    assert any(i.startswith("node 'a', locales.x") for i in found)  # not a locale tag
    assert any(i.startswith("node 'c', predicates.0") for i in found)


def test_settings_are_checked() -> None:
    found = issues(
        journey(
            push("a"),
            quiet_hours={"start": "22:00", "end": "22:00"},
            trigger={"event": "joined", "reentry": {"policy": "after"}},
            goal={"event": "joined"},
        )
    )
    assert "journey, quiet_hours.end: equals start: the window would be empty" in found
    assert "journey, trigger.reentry.after: policy 'after' needs a duration above 0s" in found
    assert "journey, goal.event: is the trigger's event: every profile would leave at once" in found


def test_locale_variants_are_checked_like_the_content() -> None:
    found = issues(journey(push("a", locales={"fr": {"title": "{{ oops", "body": "b"}})))
    assert any(i.startswith("node 'a', locales.fr.title: template error") for i in found)


def test_definitions_stored_before_the_content_model_changed_still_load() -> None:
    legacy = {"title": "t", "android_channel_id": "news", "interruption_level": None}
    assert upgrade_legacy_content(legacy) == {"title": "t", "android": {"channel_id": "news"}}
    node = parse_definition(journey(push("a", content=legacy))).nodes[0]
    assert node.content.android.channel_id == "news"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("locale", "chosen"),
    [("pt-BR", "pt-BR"), ("pt_br", "pt-BR"), ("pt-PT", "pt"), ("fr-CA", None), (None, None)],
)
def test_locale_variants_fall_back_to_the_language_then_the_default(
    locale: str | None, chosen: str | None
) -> None:
    tag, content = choose_variant("default", {"pt-BR": "brazil", "pt": "portuguese"}, locale)
    assert tag == chosen
    assert content == {"pt-BR": "brazil", "pt": "portuguese", None: "default"}[chosen]


@pytest.mark.parametrize(
    ("predicate", "attributes", "expected"),
    [
        ({"attribute": "plan", "value": "pro"}, {"plan": "pro"}, True),
        ({"attribute": "plan", "op": "ne", "value": "pro"}, {}, True),
        ({"attribute": "age", "op": "gte", "value": 18}, {"age": 18.0}, True),
        ({"attribute": "age", "op": "gt", "value": 18}, {"age": "19"}, False),
        ({"attribute": "vip", "value": 1}, {"vip": True}, False),
        ({"attribute": "tags", "op": "contains", "value": "beta"}, {"tags": ["beta"]}, True),
        (
            {"attribute": "address.city", "op": "in", "value": ["Lyon"]},
            {"address": {"city": "Lyon"}},
            True,
        ),
        ({"attribute": "email", "op": "exists"}, {"email": None}, False),
        ({"attribute": "email", "op": "missing"}, {}, True),
    ],
)
def test_attribute_predicates(
    predicate: dict[str, object], attributes: dict[str, object], expected: bool
) -> None:
    assert attribute_matches(AttributePredicate.model_validate(predicate), attributes) is expected


@pytest.mark.parametrize(
    ("text", "op", "value"),
    [
        ("plan=pro", "eq", "pro"),
        ("age>=18", "gte", 18),
        ("age<3.5", "lt", 3.5),
        ("plan!=free", "ne", "free"),
        ("country~FR,BE", "in", ["FR", "BE"]),
        ("vip?", "exists", None),
    ],
)
def test_command_line_filters(text: str, op: str, value: object) -> None:
    predicate = parse_where(text)
    assert (predicate.op, predicate.value) == (op, value)


def test_a_bad_command_line_filter_names_itself() -> None:
    with pytest.raises(StartError, match="'plan pro' is not a filter"):
        audience_choice(where=["plan pro"])


def test_audience_files_hold_ids_and_emails(tmp_path: Path) -> None:
    path = tmp_path / "audience.csv"
    path.write_text('email,name\n# a comment\n"ann@example.com",Ann\np-2\n\n')
    audience = read_audience_file(path)
    assert (audience.profile_ids, audience.emails) == (["p-2"], ["ann@example.com"])


PARIS = ZoneInfo("Europe/Paris")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=PARIS).astimezone(UTC)


def test_quiet_hours_wrap_midnight_and_end_in_local_time() -> None:
    start, end = time(21), time(8)
    assert quiet_until(at("2026-03-02T22:30"), PARIS, start, end) == at("2026-03-03T08:00")
    assert quiet_until(at("2026-03-03T07:59"), PARIS, start, end) == at("2026-03-03T08:00")
    assert quiet_until(at("2026-03-03T08:00"), PARIS, start, end) is None
    assert quiet_until(at("2026-03-03T12:00"), PARIS, time(12), time(13)) == at("2026-03-03T13:00")


def test_quiet_hours_across_a_daylight_saving_change() -> None:
    # the night clocks go forward in Paris: 8 hours of local time are 7 hours long
    until = quiet_until(at("2026-03-28T23:00"), PARIS, time(21), time(8))
    assert until == datetime(2026, 3, 29, 6, tzinfo=UTC)


def test_wait_until_finds_the_next_allowed_local_time() -> None:
    friday_evening = at("2026-03-06T18:00")
    assert next_local_time(friday_evening, PARIS, time(9), ["mon"]) == at("2026-03-09T09:00")
    assert next_local_time(friday_evening, PARIS, time(18), ["fri"]) == friday_evening
    assert next_local_time(friday_evening, PARIS, time(20), ["fri"]) == at("2026-03-06T20:00")


def test_a_profile_zone_wins_unless_it_is_unknown() -> None:
    assert zone_for("Asia/Tokyo", "UTC") == ZoneInfo("Asia/Tokyo")
    assert zone_for("Not/AZone", "Europe/Paris") == PARIS
    assert zone_for(None, "Europe/Paris") == PARIS
    assert timedelta(0) == ZoneInfo("UTC").utcoffset(datetime(2026, 1, 1))
