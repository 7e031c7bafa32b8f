"""Template rendering in a sandboxed Jinja2 environment.

A template error on one profile is that profile's problem: it is recorded for the profile
(as a not-sent delivery) and never stops the cohort.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tidings.journeys.model import PushContent, PushNode
from tidings.push.message import PushMessage

TEMPLATED_FIELDS = ("title", "subtitle", "body", "image_url", "link")


class RenderError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"content.{field}: {message}")


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


@lru_cache(maxsize=4096)
def _compile(source: str) -> Any:
    return _environment().from_string(source)


def _render_text(field: str, source: str, context: dict[str, Any]) -> str:
    if "{" not in source:
        return source
    try:
        return str(_compile(source).render(context))
    except TemplateError as error:
        raise RenderError(field, error.message or type(error).__name__) from None


def profile_context(profile: dict[str, Any]) -> dict[str, Any]:
    """Attributes at the top level for short templates, and the whole profile as ``profile``."""
    attributes = profile.get("attributes") or {}
    context: dict[str, Any] = dict(attributes)
    context["profile"] = profile
    return context


def render_message(content: PushContent, ttl_s: int | None, profile: dict[str, Any]) -> PushMessage:
    context = profile_context(profile)
    fields: dict[str, Any] = content.model_dump(exclude=set(TEMPLATED_FIELDS) | {"data"})
    for field in TEMPLATED_FIELDS:
        source = getattr(content, field)
        fields[field] = None if source is None else _render_text(field, source, context)
    fields["data"] = {
        key: _render_text(f"data.{key}", value, context) for key, value in content.data.items()
    }
    return PushMessage(ttl_s=ttl_s, **fields)


class _Placeholder(ChainableUndefined):
    """Stands in for any profile value when previewing a template at validation time: it
    renders as 16 characters so the payload-size estimate is not optimistic."""

    def __str__(self) -> str:
        return "x" * 16


@lru_cache(maxsize=1)
def _preview_environment() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(undefined=_Placeholder, autoescape=False)


def preview_message(node: PushNode) -> tuple[PushMessage | None, list[tuple[str, str]]]:
    """Compile every template and render it against a stand-in profile, for validation and
    the payload-size estimate."""
    problems: list[tuple[str, str]] = []
    fields: dict[str, Any] = node.content.model_dump(exclude=set(TEMPLATED_FIELDS) | {"data"})
    sources = {f: getattr(node.content, f) for f in TEMPLATED_FIELDS}
    sources.update({f"data.{k}": v for k, v in node.content.data.items()})
    rendered: dict[str, str | None] = {}
    for field, source in sources.items():
        if source is None:
            rendered[field] = None
            continue
        try:
            rendered[field] = str(_preview_environment().from_string(source).render())
        except TemplateError as error:
            problems.append((field, f"template error: {error.message or type(error).__name__}"))
    if problems:
        return None, problems
    for field in TEMPLATED_FIELDS:
        fields[field] = rendered[field]
    fields["data"] = {k: rendered[f"data.{k}"] or "" for k in node.content.data}
    ttl_s = int(node.ttl.total_seconds()) if node.ttl is not None else None
    return PushMessage(ttl_s=ttl_s, **fields), problems
