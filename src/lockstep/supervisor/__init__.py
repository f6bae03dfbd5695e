"""The local supervisor behind `lockstep up`: one process per service, health-checked."""

from lockstep.supervisor._state import (
    ServiceState,
    SupervisorState,
    default_state_dir,
    pid_alive,
)
from lockstep.supervisor._supervisor import (
    Supervisor,
    SupervisorConfig,
    run_supervisor,
    service_plan,
)

__all__ = [
    "ServiceState",
    "Supervisor",
    "SupervisorConfig",
    "SupervisorState",
    "default_state_dir",
    "pid_alive",
    "run_supervisor",
    "service_plan",
]
