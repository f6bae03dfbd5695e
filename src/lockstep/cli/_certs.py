"""`lockstep certs`, `lockstep deploy init` and `lockstep profile`: what a deployment on
containers or other hosts needs (deploy/README.md, docs/clients.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from lockstep.auth import write_token_file
from lockstep.cli._app import app
from lockstep.cli._context import (
    PROFILE_SERVICES,
    fail,
    load_profile,
    profiles_path,
    save_profile,
)
from lockstep.errors import ConfigError, LockstepError
from lockstep.tls import issue, make_ca

__all__ = ["certs", "deploy_init", "profile_app"]

console = Console()
deploy_app = typer.Typer(
    help="Set up a deployment on containers (compose, Kubernetes).", no_args_is_help=True
)
app.add_typer(deploy_app, name="deploy")
profile_app = typer.Typer(
    help="Named remote deployments for `lockstep --profile NAME ...`.", no_args_is_help=True
)
app.add_typer(profile_app, name="profile")

DEFAULT_CLIENT = "client"


def service_names(pools: int) -> list[str]:
    return [
        "orchestrator",
        "telemetry",
        "inference",
        *(f"pool-{i}" for i in range(pools)),
        "dashboard",
    ]


def make_certs(
    directory: Path,
    names: list[str],
    hosts: dict[str, list[str]],
    shared_hosts: list[str],
    container_readable: bool,
    force: bool,
) -> list[Path]:
    """A CA in `directory` (kept if there, unless `force`) and one certificate per name."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    if force or not (directory / "ca.crt").exists():
        make_ca(directory)
    written = []
    for name in names:
        crt, _key = issue(
            directory,
            directory,
            name,
            [*hosts.get(name, []), *shared_hosts],
            key_mode=0o644 if container_readable else 0o600,
        )
        written.append(crt)
    return written


@app.command()
def certs(
    directory: Annotated[Path, typer.Argument(help="where to write ca.crt and NAME.crt/.key")],
    pools: Annotated[int, typer.Option(min=0, help="pool certificates pool-0..pool-N-1")] = 2,
    name: Annotated[
        list[str] | None,
        typer.Option(
            "--name",
            help="only these certificates, NAME or NAME=HOST,HOST (repeatable; "
            "default: every service and `client`)",
        ),
    ] = None,
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host", help="extra DNS name or IP address in every certificate (repeatable)"
        ),
    ] = None,
    container_readable: Annotated[
        bool,
        typer.Option(
            help="keys 0644 inside the owner-only directory, for containers' service user"
        ),
    ] = False,
    force: Annotated[bool, typer.Option(help="make a new CA even if one is there")] = False,
) -> None:
    """Make a local CA and per-service certificates (server and client auth) for TLS/mTLS.

    Every certificate names itself, localhost, 127.0.0.1 and ::1; services on other hosts
    need their host names or addresses (--name pool-0=10.0.0.5 or --host)."""
    names: list[str] = []
    hosts: dict[str, list[str]] = {}
    for item in name or [*service_names(pools), DEFAULT_CLIENT]:
        base, _sep, extra = item.partition("=")
        if not base:
            raise fail(f"bad --name {item!r}: expected NAME or NAME=HOST,HOST")
        names.append(base)
        hosts[base] = [h for h in extra.split(",") if h]
    try:
        written = make_certs(directory, names, hosts, host or [], container_readable, force)
    except (LockstepError, OSError) as exc:
        raise fail(str(exc)) from None
    console.print(
        f"CA {directory / 'ca.crt'}; certificates: {', '.join(p.stem for p in written)}",
        soft_wrap=True,
    )


