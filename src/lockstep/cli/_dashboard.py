"""`lockstep dashboard`: the read-only web dashboard in the foreground.

`lockstep up` starts one already (unless `--no-dashboard`; `lockstep status` shows its
address). This command runs another against the deployment of a state directory, or
against any orchestrator and telemetry given by address, with a viewer token file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lockstep.cli._app import app
from lockstep.cli._context import StateDirOption, fail, running_state
from lockstep.errors import LockstepError
from lockstep.supervisor._dashboard import VIEWER_TOKEN_FILE, write_viewer_token


@app.command()
def dashboard(
    state_dir_opt: StateDirOption = None,
    address: Annotated[
        str,
        typer.Option(help="HOST:PORT to serve on (loopback by default; port 0 = any free port)"),
    ] = "127.0.0.1:8780",
    orchestrator: Annotated[
        str | None, typer.Option(help="orchestrator address (default: the state directory's)")
    ] = None,
    telemetry: Annotated[
        str | None, typer.Option(help="telemetry address (default: the state directory's)")
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="file holding only the viewer token (default: the state directory's viewer.token)"
        ),
    ] = None,
    render_interval_ms: Annotated[
        int, typer.Option(help="a live page redraws at most this often")
    ] = 1000,
) -> None:
    """Serve the read-only web dashboard (GET only, viewer credential) until Ctrl-C."""
    try:
        if orchestrator is None or telemetry is None or token_file is None:
            state = running_state(state_dir_opt)
            orchestrator = orchestrator or state.service("orchestrator").address
            telemetry = telemetry or state.service("telemetry").address
            if token_file is None:
                token_file = Path(state.state_dir) / VIEWER_TOKEN_FILE
                if not token_file.exists():
                    write_viewer_token(state.tokens_path, token_file)
    except LockstepError as exc:
        raise fail(exc) from None
    try:
        from lockstep_dashboard.__main__ import main as dashboard_main
    except ImportError:
        raise fail(
            "the dashboard is not installed: pip install -e services/dashboard "
            "(python3 dev.py setup does)"
        ) from None
    raise typer.Exit(
        dashboard_main(
            [
                "--address",
                address,
                "--orchestrator",
                orchestrator,
                "--telemetry",
                telemetry,
                "--auth-file",
                str(token_file),
                "--render-interval-ms",
                str(render_interval_ms),
            ]
        )
    )
