"""What a journey's templates read from the profile, and the warnings when nothing provides it.

A template may read a profile field (``{{ profile.email }}``), a profile attribute
(``{{ first_name }}`` or ``{{ profile.attributes.first_name }}``), or a name it sets itself
(``{% set n = 3 %}``, a loop variable). An attribute is something the journey expects its
audience to carry: it declares it under ``attributes:``. A template reading an attribute the
journey does not declare, or a profile field that does not exist, fails at send time for every
profile without it, so validation warns about it first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from jinja2 import TemplateSyntaxError, nodes

from tidings.journeys.model import JourneyDefinition, PushContent, PushNode
from tidings.journeys.render import TEMPLATED_FIELDS, template_environment
from tidings.journeys.validation import JourneyIssue

# The keys of the ``profile`` a template sees (tidings.store.targeting builds it).
PROFILE_FIELDS = ("id", "email", "locale", "timezone", "attributes")


@dataclass(frozen=True)
class TemplateRead:
    """One thing a template reads: ``attribute`` (an attribute's top-level name),
    ``profile_field`` (a key of ``profile``)."""

    kind: str
    name: str


def template_reads(source: str) -> set[TemplateRead]:
    """What ``source`` reads from the profile; nothing when it does not compile (validation
    reports that already)."""
    if "{" not in source:
        return set()
    environment = template_environment()
    try:
        tree = environment.parse(source)
    except TemplateSyntaxError:
        return set()
    reads: set[TemplateRead] = set()
    assigned = _assigned_names(tree)
    for node in tree.find_all((nodes.Name, nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Name):
            local = node.name in assigned or node.name in environment.globals
            if node.ctx == "load" and not local and node.name != "profile":
                reads.add(TemplateRead("attribute", node.name))
            continue
        if not isinstance(node, nodes.Getattr | nodes.Getitem):
            continue
        key = _constant_key(node)
        parent = node.node
        if isinstance(parent, nodes.Name) and parent.name == "profile" and key is not None:
            reads.add(TemplateRead("profile_field", key))
        elif (
            isinstance(parent, nodes.Getattr | nodes.Getitem)
            and isinstance(parent.node, nodes.Name)
            and parent.node.name == "profile"
            and _constant_key(parent) == "attributes"
            and key is not None
        ):
            reads.add(TemplateRead("attribute", key))
    return reads


def _constant_key(node: nodes.Getattr | nodes.Getitem) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None


def _assigned_names(tree: nodes.Template) -> set[str]:
    return {name.name for name in tree.find_all(nodes.Name) if name.ctx in ("store", "param")}


def _sources(content: PushContent) -> Iterator[tuple[str, str]]:
    for field in TEMPLATED_FIELDS:
        source = getattr(content, field)
        if source is not None:
            yield field, source
    for key, value in content.data.items():
        yield f"data.{key}", value


def template_warnings(definition: JourneyDefinition) -> list[JourneyIssue]:
    """A template reading an attribute the journey does not declare (``attributes:``) or a
    profile field that does not exist, by node and field."""
    declared = set(definition.attributes)
    warnings: list[JourneyIssue] = []
    for node in definition.nodes:
        if not isinstance(node, PushNode):
            continue
        contents = [("content", node.content)]
        contents += [(f"locales.{tag}", variant) for tag, variant in node.locales.items()]
        for where, content in contents:
            for field, source in _sources(content):
                for read in sorted(template_reads(source), key=lambda r: (r.kind, r.name)):
                    message = _unprovided(read, declared)
                    if message is not None:
                        warnings.append(JourneyIssue(node.id, f"{where}.{field}", message))
    return warnings


def _unprovided(read: TemplateRead, declared: set[str]) -> str | None:
    if read.kind == "profile_field":
        if read.name in PROFILE_FIELDS:
            return None
        return (
            f"reads profile.{read.name}, which no profile has (profile fields: "
            f"{', '.join(PROFILE_FIELDS)})"
        )
    if read.name in declared:
        return None
    return (
        f"reads the attribute {read.name!r}, which the journey does not declare: add it "
        "under attributes: if the audience carries it (a profile without it fails this push)"
    )
