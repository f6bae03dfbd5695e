"""The ``lockstep`` command line.

Each command group lives in its own module (``_services.py``, ``_run.py``, ...) and is
added to the root app here.
"""

from __future__ import annotations

from lockstep.cli._app import app, main

__all__ = ["app", "main"]
