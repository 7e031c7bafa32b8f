"""Protocol-faithful APNs and FCM simulators with fault injection.

The real clients (aioapns, firebase-admin) talk to these over real sockets: TLS with the
providers' host names, HTTP/2, the providers' authentication and their exact error answers.
Start them in-process with :class:`Simulators`, or as a service with ``python -m tidings.sim``
and drive them from elsewhere with :class:`SimulatorClient`.
"""

from .client import SimulatorClient
from .records import SimRecord, SimSummary, TokenSummary
from .runner import (
    SimulatorEndpoints,
    Simulators,
    SimulatorsRunning,
    read_endpoints,
    running_simulators,
    serve,
    shared_simulators,
)
from .scenario import Answer, FixedLatency, LognormalLatency, MixEntry, Scenario, UniformLatency

__all__ = [
    "Answer",
    "FixedLatency",
    "LognormalLatency",
    "MixEntry",
    "Scenario",
    "SimRecord",
    "SimSummary",
    "SimulatorClient",
    "SimulatorEndpoints",
    "Simulators",
    "SimulatorsRunning",
    "TokenSummary",
    "UniformLatency",
    "read_endpoints",
    "running_simulators",
    "serve",
    "shared_simulators",
]
