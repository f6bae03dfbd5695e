"""`python -m lockstep.healthcheck ADDRESS [SERVICE]`: exit 0 when the service is SERVING.

Used as the container healthcheck; needs no credential (health is public).
"""

from __future__ import annotations

import sys

from lockstep.dial import health_status


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print("usage: python -m lockstep.healthcheck ADDRESS [SERVICE]", file=sys.stderr)
        return 2
    status = health_status(argv[0], argv[1] if len(argv) == 2 else "")
    print(status)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
