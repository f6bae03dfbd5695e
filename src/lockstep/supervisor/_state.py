"""The state file that `lockstep up` writes and every other command reads."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from lockstep.errors import ConfigError

STATE_FILE = "state.json"
TOKENS_FILE = "tokens.json"


def default_state_dir() -> Path:
    """$LOCKSTEP_HOME, else ~/.lockstep."""
    env = os.environ.get("LOCKSTEP_HOME")
    return Path(env).expanduser() if env else Path.home() / ".lockstep"


@dataclass
class ServiceState:
    """One supervised process as last seen by the supervisor."""

    name: str
    module: str
    address: str = ""
    metrics: str = ""  # HOST:PORT of its Prometheus endpoint ("" when off)
    pid: int = 0
    status: str = "starting"  # starting | serving | restarting | failed | stopped
    restarts: int = 0
    last_exit: int | None = None
    log: str = ""
    error: str = ""


@dataclass
class SupervisorState:
    """Everything `lockstep up` knows; written atomically after each change."""

    state_dir: str
    supervisor_pid: int
    status: str = "starting"  # starting | running | failed | stopping
    error: str = ""
    services: list[ServiceState] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return Path(self.state_dir) / STATE_FILE

    @property
    def tokens_path(self) -> Path:
        return Path(self.state_dir) / TOKENS_FILE

    def service(self, name: str) -> ServiceState:
        for svc in self.services:
            if svc.name == name:
                return svc
        known = ", ".join(s.name for s in self.services)
        raise ConfigError(f"no service {name!r} in this deployment (have: {known})")

    def save(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, state_dir: Path) -> SupervisorState | None:
        """The saved state, or None when there is none."""
        path = state_dir / STATE_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"state file {path} is unreadable: {exc}") from None
        services = [ServiceState(**s) for s in raw.pop("services", [])]
        return cls(services=services, **raw)

    def supervisor_alive(self) -> bool:
        return pid_alive(self.supervisor_pid)


def pid_alive(pid: int) -> bool:
    """True when `pid` names a live (non-zombie) process."""
    if pid <= 0:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
