"""Which branch of an experiment wins: two-proportion z-tests of each branch against the
first (the control), with the standard library's normal distribution.

The test uses the pooled standard error (under "no difference" both branches share one rate);
the confidence interval of the difference uses the unpooled one (each branch its own rate),
as the textbook two-proportion comparison does. With more than one challenger each comparison
is held to ``(1 - confidence) / challengers`` (Bonferroni), so the chance that any of them
names a false winner stays below ``1 - confidence``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

STANDARD_NORMAL = NormalDist()


@dataclass(frozen=True)
class Arm:
    """One branch's sample: profiles that took it, and those of them who converted."""

    size: int
    conversions: int

    @property
    def rate(self) -> float | None:
        return self.conversions / self.size if self.size else None


@dataclass(frozen=True)
class Comparison:
    """A challenger against the control: the difference of their rates (challenger minus
    control), its confidence interval, the z statistic and the two-sided p-value."""

    difference: float
    low: float
    high: float
    z: float
    p_value: float
    significant: bool


def compare(control: Arm, challenger: Arm, alpha: float) -> Comparison | None:
    """The two-proportion z-test at level ``alpha`` (None while either arm is empty)."""
    if not control.size or not challenger.size:
        return None
    p1 = control.conversions / control.size
    p2 = challenger.conversions / challenger.size
    difference = p2 - p1
    pooled = (control.conversions + challenger.conversions) / (control.size + challenger.size)
    pooled_se = math.sqrt(pooled * (1 - pooled) * (1 / control.size + 1 / challenger.size))
    if pooled_se == 0:
        # both arms all converted, or none did: no evidence of any difference
        z, p_value = 0.0, 1.0
    else:
        z = difference / pooled_se
        p_value = min(1.0, 2 * (1 - STANDARD_NORMAL.cdf(abs(z))))
    unpooled_se = math.sqrt(p1 * (1 - p1) / control.size + p2 * (1 - p2) / challenger.size)
    margin = STANDARD_NORMAL.inv_cdf(1 - alpha / 2) * unpooled_se
    return Comparison(
        difference=difference,
        low=difference - margin,
        high=difference + margin,
        z=z,
        p_value=p_value,
        significant=p_value < alpha,
    )


def interval_level(alpha: float) -> str:
    """The confidence level of an interval at ``alpha``, in words: 95%, 97.5%."""
    return f"{(1 - alpha) * 100:.4g}%"


Status = Literal["winner", "not_yet", "no_winner"]


@dataclass(frozen=True)
class Verdict:
    status: Status
    winner: int | None
    explanation: str
    alpha: float  # the level each comparison is held to
    comparisons: list[Comparison | None]  # per branch; None for the control


def judge(arms: list[Arm], confidence: float, min_sample: int) -> Verdict:
    """Whether a branch is a clear winner yet, and why (not) in words."""
    challengers = len(arms) - 1
    alpha = (1 - confidence) / max(challengers, 1)
    comparisons: list[Comparison | None] = [None]
    comparisons += [compare(arms[0], arm, alpha) for arm in arms[1:]]

    def verdict(status: Status, winner: int | None, explanation: str) -> Verdict:
        return Verdict(status, winner, explanation, alpha, comparisons)

    small = [(index, arm.size) for index, arm in enumerate(arms) if arm.size < min_sample]
    if small:
        listed = ", ".join(f"branch {index} has {size}" for index, size in small)
        return verdict("not_yet", None, f"not yet: n too small ({listed}; each needs {min_sample})")
    level = f"{interval_level(1 - confidence)} confidence" + (
        f" (p < {alpha:.3g} per comparison, Bonferroni)" if challengers > 1 else ""
    )
    better = [
        index
        for index, c in enumerate(comparisons)
        if c is not None and c.significant and c.difference > 0
    ]
    worse = [
        index
        for index, c in enumerate(comparisons)
        if c is not None and c.significant and c.difference < 0
    ]
    if not better:
        if len(worse) == challengers:
            return verdict(
                "winner",
                0,
                f"branch 0 (the control) wins: every other branch converts less, at {level}",
            )
        p_values = [c.p_value for c in comparisons if c is not None]
        return verdict(
            "no_winner",
            None,
            f"no winner yet: no branch differs from the control at {level} "
            f"(smallest p = {min(p_values):.3g})",
        )
    best = max(better, key=lambda index: arms[index].rate or 0.0)
    rivals = [
        index
        for index in better
        if index != best
        and not (
            (c := compare(arms[index], arms[best], alpha)) is not None
            and c.significant
            and c.difference > 0
        )
    ]
    if rivals:
        named = " and ".join(f"branch {index}" for index in sorted([best, *rivals]))
        return verdict(
            "no_winner",
            None,
            f"no winner yet: {named} both beat the control at {level}, not each other",
        )
    comparison = comparisons[best]
    assert comparison is not None
    caveat = (
        " (a rate of 0% or 100% makes this interval too narrow)"
        if {arms[0].rate, arms[best].rate} & {0.0, 1.0}
        else ""
    )
    return verdict(
        "winner",
        best,
        f"branch {best} wins: {comparison.difference * 100:+.1f} points over the control "
        f"({interval_level(alpha)} CI {comparison.low * 100:+.1f} to "
        f"{comparison.high * 100:+.1f}{caveat}), "
        f"p = {comparison.p_value:.3g}",
    )
