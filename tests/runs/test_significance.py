"""The experiment statistics against values computed by hand (the formulas written out, the
normal quantiles and tail areas from the standard table)."""

from __future__ import annotations

import math

import pytest

from tidings.runs.significance import Arm, compare, judge


def test_a_two_proportion_z_test_by_hand() -> None:
    """Control 200 of 1000 (20%), challenger 250 of 1000 (25%).

    pooled rate 450/2000 = 0.225; pooled SE = sqrt(0.225 * 0.775 * (1/1000 + 1/1000))
    = sqrt(0.00034875) = 0.0186748; z = 0.05 / 0.0186748 = 2.67740; two-sided
    p = 2 * (1 - Phi(2.6774)) = 0.00742. Unpooled SE = sqrt(0.2*0.8/1000 + 0.25*0.75/1000)
    = sqrt(0.0003475) = 0.0186414; 95% CI = 0.05 +- 1.959964 * 0.0186414
    = 0.05 +- 0.0365364 = [0.013464, 0.086536].
    """
    found = compare(Arm(1000, 200), Arm(1000, 250), alpha=0.05)
    assert found is not None
    assert found.difference == pytest.approx(0.05)
    assert found.z == pytest.approx(2.67740, abs=1e-4)
    assert found.p_value == pytest.approx(0.00742, abs=1e-5)
    assert found.low == pytest.approx(0.013464, abs=1e-6)
    assert found.high == pytest.approx(0.086536, abs=1e-6)
    assert found.significant


def test_the_interval_uses_the_unpooled_error_and_the_test_the_pooled_one() -> None:
    """Unequal arms make the two errors differ: control 30 of 100, challenger 90 of 200.

    pooled 120/300 = 0.4: SE = sqrt(0.4*0.6*(1/100 + 1/200)) = sqrt(0.0036) = 0.06, so
    z = 0.15 / 0.06 = 2.5 and p = 2 * (1 - Phi(2.5)) = 2 * 0.0062097 = 0.012419.
    Unpooled SE = sqrt(0.3*0.7/100 + 0.45*0.55/200) = sqrt(0.0021 + 0.0012375)
    = sqrt(0.0033375) = 0.0577711; 90% CI = 0.15 +- 1.644854 * 0.0577711
    = 0.15 +- 0.0950250.
    """
    found = compare(Arm(100, 30), Arm(200, 90), alpha=0.10)
    assert found is not None
    assert found.z == pytest.approx(2.5)
    assert found.p_value == pytest.approx(0.012419, abs=1e-6)
    assert found.high - found.difference == pytest.approx(0.0950250, abs=1e-6)
    assert found.difference - found.low == pytest.approx(0.0950250, abs=1e-6)


def test_no_conversions_anywhere_is_no_evidence() -> None:
    found = compare(Arm(50, 0), Arm(50, 0), alpha=0.05)
    assert found is not None
    assert (found.z, found.p_value, found.low, found.high) == (0.0, 1.0, 0.0, 0.0)
    assert not found.significant
    assert compare(Arm(0, 0), Arm(10, 1), alpha=0.05) is None


def test_a_clear_winner_is_named_with_its_numbers() -> None:
    verdict = judge([Arm(1000, 200), Arm(1000, 250)], confidence=0.95, min_sample=100)
    assert (verdict.status, verdict.winner) == ("winner", 1)
    assert verdict.alpha == pytest.approx(0.05)
    assert verdict.explanation == (
        "branch 1 wins: +5.0 points over the control (95% CI +1.3 to +8.7), p = 0.00742"
    )


def test_a_small_sample_is_not_judged_however_large_the_difference() -> None:
    verdict = judge([Arm(40, 2), Arm(1000, 900)], confidence=0.95, min_sample=100)
    assert (verdict.status, verdict.winner) == ("not_yet", None)
    assert verdict.explanation == "not yet: n too small (branch 0 has 40; each needs 100)"


def test_a_difference_within_chance_names_no_winner() -> None:
    """200/1000 against 210/1000: z = 0.01 / sqrt(0.205*0.795*0.002) = 0.01 / 0.0180541
    = 0.55389, p = 2 * (1 - Phi(0.55389)) = 2 * 0.28983 = 0.57966."""
    verdict = judge([Arm(1000, 200), Arm(1000, 210)], confidence=0.95, min_sample=100)
    assert (verdict.status, verdict.winner) == ("no_winner", None)
    comparison = verdict.comparisons[1]
    assert comparison is not None
    assert comparison.z == pytest.approx(0.55389, abs=1e-5)
    assert comparison.p_value == pytest.approx(0.57966, abs=1e-5)
    assert "no winner yet" in verdict.explanation
    assert "p = 0.58" in verdict.explanation


def test_more_branches_are_each_compared_with_the_control_at_a_bonferroni_level() -> None:
    """Three branches, two challengers: each comparison at 0.05 / 2 = 0.025, whose interval
    is the 97.5% one (z = 2.241403)."""
    arms = [Arm(1000, 200), Arm(1000, 360), Arm(1000, 250)]
    verdict = judge(arms, confidence=0.95, min_sample=100)
    assert verdict.alpha == pytest.approx(0.025)
    assert (verdict.status, verdict.winner) == ("winner", 1)
    best = verdict.comparisons[1]
    assert best is not None
    margin = 2.241403 * math.sqrt(0.2 * 0.8 / 1000 + 0.36 * 0.64 / 1000)
    assert best.high - best.difference == pytest.approx(margin, abs=1e-6)
    assert "(97.5% CI" in verdict.explanation
    # 250 of 1000 beats the control at 0.05 alone (p = 0.0074) but 360 beats both


def test_two_challengers_that_beat_the_control_but_not_each_other_name_no_winner() -> None:
    verdict = judge(
        [Arm(1000, 200), Arm(1000, 260), Arm(1000, 255)], confidence=0.95, min_sample=100
    )
    assert (verdict.status, verdict.winner) == ("no_winner", None)
    assert "branch 1 and branch 2 both beat the control" in verdict.explanation


def test_the_control_wins_when_every_challenger_converts_less() -> None:
    verdict = judge(
        [Arm(1000, 300), Arm(1000, 200), Arm(1000, 150)], confidence=0.95, min_sample=100
    )
    assert (verdict.status, verdict.winner) == ("winner", 0)


def test_an_interval_from_a_rate_of_0_or_100_percent_says_it_is_too_narrow() -> None:
    """The unpooled (Wald) interval has no width when both rates are 0% or 100%: said so."""
    verdict = judge([Arm(20, 0), Arm(20, 20)], confidence=0.95, min_sample=10)
    assert (verdict.status, verdict.winner) == ("winner", 1)
    assert "CI +100.0 to +100.0 (a rate of 0% or 100% makes this interval too narrow)" in (
        verdict.explanation
    )
