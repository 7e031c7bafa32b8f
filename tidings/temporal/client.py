"""Connecting to Temporal the way Temporal's own tools do.

TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_* and the TOML client
config file (TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE) are read by ``temporalio.envconfig``.
When none of them names a server, tidings runs embedded (see tidings.temporal.devserver).
A ``.env`` file in the working directory is read for them too, as it is for ``TIDINGS_*``;
the process environment wins over the file.
"""

from __future__ import annotations

import os

from dotenv import dotenv_values
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig, ClientConnectConfig
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from tidings.observe import tracing

_runtimes: dict[str, Runtime] = {}

DOTENV = ".env"


def temporal_environment() -> dict[str, str]:
    """Temporal's variables from ``.env``, overridden by the process environment."""
    from_file = {
        name: value
        for name, value in dotenv_values(DOTENV).items()
        if name.startswith("TEMPORAL_") and value is not None
    }
    return from_file | dict(os.environ)


def connect_config() -> ClientConnectConfig:
    return ClientConfig.load_client_connect_config(override_env_vars=temporal_environment())


def configured_address() -> str | None:
    """The server Temporal's configuration names, or None for the embedded dev server."""
    return connect_config().get("target_host")


def metrics_runtime(bind_address: str) -> Runtime:
    """A Temporal runtime whose SDK metrics Prometheus scrapes at ``bind_address``: one per
    address for the process (a runtime cannot be shut down, and its port stays bound)."""
    runtime = _runtimes.get(bind_address)
    if runtime is None:
        runtime = Runtime(
            telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind_address))
        )
        _runtimes[bind_address] = runtime
    return runtime


async def connect(target_host: str | None = None, *, runtime: Runtime | None = None) -> Client:
    """A client with tidings' data converter (pydantic models and dataclasses); ``runtime``:
    the Temporal runtime it runs on (the SDK's default one if none)."""
    config = connect_config()
    if runtime is not None:
        config["runtime"] = runtime  # type: ignore[typeddict-unknown-key]
    interceptors = tracing.temporal_interceptors()
    if interceptors:
        config["interceptors"] = interceptors  # type: ignore[typeddict-unknown-key]
    if target_host is not None:
        config["target_host"] = target_host
    if "target_host" not in config:
        raise RuntimeError("no Temporal server configured and none started")
    return await Client.connect(data_converter=pydantic_data_converter, **config)


def traced(client: Client) -> Client:
    """``client``, or a client on the same connection that also carries tracing's
    interceptors when tracing is on and ``client`` was made without them (by another library,
    or before tracing was turned on): work it starts then joins the caller's trace."""
    config = client.config()
    wanted = tracing.temporal_interceptors()
    if not wanted or tracing.has_tracing(config["interceptors"]):
        return client
    config["interceptors"] = [*config["interceptors"], *wanted]
    return Client(**config)
