"""The Lockstep orchestrator service: lifecycle, tick clock, routing, journal."""

from lockstep_orchestrator._service import OrchestratorConfig, OrchestratorServicer, create_server

__all__ = ["OrchestratorConfig", "OrchestratorServicer", "create_server"]
