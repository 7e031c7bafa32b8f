"""Locale variants of a push: which content a profile gets.

The rule: the variant of the profile's exact locale (``pt-BR``; case and ``-``/``_`` do not
matter), else the variant of its language (``pt``), else the node's default content.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

Content = TypeVar("Content")


def normalise_locale(tag: str) -> str:
    return tag.strip().replace("_", "-").lower()


def choose_variant(
    default: Content, variants: Mapping[str, Content], locale: str | None
) -> tuple[str | None, Content]:
    """(the variant's tag or None for the default, the content) for a profile's locale."""
    if not variants or not locale:
        return None, default
    by_tag = {normalise_locale(tag): tag for tag in variants}
    wanted = normalise_locale(locale)
    for candidate in (wanted, wanted.split("-", 1)[0]):
        tag = by_tag.get(candidate)
        if tag is not None:
            return tag, variants[tag]
    return None, default
