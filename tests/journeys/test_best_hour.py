"""The best_hour node's pure rules: the window's hours in local time, the decay of opens, the
choice between the profile's, the app's and the default hour, and the node's bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tidings.journeys.best_hour import (
    BestHourRules,
    HourChoice,
    HourHistogram,
    HourSource,
    choose_hour,
    decay,
    histogram,
)
from tidings.journeys.localtime import best_hour_wake, hour_starts
from tidings.journeys.validation import JourneyInvalid, parse_definition

PARIS = ZoneInfo("Europe/Paris")
UTC_ZONE = ZoneInfo("UTC")
NOW = datetime(2026, 6, 10, 7, 20, tzinfo=UTC)  # 09:20 in Paris (summer time)


def peaked(hour: int, opens: int = 10) -> HourHistogram:
    found = HourHistogram()
    for _ in range(opens):
        found.add(hour, 1.0)
    return found


def test_a_day_long_window_holds_every_hour_the_current_one_from_now() -> None:
    starts = hour_starts(NOW, PARIS, timedelta(hours=24))
    assert sorted(starts) == list(range(24))
    assert starts[9] == NOW  # inside 09:00-10:00 local: no wait
    assert starts[10] == datetime(2026, 6, 10, 8, 0, tzinfo=UTC)
    assert starts[8] == datetime(2026, 6, 11, 6, 0, tzinfo=UTC)  # tomorrow's 08:00


def test_a_short_window_holds_only_the_hours_it_reaches() -> None:
    assert sorted(hour_starts(NOW, PARIS, timedelta(hours=3))) == [9, 10, 11, 12]
    assert sorted(hour_starts(NOW, PARIS, timedelta(hours=1))) == [9, 10]


def test_a_skipped_local_hour_is_not_offered() -> None:
    # Paris skips 02:00-03:00 on 2026-03-29
    before = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)  # 00:30 local
    starts = hour_starts(before, PARIS, timedelta(hours=6))
    assert 2 not in starts
    assert starts[3] == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def test_the_wake_is_the_hours_start_or_the_windows_end() -> None:
    assert best_hour_wake(NOW, PARIS, 9, timedelta(hours=24)) == NOW
    assert best_hour_wake(NOW, PARIS, 19, timedelta(hours=24)) == datetime(
        2026, 6, 10, 17, 0, tzinfo=UTC
    )
    assert best_hour_wake(NOW, PARIS, 19, timedelta(hours=2)) == NOW + timedelta(hours=2)


def test_an_open_loses_half_its_weight_every_half_life() -> None:
    half_life = timedelta(days=14)
    assert decay(timedelta(0), half_life) == 1.0
    assert decay(timedelta(days=14), half_life) == pytest.approx(0.5)
    assert decay(timedelta(days=28), half_life) == pytest.approx(0.25)
    assert decay(-timedelta(days=1), half_life) == 1.0  # a clock ahead: no bonus


def test_the_histogram_reads_each_open_in_its_zone() -> None:
    opened = datetime(2026, 6, 1, 17, 0, tzinfo=UTC)
    built = histogram([(opened, PARIS), (opened, UTC_ZONE)], NOW)
    assert built.opens == 2
    assert built.weights[19] > 0
    assert built.weights[17] > 0
    assert sum(1 for w in built.weights if w) == 2


def test_recent_opens_outweigh_more_numerous_old_ones() -> None:
    old = [(NOW - timedelta(days=60), UTC_ZONE)] * 6  # 6 opens at 07:20 UTC, 60 days ago
    recent = [(NOW.replace(hour=20) - timedelta(days=1), UTC_ZONE)] * 2
    built = histogram(old + recent, NOW)
    choice = choose_hour(NOW, UTC_ZONE, timedelta(hours=24), 10, built, None)
    assert choice == HourChoice(20, HourSource.PROFILE)


def test_too_few_opens_fall_back_to_the_app_then_the_default() -> None:
    rules = BestHourRules(profile_min_opens=5, app_min_opens=20)
    window = timedelta(hours=24)
    four = peaked(15, opens=4)
    five = peaked(15, opens=5)
    app = peaked(18, opens=20)
    thin_app = peaked(18, opens=19)
    assert choose_hour(NOW, PARIS, window, 10, five, app, rules) == HourChoice(
        15, HourSource.PROFILE
    )
    assert choose_hour(NOW, PARIS, window, 10, four, app, rules) == HourChoice(18, HourSource.APP)
    assert choose_hour(NOW, PARIS, window, 10, None, app, rules) == HourChoice(18, HourSource.APP)
    assert choose_hour(NOW, PARIS, window, 10, four, thin_app, rules) == HourChoice(
        10, HourSource.DEFAULT
    )


def test_the_best_hour_is_sought_within_the_window() -> None:
    # the profile's peak (20:00) is out of a 3-hour window; its next best (11:00) is in it
    found = peaked(20, opens=10)
    found.add(11, 0.5)
    choice = choose_hour(NOW, PARIS, timedelta(hours=3), 10, found, None)
    assert choice == HourChoice(11, HourSource.PROFILE)
    # none of the profile's weight in the window: the app's, then the default's nearest hour
    only_evening = peaked(20)
    assert choose_hour(NOW, PARIS, timedelta(hours=3), 10, only_evening, peaked(12, 30)) == (
        HourChoice(12, HourSource.APP)
    )
    assert choose_hour(NOW, PARIS, timedelta(hours=3), 22, only_evening, None) == HourChoice(
        12, HourSource.DEFAULT
    )


def test_a_tie_goes_to_the_sooner_hour() -> None:
    tied = HourHistogram()
    for hour in (8, 14):
        for _ in range(3):
            tied.add(hour, 1.0)
    assert choose_hour(NOW, PARIS, timedelta(hours=24), 10, tied, None).hour == 14  # 08 is tomorrow


def test_a_choice_survives_its_journey_event_detail() -> None:
    choice = HourChoice(7, HourSource.APP)
    assert HourChoice.from_detail(choice.as_detail()) == choice


def _journey(**node: object) -> dict[str, object]:
    return {
        "id": "best",
        "name": "best",
        "app": "app",
        "nodes": [{"id": "wait", "type": "best_hour", **node}],
    }


def test_the_node_has_bounds_and_defaults() -> None:
    node = parse_definition(_journey()).nodes[0]
    assert node.type == "best_hour"
    assert (node.within, node.default_hour) == (timedelta(hours=24), 10)
    for bad in ({"within": "30m"}, {"within": "8d"}, {"default_hour": 24}, {"default_hour": -1}):
        with pytest.raises(JourneyInvalid) as refused:
            parse_definition(_journey(**bad))
        assert {issue.field for issue in refused.value.issues} == set(bad), bad


def test_a_loop_through_a_best_hour_alone_is_refused() -> None:
    data = _journey(next="hello")
    data["nodes"] = [
        {"id": "wait", "type": "best_hour", "next": "hello"},
        {"id": "hello", "type": "push", "content": {"title": "t", "body": "b"}, "next": "wait"},
    ]
    with pytest.raises(JourneyInvalid, match="loop"):
        parse_definition(data)