@deploy_app.command("init")
def deploy_init(
    directory: Annotated[
        Path, typer.Option("--dir", help="deployment directory (docker-compose.yml reads ./deploy)")
    ] = Path("deploy"),
    profile: Annotated[str, typer.Option(help="CLI profile to write for this deployment")] = (
        "compose"
    ),
    orchestrator: Annotated[str, typer.Option(help="orchestrator address for the profile")] = (
        "127.0.0.1:7070"
    ),
    telemetry: Annotated[str, typer.Option(help="telemetry address for the profile")] = (
        "127.0.0.1:7090"
    ),
    inference: Annotated[str, typer.Option(help="inference address for the profile")] = (
        "127.0.0.1:7080"
    ),
    tls: Annotated[bool, typer.Option(help="also make a CA and certificates (DIR/tls)")] = False,
    pools: Annotated[int, typer.Option(min=1, help="pool certificates with --tls")] = 2,
    force: Annotated[bool, typer.Option(help="replace existing tokens and keys")] = False,
) -> None:
    """Everything a container deployment needs, in one step: credentials readable by the
    containers' user, a module signing key whose public half the orchestrator trusts, and
    a CLI profile (`lockstep --profile compose run ...`)."""
    from lockstep.supervisor._supervisor import local_signing_key, make_signing_key

    directory = directory.resolve()
    secrets = directory / "secrets"
    tokens = secrets / "tokens.json"
    try:
        if tokens.exists() and not force:
            console.print(f"kept {tokens} (--force replaces it)")
        else:
            secrets.mkdir(parents=True, exist_ok=True)
            # The directory is the owner's only; the file is readable inside it so that the
            # bind-mounted secret can be read by the containers' user (uid 10001).
            secrets.chmod(0o700)
            write_token_file(tokens)
            tokens.chmod(0o644)
            console.print(f"wrote {tokens} (in an owner-only directory)")
        # The dashboard's credential: the viewer token alone (docs/dashboard.md).
        from lockstep.supervisor._dashboard import VIEWER_TOKEN_FILE, write_viewer_token

        write_viewer_token(tokens, secrets / VIEWER_TOKEN_FILE).chmod(0o644)
        keys = directory / "keys"
        if force:
            for old in [*(keys / "signing").glob("*"), *(keys / "trusted").glob("*.pub")]:
                old.unlink()
        key = local_signing_key(directory)
        if key is None:
            key = make_signing_key(keys)
            console.print(f"made signing key {key} (trusted: {keys / 'trusted'})")
        else:
            console.print(f"kept signing key {key}")
        (keys / "trusted").chmod(0o755)
        for pub in (keys / "trusted").glob("*.pub"):
            pub.chmod(0o644)
        values = {
            "orchestrator": orchestrator,
            "telemetry": telemetry,
            "inference": inference,
            "tokens": str(tokens),
            "keys": str(keys),
        }
        if tls:
            tls_dir = secrets / "tls"
            make_certs(
                tls_dir,
                [*service_names(pools), DEFAULT_CLIENT],
                {f"pool-{i}": [f"pool-{i}"] for i in range(pools)},
                [],
                True,
                force,
            )
            values |= {
                "tls_ca": str(tls_dir / "ca.crt"),
                "tls_cert": str(tls_dir / f"{DEFAULT_CLIENT}.crt"),
                "tls_key": str(tls_dir / f"{DEFAULT_CLIENT}.key"),
            }
            console.print(f"made TLS CA and certificates in {tls_dir}")
        path = save_profile(profile, values)
    except (LockstepError, OSError) as exc:
        raise fail(str(exc)) from None
    console.print(
        f"profile {profile!r} written to {path}: `lockstep --profile {profile} run SCENARIO`",
        soft_wrap=True,
    )


@profile_app.command("set")
def profile_set(
    name: Annotated[str, typer.Argument(help="profile name")],
    orchestrator: Annotated[str, typer.Option(help="orchestrator HOST:PORT")] = "",
    telemetry: Annotated[str, typer.Option(help="telemetry HOST:PORT")] = "",
    inference: Annotated[str, typer.Option(help="inference HOST:PORT")] = "",
    token: Annotated[str, typer.Option(help="one bearer token for every call")] = "",
    tokens: Annotated[str, typer.Option(help="role -> token JSON file")] = "",
    keys: Annotated[str, typer.Option(help="keys directory (keys/signing/*.key)")] = "",
    tls_ca: Annotated[str, typer.Option(help="CA certificate: use TLS")] = "",
    tls_cert: Annotated[str, typer.Option(help="client certificate (mTLS)")] = "",
    tls_key: Annotated[str, typer.Option(help="its key")] = "",
) -> None:
    """Add or replace a profile (e.g. for a Kubernetes port-forward)."""
    values = {
        "orchestrator": orchestrator,
        "telemetry": telemetry,
        "inference": inference,
        "token": token,
        "tokens": str(Path(tokens).resolve()) if tokens else "",
        "keys": str(Path(keys).resolve()) if keys else "",
        **{
            k: str(Path(v).resolve()) if v else ""
            for k, v in (("tls_ca", tls_ca), ("tls_cert", tls_cert), ("tls_key", tls_key))
        },
    }
    try:
        path = save_profile(name, values)
        load_profile(name)
    except (ConfigError, OSError) as exc:
        raise fail(str(exc)) from None
    console.print(f"profile {name!r} written to {path}")


@profile_app.command("list")
def profile_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The profiles and their service addresses."""
    import tomllib

    path = profiles_path()
    try:
        raw = tomllib.loads(path.read_text()).get("profiles", {}) if path.exists() else {}
    except (OSError, ValueError) as exc:
        raise fail(f"{path}: {exc}") from None
    if as_json:
        print(json.dumps(raw, indent=2))
        return
    if not raw:
        console.print(f"no profiles in {path}")
    for pname, data in sorted(raw.items()):
        where = ", ".join(f"{s} {data[s]}" for s in PROFILE_SERVICES if s in data)
        tls = " (TLS)" if data.get("tls_ca") else ""
        console.print(f"{pname}: {where}{tls}", soft_wrap=True)
