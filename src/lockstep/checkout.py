"""Where the source checkout is, for the parts of Lockstep that live beside the package
rather than in it: the agent SDK (sdk/), the example agents and scenarios (examples/) and
the benchmark suite (bench/).

Found explicitly, never by counting directories up from a module file:

1. $LOCKSTEP_CHECKOUT, when set (any checkout, e.g. for a non-editable install);
2. else the directory pip recorded for an editable install of the `lockstep` distribution
   (PEP 610 `direct_url.json`: what `python3 dev.py setup` makes).
"""

from __future__ import annotations

import json
import os
from functools import cache
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

from lockstep.errors import ConfigError

__all__ = ["checkout_root", "require_checkout"]


@cache
def _installed_from() -> Path | None:
    try:
        text = metadata.distribution("lockstep").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return None
    url = urlparse(str(info.get("url", "")))
    if url.scheme != "file" or not info.get("dir_info", {}).get("editable"):
        return None
    return Path(unquote(url.path))


def checkout_root() -> Path | None:
    """The checkout ($LOCKSTEP_CHECKOUT, else the editable install's source), or None."""
    env = os.environ.get("LOCKSTEP_CHECKOUT")
    if env:
        return Path(env).expanduser().resolve()
    return _installed_from()


def require_checkout(part: str) -> Path:
    """`part` (e.g. "bench/suite.py") inside the checkout; ConfigError saying how to name
    one when there is none or it lacks that part."""
    root = checkout_root()
    if root is None:
        raise ConfigError(
            f"{part} lives in a Lockstep source checkout: install it editable "
            "(python3 dev.py setup) or set LOCKSTEP_CHECKOUT=/path/to/checkout"
        )
    path = root / part
    if not path.exists():
        raise ConfigError(f"no {part} in the checkout {root} (LOCKSTEP_CHECKOUT names another one)")
    return path
