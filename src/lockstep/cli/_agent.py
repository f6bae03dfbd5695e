"""`lockstep agent ...`: build agent modules from C or AssemblyScript sources."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

import typer

from lockstep.agents import (
    DEFAULT_VERSION,
    AgentBuildError,
    build_agent,
    example_output_name,
    example_sources,
    examples_dir,
)
from lockstep.cli._app import app
from lockstep.cli._context import StateDirOption, fail, state_dir

__all__ = ["agent_app", "build"]

agent_app = typer.Typer(
    help="Agents: build modules from C (.c) or AssemblyScript (.ts) sources (docs/sdk.md); "
    "spawn, pause, resume, terminate, message, list and inspect agents of the current run.",
    no_args_is_help=True,
)


def default_build_dir(state_dir_opt: Path | None = None) -> Path:
    """Where `--all` puts the example modules: <state dir>/build/agents."""
    return state_dir(state_dir_opt) / "build" / "agents"


def _describe(path: Path) -> str:
    data = path.read_bytes()
    return f"{path}  {len(data):,} bytes  sha256:{hashlib.sha256(data).hexdigest()}"


@agent_app.command()
def build(
    source: Annotated[
        Path | None,
        typer.Argument(metavar="SRC", help="agent source: .c (zig cc) or .ts (AssemblyScript)"),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="module to write (default: SRC with .wasm); with --all, the "
            "directory (default: <state dir>/build/agents)",
        ),
    ] = None,
    all_examples: Annotated[
        bool, typer.Option("--all", help="build every example under examples/agents")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="build without optimisation")] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="manifest name (default: the source file's stem)")
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help=f"manifest version (default: {DEFAULT_VERSION})")
    ] = None,
    state_dir_opt: StateDirOption = None,
) -> None:
    """Build an agent module (with an unsigned manifest) and print its path, size and sha256.

    Sign the result with `lockstep module sign`, or register it in dev mode.
    """
    if all_examples == (source is not None):
        raise fail("give either SRC or --all")
    if all_examples and name is not None:
        raise fail("--name names one module; with --all each is named after its file")
    try:
        if source is not None:
            typer.echo(
                _describe(
                    build_agent(source, output, optimize=not debug, name=name, version=version)
                )
            )
            return
        sources = example_sources()
        if not sources:
            raise fail(f"no example sources under {examples_dir()}")
        out_dir = output if output is not None else default_build_dir(state_dir_opt)
        for src in sources:
            out = out_dir / example_output_name(src)
            path = build_agent(src, out, optimize=not debug, name=out.stem, version=version)
            typer.echo(_describe(path))
    except AgentBuildError as exc:
        raise fail(exc) from None


app.add_typer(agent_app, name="agent")
