"""Drive simulators running in another process (the demo, the benchmark) over the control API."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Literal

import httpx

from .records import SimRecord, SimSummary, TokenSummary
from .scenario import Scenario

ProviderName = Literal["apns", "fcm"]


class SimulatorClient:
    """The in-process simulator operations, over HTTP. Use as ``async with``."""

    def __init__(
        self,
        control_url: str,
        *,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=control_url, timeout=timeout_s, transport=transport)

    async def __aenter__(self) -> SimulatorClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    async def healthz(self) -> bool:
        return bool((await self._call("GET", "/healthz"))["status"] == "ok")

    async def create_apns_key(self, team_id: str, key_id: str, topics: list[str]) -> str:
        """PKCS8 PEM of a new signing key for ``team_id``/``key_id``, allowed ``topics``."""
        body = {"team_id": team_id, "key_id": key_id, "topics": topics}
        return str((await self._call("POST", "/apns/keys", json=body))["key_pem"])

    async def create_apns_client_certificate(self, topics: list[str]) -> tuple[str, str]:
        """(certificate PEM, key PEM) for APNs certificate auth."""
        data = await self._call("POST", "/apns/client-certificates", json={"topics": topics})
        return str(data["cert_pem"]), str(data["key_pem"])

    async def create_fcm_service_account(self, project_id: str) -> dict[str, str]:
        data: dict[str, str] = await self._call(
            "POST", "/fcm/service-accounts", json={"project_id": project_id}
        )
        return data

    async def expire_fcm_access_tokens(self, project_id: str | None = None) -> None:
        params = {"project_id": project_id} if project_id else {}
        await self._call("POST", "/fcm/expire-access-tokens", params=params)

    async def set_scenario(
        self, provider: ProviderName, scenario: Scenario | dict[str, Any]
    ) -> None:
        if isinstance(scenario, Scenario):
            scenario = scenario.model_dump(mode="json", exclude_defaults=True)
        await self._call("PUT", f"/{provider}/scenario", json=scenario)

    async def get_scenario(self, provider: ProviderName) -> Scenario:
        return Scenario.model_validate(await self._call("GET", f"/{provider}/scenario"))

    async def mark_unregistered(
        self, provider: ProviderName, tokens: list[str], at_ms: int | None = None
    ) -> None:
        body = {"tokens": tokens, "at_ms": at_ms}
        await self._call("POST", f"/{provider}/unregistered", json=body)

    async def records(
        self,
        provider: ProviderName,
        tracking_id: str | None = None,
        token: str | None = None,
        *,
        accepted_only: bool = False,
    ) -> list[SimRecord]:
        params: dict[str, str] = {}
        if tracking_id is not None:
            params["tracking_id"] = tracking_id
        if token is not None:
            params["token"] = token
        if accepted_only:
            params["accepted_only"] = "true"
        data = await self._call("GET", f"/{provider}/records", params=params)
        return [SimRecord.from_dict(d) for d in data]

    async def accepted(
        self, provider: ProviderName, tracking_id: str | None = None, token: str | None = None
    ) -> list[SimRecord]:
        return await self.records(provider, tracking_id, token, accepted_only=True)

    async def displayed(self, provider: ProviderName, token: str) -> list[SimRecord]:
        data = await self._call("GET", f"/{provider}/displayed", params={"token": token})
        return [SimRecord.from_dict(d) for d in data]

    async def summary(self, provider: ProviderName) -> SimSummary:
        """Per token: requests, accepted pushes, distinct tracking ids among them, and
        notifications shown; plus the stats. One call for thousands of devices."""
        data = await self._call("GET", f"/{provider}/summary")
        tokens = {token: TokenSummary(*counts) for token, counts in data["tokens"].items()}
        return SimSummary(tokens, data["stats"])

    async def reset(self) -> None:
        await self._call("POST", "/reset")

    async def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = await self._call("GET", "/stats")
        return data
