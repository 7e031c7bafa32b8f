"""The limits push templates run under, and the budget of steps and time that counts them.

Every limit holds per push message for one profile:

- :data:`MAX_STEPS` steps (loop iterations, calls, filters, operators, attribute lookups) and
  :data:`TIME_LIMIT_S` seconds of the rendering thread's CPU time, whichever comes first
  (legitimate templates take a few dozen steps and well under a millisecond). CPU time, not
  the wall clock: on a busy machine a template waiting for a core is not running away, and
  must not fail a push. Nor is a template that happened to trigger a garbage collection: the
  collector's pass over a worker's whole heap (a large cohort's, on a slow core: over the
  limit) is charged to whichever allocation set it off, so the time the thread spent
  collecting is left out;
- no value a template builds or prints may be larger than :data:`MAX_VALUE_CHARS`
  characters of text, and no integer larger than :data:`MAX_INT_BITS` bits;
- one field's output is at most :data:`MAX_OUTPUT_CHARS` characters (a push payload is at
  most 4 KiB anyway).

A template over a limit raises :class:`BudgetExceeded`, a Jinja2 ``SecurityError``. Sizes are
estimated as the length of a value's text (:func:`text_size`), walking containers only until
the limit is passed, so checking a value costs at most the limit.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.utils import Namespace

MAX_STEPS = 20_000
TIME_LIMIT_S = 0.25
MAX_VALUE_CHARS = 100_000
MAX_OUTPUT_CHARS = 16_384
MAX_INT_BITS = 4_096


class BudgetExceeded(SecurityError):
    """A template went over one of its limits."""


class _CollectorClock(threading.local):
    """CPU time each thread has spent in full garbage collections (gc.callbacks run in the
    thread whose allocation started the collection). Only full ones: the younger
    generations' take microseconds, and they run thousands of times a second, so timing
    them would cost a busy worker more than they do."""

    started: float | None = None
    spent: float = 0.0

    def on_collection(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] < 2:
            return
        if phase == "start":
            self.started = time.thread_time()
        elif self.started is not None:
            self.spent += time.thread_time() - self.started
            self.started = None


_collector = _CollectorClock()
gc.callbacks.append(_collector.on_collection)


def spent_outside_collections() -> float:
    """This thread's CPU time, less what it spent collecting garbage."""
    return time.thread_time() - _collector.spent


@dataclass
class Budget:
    deadline: float  # in spent_outside_collections() time
    steps: int = 0
    exhausted: bool = False

    def tick(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            self.exhausted = True
            raise BudgetExceeded(
                f"the template runs too long: it took more than {MAX_STEPS} steps "
                "(loop iterations, calls, filters), the limit for one push"
            )
        if spent_outside_collections() > self.deadline:
            self.exhausted = True
            raise BudgetExceeded(
                f"the template runs too long: it took more than {TIME_LIMIT_S:g}s of CPU, "
                "the limit for one push"
            )


_budget: ContextVar[Budget | None] = ContextVar("tidings_template_budget", default=None)


@contextlib.contextmanager
def budget() -> Iterator[Budget]:
    """Give the templates rendered inside one budget of steps and time (one push message)."""
    current = Budget(spent_outside_collections() + TIME_LIMIT_S)
    token = _budget.set(current)
    try:
        yield current
    finally:
        _budget.reset(token)


@contextlib.contextmanager
def unbudgeted() -> Iterator[None]:
    """Outside any budget (compiling: a compiled template is kept for every later render,
    so whether it compiles must not depend on what the render before it spent)."""
    token = _budget.set(None)
    try:
        yield
    finally:
        _budget.reset(token)


def tick() -> None:
    current = _budget.get()
    if current is not None:
        current.tick()


def text_size(value: Any, limit: int = MAX_VALUE_CHARS) -> int:
    """About ``len(str(value))``, without building the text; once past ``limit`` it stops
    walking and answers what it has counted (more than ``limit``)."""
    if isinstance(value, str):
        return len(value)
    total = 0
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, bool) or item is None:
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1
        elif isinstance(item, float):
            total += 24
        elif isinstance(item, Namespace):
            # its text shows every attribute
            todo.append(dict(getattr(item, "_Namespace__attrs", {})))
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            if total <= limit:
                todo.extend(item.keys())
                todo.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + 2 * len(item)
            if total <= limit:
                todo.extend(item)
        elif isinstance(item, KeysView | ValuesView | ItemsView):
            todo.append(list(item))  # a dict's keys, values or items show their contents
        else:
            total += 32
        if total > limit:
            return total
    return total


def too_large(what: str) -> BudgetExceeded:
    return BudgetExceeded(
        f"the template {what} more than {MAX_VALUE_CHARS} characters, the limit for a value"
    )


def check_size(value: Any, what: str = "builds a value of") -> None:
    if text_size(value) > MAX_VALUE_CHARS:
        raise too_large(what)


def check_count(count: Any, what: str) -> None:
    if isinstance(count, int) and count > MAX_VALUE_CHARS:
        raise BudgetExceeded(f"{what} ({count}) is above the limit of {MAX_VALUE_CHARS}")


def check_total(total: int) -> None:
    if total > MAX_VALUE_CHARS:
        raise too_large("would build a value of")
