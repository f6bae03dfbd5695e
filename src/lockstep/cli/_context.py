"""Where the CLI finds the services and its credential: the supervisor's state directory,
unless overridden by options, a named profile or environment variables.

Remote deployments (compose, Kubernetes through a port-forward, other hosts) are reached
with ``--address`` / ``--token`` or a profile (``--profile NAME``, env LOCKSTEP_PROFILE),
given before the command (``lockstep --profile compose run ...``) or, on the commands
that take them, after it. Profiles live in ``$LOCKSTEP_HOME/profiles.toml`` (env
LOCKSTEP_PROFILES names another file)::

    [profiles.compose]
    orchestrator = "127.0.0.1:7070"    # one address per service
    telemetry = "127.0.0.1:7090"
    inference = "127.0.0.1:7080"
    tokens = "/path/deploy/secrets/tokens.json"   # role -> token file (or token = "...")
    keys = "/path/deploy/keys"         # keys/signing/*.key signs modules for `run`
    tls_ca = "/path/ca.crt"            # optional: TLS, with a client certificate for mTLS
    tls_cert = "/path/client.crt"
    tls_key = "/path/client.key"
"""

from __future__ import annotations

import contextlib
import json
import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer

from lockstep.auth import Role, TokenStore
from lockstep.cli._app import app
from lockstep.dial import AuthedChannel
from lockstep.errors import ConfigError, LockstepError
from lockstep.supervisor import SupervisorState, default_state_dir
from lockstep.tls import TLSConfig

PROFILE_SERVICES = ("orchestrator", "telemetry", "inference")
_PROFILE_KEYS = frozenset(
    {
        *PROFILE_SERVICES,
        "token",
        "tokens",
        "keys",
        "tls_ca",
        "tls_cert",
        "tls_key",
        "tls_server_name",
    }
)


@dataclass(frozen=True)
class Profile:
    """A named remote deployment: service addresses, credentials, signing keys, TLS."""

    name: str
    addresses: dict[str, str] = field(default_factory=dict)
    token: str | None = None
    tokens: Path | None = None
    keys: Path | None = None
    tls: TLSConfig | None = None

    def token_for(self, role: Role) -> str | None:
        if self.token:
            return self.token
        return TokenStore.load(self.tokens).token(role) if self.tokens else None


def profiles_path() -> Path:
    env = os.environ.get("LOCKSTEP_PROFILES")
    return Path(env) if env else default_state_dir() / "profiles.toml"


def _read_profiles(path: Path) -> dict[str, dict[str, Any]]:
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"profiles file {path} is unreadable: {exc}") from None
    profiles = raw.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError(f"profiles file {path}: [profiles] must be a table")
    return profiles


def load_profile(name: str) -> Profile:
    """The profile `name`, or a clear error naming the file and the known profiles."""
    path = profiles_path()
    profiles = _read_profiles(path)
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(
            f"no profile {name!r} in {path} (known: {known}); see `lockstep profile set`"
        )
    data = profiles[name]
    unknown = set(data) - _PROFILE_KEYS
    if unknown:
        raise ConfigError(f"profile {name!r} in {path}: unknown keys {sorted(unknown)}")

    def path_of(key: str) -> Path | None:
        value = data.get(key)
        return Path(value).expanduser() if value else None

    tls = None
    if data.get("tls_ca") or data.get("tls_cert"):
        tls = TLSConfig(
            cert=path_of("tls_cert"),
            key=path_of("tls_key"),
            ca=path_of("tls_ca"),
            server_name=data.get("tls_server_name") or None,
        )
    return Profile(
        name=name,
        addresses={s: str(data[s]) for s in PROFILE_SERVICES if s in data},
        token=data.get("token") or None,
        tokens=path_of("tokens"),
        keys=path_of("keys"),
        tls=tls,
    )


