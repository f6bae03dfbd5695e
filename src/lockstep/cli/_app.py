"""Root of the command line; sub-command modules register themselves on `app`."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="lockstep",
    help="Lockstep: deterministic multi-agent runtime. Start with `lockstep up`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command modules, imported for their side effect of registering commands on `app`.
_COMMAND_MODULES = ("_services", "_run")


def main() -> None:
    """Console-script entry point."""
    for name in _COMMAND_MODULES:
        importlib.import_module(f"lockstep.cli.{name}")
    app()
