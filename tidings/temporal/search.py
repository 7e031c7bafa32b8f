"""What makes a journey's workflows findable in Temporal's own tools (the Web UI, `temporal
workflow list --query "TidingsJourney='welcome'"`): search attributes, a memo with the
journey's name, and a static summary.

The attributes must be registered on the namespace before a workflow may carry them. The
embedded dev server registers them itself (tidings.temporal.devserver); on a cluster ops run
the `temporal operator search-attribute create` commands of the README. Until they are
registered, runs start without them rather than fail.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import (
    SearchAttributeIndexedValueType,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)

log = logging.getLogger(__name__)

JOURNEY = SearchAttributeKey.for_keyword("TidingsJourney")
JOURNEY_VERSION = SearchAttributeKey.for_int("TidingsJourneyVersion")
APP = SearchAttributeKey.for_keyword("TidingsApp")
RUN = SearchAttributeKey.for_keyword("TidingsRun")
RUN_KIND = SearchAttributeKey.for_keyword("TidingsRunKind")
PROFILE = SearchAttributeKey.for_keyword("TidingsProfile")
KEYS: tuple[SearchAttributeKey[Any], ...] = (JOURNEY, JOURNEY_VERSION, APP, RUN, RUN_KIND, PROFILE)
# as `temporal server start-dev --search-attribute` and `temporal operator search-attribute
# create --type` spell the types
TYPE_NAMES = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
}
RunKind = Literal["audience", "triggered", "scheduled"]

_registered: dict[tuple[str, str], bool] = {}


def type_name(key: SearchAttributeKey[Any]) -> str:
    return TYPE_NAMES[key.indexed_value_type]


def dev_server_flags() -> list[str]:
    flags: list[str] = []
    for key in KEYS:
        flags += ["--search-attribute", f"{key.name}={type_name(key)}"]
    return flags


async def registered(client: Client) -> bool:
    """Whether the client's namespace knows every tidings search attribute (asked once per
    server and namespace)."""
    where = (client.service_client.config.target_host, client.namespace)
    known = _registered.get(where)
    if known is None:
        try:
            answer = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=client.namespace)
            )
            names = set(answer.custom_attributes) | set(answer.system_attributes)
            known = all(key.name in names for key in KEYS)
        except Exception as error:  # no operator access (a cloud API key): go without them
            log.warning("cannot list Temporal's search attributes (%s)", type(error).__name__)
            known = False
        if not known:
            log.warning(
                "Temporal namespace %r lacks tidings' search attributes: runs start without "
                "them (see the README for the commands that register them)",
                client.namespace,
            )
        _registered[where] = known
    return known


def journey_attributes(
    *,
    journey_id: str,
    version: int | None,
    app: str,
    run_id: str,
    kind: RunKind,
    profile_id: str | None = None,
) -> TypedSearchAttributes:
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(JOURNEY, journey_id),
        SearchAttributePair(APP, app),
        SearchAttributePair(RUN, run_id),
        SearchAttributePair(RUN_KIND, kind),
    ]
    if version is not None:
        pairs.append(SearchAttributePair(JOURNEY_VERSION, version))
    if profile_id is not None:
        pairs.append(SearchAttributePair(PROFILE, profile_id))
    return TypedSearchAttributes(pairs)


async def start_options(
    client: Client,
    *,
    journey_id: str,
    journey_name: str,
    version: int | None,
    app: str,
    run_id: str,
    kind: RunKind,
    profile_id: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``client.start_workflow``: the memo and summary always, the
    search attributes once they are registered."""
    options = described(
        journey_id=journey_id,
        journey_name=journey_name,
        version=version,
        app=app,
        profile_id=profile_id,
    )
    if await registered(client):
        options["search_attributes"] = journey_attributes(
            journey_id=journey_id,
            version=version,
            app=app,
            run_id=run_id,
            kind=kind,
            profile_id=profile_id,
        )
    return options


def described(
    *,
    journey_id: str,
    journey_name: str,
    version: int | None,
    app: str,
    profile_id: str | None = None,
) -> dict[str, Any]:
    """The memo and static summary of a journey's workflow (pure: workflows use it too)."""
    version_text = f" v{version}" if version is not None else ""
    who = f"profile {profile_id}" if profile_id is not None else "an audience"
    return {
        "memo": {"journey": journey_name},
        "static_summary": f"{journey_name} ({journey_id}{version_text}) for {who} of {app}",
    }
