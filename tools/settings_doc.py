"""Regenerate the settings tables of docs/services.md from the config classes' fields.

    python tools/settings_doc.py          # rewrite the tables in place
    python tools/settings_doc.py --check  # exit 1 when a table differs from its class

Each table sits between ``<!-- settings: MODULE.CLASS -->`` and ``<!-- end settings -->``
and is `lockstep.config.markdown_table(CLASS)`; tests/foundation/test_settings_docs.py
runs the check, so the docs cannot drift from the field definitions.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

from lockstep.config import markdown_table

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "services.md"
BLOCK = re.compile(r"(<!-- settings: ([\w.]+) -->\n)(.*?)(<!-- end settings -->)", re.DOTALL)


def render(text: str) -> str:
    """`text` with every settings block regenerated from its class."""

    def table(match: re.Match[str]) -> str:
        module, _, name = match.group(2).rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        return match.group(1) + markdown_table(cls) + match.group(4)

    return BLOCK.sub(table, text)


def blocks(text: str) -> list[str]:
    """The classes named by the settings blocks of `text`, in order."""
    return [m.group(2) for m in BLOCK.finditer(text)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report a stale table")
    args = parser.parse_args(argv)
    text = DOC.read_text()
    fresh = render(text)
    if fresh == text:
        print("settings tables are up to date")
        return 0
    if args.check:
        print(f"{DOC.relative_to(ROOT)}: settings tables are stale; run tools/settings_doc.py")
        return 1
    DOC.write_text(fresh)
    print(f"rewrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
