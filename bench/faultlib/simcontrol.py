"""The simulators' control API as the fault suite uses it: raw records (so fields newer than
this tree's ``SimRecord``, such as ``display_key``, are kept), request totals, scenarios."""

from __future__ import annotations

from typing import Any

import httpx

PROVIDERS = ("apns", "fcm")
OPTIONAL_ACTIONS = ("refuse", "answer_lost")
BASE_ACTIONS = frozenset({"goaway", "reset", "hang"})
# actions that cut a connection or an answer (a hung stream loses only its own answer, and
# the provider did not take that push)
# the reasons the simulators record for the request that carried the fault
CONNECTION_FAULTS = frozenset({"goaway-refused", "reset", "refused", "answer_lost"})


class SimControl:
    def __init__(self, control_url: str) -> None:
        self._http = httpx.AsyncClient(base_url=control_url, timeout=60)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    async def set_scenario(self, provider: Any, scenario: dict[str, Any]) -> None:
        await self._call("PUT", f"/{provider}/scenario", json=scenario)

    async def reset(self) -> None:
        await self._call("POST", "/reset")

    async def mark_unregistered(self, provider: str, tokens: list[str]) -> None:
        await self._call("POST", f"/{provider}/unregistered", json={"tokens": tokens})

    async def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = await self._call("GET", "/stats")
        return data

    async def total_requests(self) -> int:
        stats = await self.stats()
        return sum(int(stats[p]["requests"]) for p in PROVIDERS)

    async def records(self, provider: str, *, accepted_only: bool = False) -> list[dict[str, Any]]:
        """Every request the simulator answered (or only those it accepted for delivery), as
        the control API returns them."""
        params = {"accepted_only": "true"} if accepted_only else {}
        records: list[dict[str, Any]] = await self._call(
            "GET", f"/{provider}/records", params=params
        )
        return records

    async def supported_actions(self) -> frozenset[str]:
        """The fault actions the simulators accept: the three every version has, plus the
        newer ones a scenario with them is not refused for."""
        found = set(BASE_ACTIONS)
        for action in OPTIONAL_ACTIONS:
            probe = {"mix": [{"percent": 0.001, "answer": {"action": action}}]}
            response = await self._http.put("/apns/scenario", json=probe)
            if response.status_code == 200:
                found.add(action)
        for provider in PROVIDERS:
            await self.set_scenario(provider, {})
        return frozenset(found)


def connection_faults(records: dict[str, list[dict[str, Any]]]) -> dict[str, list[float]]:
    """By provider, when the simulator broke a connection (or dropped an answer) on purpose:
    the answers in flight on it may be lost although the provider took them."""
    return {
        provider: sorted(
            float(r["received_at"]) for r in found if r.get("reason") in CONNECTION_FAULTS
        )
        for provider, found in records.items()
    }
