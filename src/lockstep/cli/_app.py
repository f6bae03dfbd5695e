"""Root of the command line; sub-command modules register themselves on `app`."""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(
    name="lockstep",
    help="Lockstep: deterministic multi-agent runtime. Start with `lockstep up`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command modules, imported for their side effect of registering commands on `app`.
_COMMAND_MODULES = (
    "_services",
    "_run",
    "_agent",
    "_control",
    "_module",
    "_journal",
    "_models",
    "_bench",
    "_certs",
    "_sweep",
    "_diff",
    "_dashboard",
    "_observe",
)


def main() -> None:
    """Console-script entry point. Usage errors are one line on stderr, exit status 2."""
    for name in _COMMAND_MODULES:
        importlib.import_module(f"lockstep.cli.{name}")
    if len(sys.argv) == 1:
        sys.argv.append("--help")
    try:
        code = app(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        # click's UsageError family (typer vendors click, so match on its interface).
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        print(f"error: {exc.format_message()}{hint}", file=sys.stderr)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