def save_profile(name: str, values: dict[str, str]) -> Path:
    """Add or replace profile `name` (string values only) in the profiles file (0600)."""
    unknown = set(values) - _PROFILE_KEYS
    if unknown:
        raise ConfigError(f"unknown profile keys {sorted(unknown)}")
    path = profiles_path()
    profiles = _read_profiles(path)
    profiles[name] = {k: v for k, v in values.items() if v}
    lines = ["# Lockstep CLI profiles (`lockstep --profile NAME ...`); see docs/clients.md."]
    for pname in sorted(profiles):
        lines += ["", f"[profiles.{json.dumps(pname)}]"]
        lines += [f"{key} = {json.dumps(str(value))}" for key, value in profiles[pname].items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


# What the remote options chose for this invocation: the root's callbacks run on every
# invocation (value or None) and reset it; a command's own options override them.
_chosen: dict[str, str | None] = {"address": None, "token": None, "profile": None}
_local_only: list[bool] = [False]


@contextlib.contextmanager
def local_only() -> Iterator[None]:
    """Within: connect() ignores remote options, profiles and address variables (the
    private deployment of `run --local` / `demo`)."""
    _local_only.append(True)
    try:
        yield
    finally:
        _local_only.pop()


def _remember(key: str) -> Any:
    def callback(ctx: typer.Context, value: str | None) -> str | None:
        if ctx.parent is None or value:
            _chosen[key] = value or None
        return value

    return callback


def _remote(key: str) -> str | None:
    return None if _local_only[-1] else _chosen[key]


RemoteAddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        callback=_remember("address"),
        expose_value=False,
        help="address of the service this command talks to (HOST:PORT) [default: profile, "
        "$LOCKSTEP_<SERVICE>_ADDRESS, the state directory]",
    ),
]
RemoteTokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        callback=_remember("token"),
        expose_value=False,
        help="bearer token [default: profile, $LOCKSTEP_TOKEN, the state directory's]",
    ),
]
ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        callback=_remember("profile"),
        expose_value=False,
        envvar="LOCKSTEP_PROFILE",
        help="named remote deployment from profiles.toml [env LOCKSTEP_PROFILE]",
    ),
]


@app.callback()
def _remote_options(
    address: RemoteAddressOption = None,
    token: RemoteTokenOption = None,
    profile: ProfileOption = None,
) -> None:
    """Remote options given before the command apply to whichever service it talks to."""


def remote_address() -> str | None:
    """The --address given to this invocation, if any."""
    return _remote("address")


def remote_selected() -> bool:
    """Whether this invocation names a remote deployment (--profile, --address, env)."""
    return bool(
        _remote("address")
        or _remote("profile")
        or (os.environ.get("LOCKSTEP_PROFILE") and not _local_only[-1])
    )


def current_profile() -> Profile | None:
    if _local_only[-1]:
        return None
    name = _remote("profile") or os.environ.get("LOCKSTEP_PROFILE")
    return load_profile(name) if name else None


def signing_key_override() -> Path | None:
    """The signing key of the selected profile (modules `run` registers), if it has one."""
    profile = current_profile()
    if profile is None or profile.keys is None:
        return None
    keys = sorted((profile.keys / "signing").glob("*.key"))
    return keys[0] if keys else None


StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir", help="supervisor state directory (env LOCKSTEP_HOME, default ~/.lockstep)"
    ),
]


def state_dir(value: Path | None) -> Path:
    return value if value is not None else default_state_dir()


def running_state(value: Path | None) -> SupervisorState:
    """The state of a running deployment, or a clear error."""
    directory = state_dir(value)
    state = SupervisorState.load(directory)
    if state is None or not state.supervisor_alive():
        raise ConfigError(
            f"Lockstep is not running (no live supervisor in {directory}); "
            "start it with `lockstep up`"
        )
    return state


def connect(
    service: str,
    role: Role,
    state_dir_opt: Path | None = None,
    address: str | None = None,
    token: str | None = None,
) -> grpc.Channel:
    """A channel to `service` carrying a token for `role`.

    Address: `address`, else --address, else the profile's, else
    $LOCKSTEP_<SERVICE>_ADDRESS, else the state file.
    Token: `token`, else --token, else the profile's, else $LOCKSTEP_TOKEN, else the state
    directory's token file. TLS: the profile's, else $LOCKSTEP_TLS_* (lockstep.tls).
    """
    profile = current_profile()
    address = (
        address
        or _remote("address")
        or (profile.addresses.get(service) if profile else None)
        or (os.environ.get(f"LOCKSTEP_{service.upper()}_ADDRESS") if not _local_only[-1] else None)
    )
    token = (
        token
        or _remote("token")
        or (profile.token_for(role) if profile else None)
        or (os.environ.get("LOCKSTEP_TOKEN") if not _local_only[-1] else None)
    )
    if profile is not None and (address is None or token is None):
        missing = "address for " + service if address is None else "token"
        raise ConfigError(f"profile {profile.name!r} has no {missing}")
    if address is None or token is None:
        state = running_state(state_dir_opt)
        address = address or state.service(service).address
        token = token or TokenStore.load(state.tokens_path).token(role)
    return AuthedChannel(address, token, tls=profile.tls if profile else None)


def fail(exc: LockstepError | str, code: int = 2) -> typer.Exit:
    """Print one line on stderr and return the Exit to raise."""
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)
