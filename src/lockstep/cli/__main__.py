"""`python -m lockstep.cli`."""

from lockstep.cli._app import main

main()
