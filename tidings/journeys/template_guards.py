"""Checks made *before* the template operations that can multiply a value's size (``*``,
``**``, ``%``, ``+``, string formatting, ``join``, ``replace``, ``center``...): the result
would be built in one step, too fast and too large for the budget to stop it afterwards."""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tidings.journeys.template_limits import (
    MAX_INT_BITS,
    MAX_VALUE_CHARS,
    BudgetExceeded,
    check_count,
    check_total,
    text_size,
    too_large,
)


def _repeated(value: Any, times: Any) -> None:
    """``value * times`` for a string or a sequence."""
    if isinstance(times, int) and times > 0:
        check_total(text_size(value) * times)


def _replaced(text: Any, old: Any, new: Any) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        found = text.count(old) if old else len(text) + 1
        check_total(len(text) + found * len(new))


def _largest(values: Iterable[Any]) -> int:
    return max((text_size(v) for v in values), default=0)


_PERCENT_SPEC = re.compile(
    r"%(?:\([^)]*\))?[-#0 +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d+))?[hlL]?(?P<kind>.)",
    re.DOTALL,
)
_FORMAT_SPEC = re.compile(
    r"(?:.?[<>=^])?[-+ ]?z?#?0?(?P<width>\d+)?[,_]?(?:\.(?P<precision>\d+))?[A-Za-z%]?"
)
# the digits of the largest float written without an exponent, and then some
_FIELD_SLACK = 320


def _spec_size(width: str | None, precision: str | None) -> int:
    if width == "*" or precision == "*":
        raise BudgetExceeded("a * width or precision is not allowed in a template's format")
    size = int(width or 0) + int(precision or 0)
    if size > MAX_VALUE_CHARS:
        raise too_large("formats a field of")
    return size


def _percent_formatted(template: str, values: Any) -> None:
    """``template % values``: every field at its widest, with the largest value."""
    if isinstance(values, Mapping):
        largest = _largest(values.values())
    elif isinstance(values, tuple):
        largest = _largest(values)
    else:
        largest = text_size(values)
    total = len(template)
    for spec in _PERCENT_SPEC.finditer(template):
        if spec["kind"] != "%":
            total += _spec_size(spec["width"], spec["precision"]) + largest + _FIELD_SLACK
    check_total(total)


def str_formatted(template: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """``template.format(*args, **kwargs)``, the same way."""
    largest = max(_largest(args), _largest(kwargs.values()))
    total = 0
    for literal, field, spec, _ in string.Formatter().parse(template):
        total += len(literal)
        if field is None:
            continue
        spec = spec or ""
        if "{" in spec:
            raise BudgetExceeded("a nested {} in a format spec is not allowed in a template")
        matched = _FORMAT_SPEC.fullmatch(spec)
        size = _spec_size(matched["width"], matched["precision"]) if matched else 10 * len(spec)
        total += size + largest + _FIELD_SLACK
    check_total(total)


def check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "**":
        grows = _plain_int(left) and _plain_int(right) and right > 0 and abs(left) > 1
        if grows and right * math.log2(abs(left)) > MAX_INT_BITS:
            raise BudgetExceeded(f"the template computes a number of more than {MAX_INT_BITS} bits")
    elif operator == "*":
        if _plain_int(left) and _plain_int(right):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS + 1:
                raise BudgetExceeded(
                    f"the template computes a number of more than {MAX_INT_BITS} bits"
                )
        elif _plain_int(right):
            _repeated(left, right)
        elif _plain_int(left):
            _repeated(right, left)
    elif operator == "+":
        if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            check_total(text_size(left) + text_size(right))
    elif operator == "%" and isinstance(left, str):
        _percent_formatted(left, right)


def _plain_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _arg(args: list[Any], kwargs: Mapping[str, Any], index: int, name: str, default: Any) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def str_method_guard(text: str, name: str, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Before a str method that can make its string much longer; ``args`` may be replaced
    (an iterable given to join is read once, here)."""
    if name in ("center", "ljust", "rjust", "zfill"):
        check_count(_arg(args, kwargs, 0, "width", 0), f"a width given to {name}")
    elif name == "expandtabs":
        tabsize = _arg(args, kwargs, 0, "tabsize", 8)
        if isinstance(tabsize, int):
            check_total(len(text) + text.count("\t") * tabsize)
    elif name == "replace":
        _replaced(text, _arg(args, kwargs, 0, "old", ""), _arg(args, kwargs, 1, "new", ""))
    elif name == "join" and args:
        args[0] = _joined(args[0], text)
    elif name == "translate" and args and isinstance(args[0], Mapping):
        check_total(len(text) * (_largest(args[0].values()) + 1))


def _joined(items: Any, separator: Any) -> Any:
    """The items to join, read into a list so the result's size can be known first."""
    if isinstance(items, str):
        listed: list[Any] = list(items)
    elif isinstance(items, Iterable):
        listed = []
        for item in items:
            listed.append(item)
            check_count(len(listed), "the number of items to join")
    else:
        return items
    sizes = sum(text_size(item) for item in listed)
    check_total(sizes + text_size(separator) * max(len(listed) - 1, 0))
    return listed


Guard = Callable[[list[Any], dict[str, Any]], None]


def _guard_width(name: str, index: int, default: int) -> Guard:
    def guard(args: list[Any], kwargs: dict[str, Any]) -> None:
        check_count(_arg(args, kwargs, index, name, default), f"a {name}")

    return guard


def _guard_indent(args: list[Any], kwargs: dict[str, Any]) -> None:
    text = args[0] if args else ""
    width = _arg(args, kwargs, 1, "width", 4)
    per_line = len(width) if isinstance(width, str) else width
    if isinstance(text, str) and isinstance(per_line, int):
        check_total(len(text) + (text.count("\n") + 1) * per_line)


def _guard_wordwrap(args: list[Any], kwargs: dict[str, Any]) -> None:
    text = args[0] if args else ""
    wrap = _arg(args, kwargs, 3, "wrapstring", None)
    if isinstance(text, str) and isinstance(wrap, str):
        check_total(len(text) + (len(text) + 1) * len(wrap))


def _guard_replace(args: list[Any], kwargs: dict[str, Any]) -> None:
    text = args[0] if args else ""
    _replaced(text, _arg(args, kwargs, 1, "old", ""), _arg(args, kwargs, 2, "new", ""))


def _guard_join(args: list[Any], kwargs: dict[str, Any]) -> None:
    if args:
        args[0] = _joined(args[0], _arg(args, kwargs, 1, "d", ""))


def _guard_sum(args: list[Any], kwargs: dict[str, Any]) -> None:
    start = _arg(args, kwargs, 2, "start", 0)
    if args and isinstance(start, list | tuple):
        args[0] = _joined(args[0], "")


def _guard_format(args: list[Any], kwargs: dict[str, Any]) -> None:
    if args and isinstance(args[0], str):
        _percent_formatted(args[0], kwargs or tuple(args[1:]))


FILTER_GUARDS: dict[str, Guard] = {
    "center": _guard_width("width", 1, 80),
    "batch": _guard_width("linecount", 1, 0),
    "slice": _guard_width("slices", 1, 0),
    "indent": _guard_indent,
    "wordwrap": _guard_wordwrap,
    "replace": _guard_replace,
    "join": _guard_join,
    "sum": _guard_sum,
    "format": _guard_format,
}
