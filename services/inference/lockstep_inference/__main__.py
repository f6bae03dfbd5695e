"""`python -m lockstep_inference --address HOST:PORT --auth-file F [--model-repo DIR]`."""

from __future__ import annotations

import sys

from lockstep.server import run_service
from lockstep_inference._config import add_arguments
from lockstep_inference._server import create_from_args

if __name__ == "__main__":
    sys.exit(run_service("inference", None, "127.0.0.1:0", add_arguments, create_from_args))
