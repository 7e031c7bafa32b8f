"""Template rendering in a sandboxed Jinja2 environment, under a budget.

A template error on one profile is that profile's problem: it is recorded for the profile
(as a not-sent delivery) and never stops the cohort. So :func:`render_message` raises
:class:`RenderError` and nothing else, whatever the template does: a syntax error, an
undefined value, a division by zero, a refused ``include``, or a runaway stopped by the
limits of tidings.journeys.sandbox (steps, time, sizes; one budget per push message).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, Template, TemplateError

from tidings.journeys.model import PushContent, PushNode
from tidings.journeys.sandbox import BudgetedSandbox, render
from tidings.journeys.template_limits import budget, unbudgeted
from tidings.push.message import PushMessage

TEMPLATED_FIELDS = ("title", "subtitle", "body", "image_url", "link")


class RenderError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"content.{field}: {message}")


def _describe(error: Exception) -> str:
    if isinstance(error, TemplateError):
        return error.message or type(error).__name__
    return f"{error} ({type(error).__name__})" if str(error) else type(error).__name__


@lru_cache(maxsize=1)
def _environment() -> BudgetedSandbox:
    return BudgetedSandbox(undefined=StrictUndefined, autoescape=False)


def template_environment() -> BudgetedSandbox:
    """The environment templates are rendered in (to parse them, e.g. for what they read)."""
    return _environment()


class _Placeholder(ChainableUndefined):
    """Stands in for any profile value when previewing a template at validation time: it
    renders as 16 characters so the payload-size estimate is not optimistic. A template may
    do with a profile value what it may do with a number (``{{ 100 // points }}``,
    ``{% if age > 17 %}``, ``{{ "%.2f" | format(price) }}``): the placeholder takes part and
    stays a placeholder, compares as false and counts as 0, so the preview reports what is
    wrong with the template, not with the stand-in."""

    def __str__(self) -> str:
        return "x" * 16

    def __format__(self, spec: str) -> str:
        try:
            return format(str(self), spec)
        except ValueError:  # a number's format
            return format(0.0, spec)

    def _stays(self, *_: object) -> _Placeholder:
        return self

    def _false(self, _: object) -> bool:
        return False

    def __int__(self) -> int:  # type: ignore[override]
        return 0

    def __float__(self) -> float:  # type: ignore[override]
        return 0.0

    def __index__(self) -> int:
        return 0

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _stays  # type: ignore[assignment]
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = _stays  # type: ignore[assignment]
    __mod__ = __rmod__ = __pow__ = __rpow__ = __neg__ = __pos__ = _stays  # type: ignore[assignment]
    __abs__ = __round__ = _stays
    __lt__ = __le__ = __gt__ = __ge__ = _false  # type: ignore[assignment]


@lru_cache(maxsize=1)
def _preview_environment() -> BudgetedSandbox:
    return BudgetedSandbox(undefined=_Placeholder, autoescape=False)


@lru_cache(maxsize=4096)
def _compile(environment: BudgetedSandbox, source: str) -> Template | str:
    """The compiled template, or why it does not compile (kept, so a broken template is
    not compiled again for every profile)."""
    try:
        with unbudgeted():
            return environment.from_string(source)
    except Exception as error:  # a template must not fail the batch: any error is its own
        return _describe(error)


def _render_text(
    environment: BudgetedSandbox, field: str, source: str, context: dict[str, Any]
) -> str:
    if "{" not in source:
        return source
    compiled = _compile(environment, source)
    if isinstance(compiled, str):
        raise RenderError(field, compiled)
    try:
        return render(compiled, context)
    except Exception as error:  # ZeroDivisionError, OverflowError, TypeError...: the template's
        raise RenderError(field, _describe(error)) from None


def profile_context(profile: dict[str, Any]) -> dict[str, Any]:
    """Attributes at the top level for short templates, and the whole profile as ``profile``."""
    attributes = profile.get("attributes") or {}
    context: dict[str, Any] = dict(attributes)
    context["profile"] = profile
    return context


def render_message(content: PushContent, ttl_s: int | None, profile: dict[str, Any]) -> PushMessage:
    """The push for one profile; raises RenderError only."""
    rendered = _render_fields(_environment(), content, profile_context(profile))
    fields: dict[str, Any] = content.model_dump(exclude=set(TEMPLATED_FIELDS) | {"data"})
    fields.update({f: rendered[f] for f in TEMPLATED_FIELDS})
    fields["data"] = {key: rendered[f"data.{key}"] or "" for key in content.data}
    try:
        return PushMessage(ttl_s=ttl_s, **fields)
    except ValueError as error:
        raise RenderError("message", str(error)) from None


def _render_fields(
    environment: BudgetedSandbox, content: PushContent, context: dict[str, Any]
) -> dict[str, str | None]:
    """Every templated field (``data.KEY`` for the data values), under one budget."""
    sources: dict[str, str | None] = {f: getattr(content, f) for f in TEMPLATED_FIELDS}
    sources.update({f"data.{key}": value for key, value in content.data.items()})
    with budget():
        return {
            field: None if source is None else _render_text(environment, field, source, context)
            for field, source in sources.items()
        }


def preview_message(node: PushNode) -> tuple[PushMessage | None, list[tuple[str, str]]]:
    """Compile every template and render it against a stand-in profile under the same
    budget as a send, for validation (a runaway template is found before a run) and the
    payload-size estimate."""
    problems: list[tuple[str, str]] = []
    fields: dict[str, Any] = node.content.model_dump(exclude=set(TEMPLATED_FIELDS) | {"data"})
    sources: dict[str, str | None] = {f: getattr(node.content, f) for f in TEMPLATED_FIELDS}
    sources.update({f"data.{k}": v for k, v in node.content.data.items()})
    rendered: dict[str, str | None] = {}
    environment = _preview_environment()
    with budget() as spent:
        for field, source in sources.items():
            if source is None:
                rendered[field] = None
                continue
            if spent.exhausted:
                # the budget ran out in an earlier field: this one can only be compiled
                compiled = _compile(environment, source)
                if isinstance(compiled, str):
                    problems.append((field, f"template error: {compiled}"))
                continue
            try:
                rendered[field] = _render_text(environment, field, source, {})
            except RenderError as error:
                problems.append((field, f"template error: {error.reason}"))
    if problems:
        return None, problems
    for field in TEMPLATED_FIELDS:
        fields[field] = rendered[field]
    fields["data"] = {k: rendered[f"data.{k}"] or "" for k in node.content.data}
    ttl_s = int(node.ttl.total_seconds()) if node.ttl is not None else None
    return PushMessage(ttl_s=ttl_s, **fields), problems
