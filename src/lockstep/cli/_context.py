"""Where the CLI finds the services and its credential: the supervisor's state directory,
unless overridden by options or environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import grpc
import typer

from lockstep.auth import Role, TokenStore
from lockstep.client import AuthedChannel
from lockstep.errors import ConfigError, LockstepError
from lockstep.supervisor import SupervisorState, default_state_dir

StateDirOption = Annotated[
    Path | None,
    typer.Option("--state-dir",
                 help="supervisor state directory (env LOCKSTEP_HOME, default ~/.lockstep)"),
]


def state_dir(value: Path | None) -> Path:
    return value if value is not None else default_state_dir()


def running_state(value: Path | None) -> SupervisorState:
    """The state of a running deployment, or a clear error."""
    directory = state_dir(value)
    state = SupervisorState.load(directory)
    if state is None or not state.supervisor_alive():
        raise ConfigError(f"Lockstep is not running (no live supervisor in {directory}); "
                          "start it with `lockstep up`")
    return state


def connect(service: str, role: Role, state_dir_opt: Path | None = None,
            address: str | None = None, token: str | None = None) -> grpc.Channel:
    """A channel to `service` carrying a token for `role`.

    Address: `address`, else $LOCKSTEP_<SERVICE>_ADDRESS, else the state file.
    Token: `token`, else $LOCKSTEP_TOKEN, else the state directory's token file.
    """
    address = address or os.environ.get(f"LOCKSTEP_{service.upper()}_ADDRESS")
    token = token or os.environ.get("LOCKSTEP_TOKEN")
    if address is None or token is None:
        state = running_state(state_dir_opt)
        address = address or state.service(service).address
        token = token or TokenStore.load(state.tokens_path).token(role)
    return AuthedChannel(address, token)


def fail(exc: LockstepError | str, code: int = 2) -> typer.Exit:
    """Print one line on stderr and return the Exit to raise."""
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)
