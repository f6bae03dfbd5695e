"""The Lockstep orchestrator service: lifecycle, tick clock, routing, journal."""

from lockstep_orchestrator._config import DEFAULT_GRANTED, OrchestratorConfig
from lockstep_orchestrator._service import (
    ROLE_TABLE,
    SERVICE_NAME,
    OrchestratorServicer,
    create_server,
)

__all__ = [
    "DEFAULT_GRANTED",
    "ROLE_TABLE",
    "SERVICE_NAME",
    "OrchestratorConfig",
    "OrchestratorServicer",
    "create_server",
]
