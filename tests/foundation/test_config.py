"""lockstep.config: flags and environment variables from one dataclass definition."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from lockstep.config import add_flags, from_sources, markdown_table, options, setting
from lockstep.errors import ConfigError

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Example:
    ENV_PREFIX: ClassVar[str] = "EX_"

    name: str = setting(help="Required text.", aliases=("--nm",))
    count: int = setting(3, help="A count.")
    ratio: float = setting(0.5, help="A ratio.")
    on: bool = setting(False, help="A switch.")
    where: Path | None = setting(None, help="A path, or none.")
    items: tuple[str, ...] = setting((), help="A list.", env="EX_LIST")
    tags: frozenset[str] = setting(frozenset({"b", "a"}), help="A set.")
    mode: str = setting("x", choices=("x", "y"), help="A choice.")
    secret: str = setting("", env="", help="Flag only.")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_flags(parser, Example, "example")
    return parser.parse_args(argv)


def test_flags_win_over_environment_over_defaults() -> None:
    env = {"EX_COUNT": "1_000", "EX_ON": "true", "EX_LIST": "a, b,,c", "EX_NAME": "env"}
    got = from_sources(Example, parse("--nm", "flag", "--count", "0x10"), env)
    assert got == Example(
        name="flag", count=16, on=True, items=("a", "b", "c"), tags=frozenset({"a", "b"})
    )
    assert from_sources(Example, None, env).name == "env"
    assert from_sources(Example, parse("--on"), {"EX_NAME": "n"}).on is True  # bare flag
    assert from_sources(Example, parse("--on", "0"), {"EX_NAME": "n", "EX_ON": "1"}).on is False
    full = from_sources(
        Example,
        parse("--name", "n", "--where", "/tmp/x", "--tags", "z", "--mode", "y", "--ratio", "2"),
        {"EX_SECRET": "ignored"},
    )
    assert full.where == Path("/tmp/x") and full.tags == frozenset({"z"})
    assert (full.mode, full.ratio, full.secret) == ("y", 2.0, "")
    assert from_sources(Example, parse("--name", "n", "--where", ""), {}).where is None
    assert from_sources(Example, None, {}, name="given").name == "given"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ((), {}, r"no --name / EX_NAME given"),
        (("--name", "n", "--count", "many"), {}, r"bad value 'many' for count \(--count\)"),
        (
            (
                "--name",
                "n",
            ),
            {"EX_ON": "yes"},
            r"bad value 'yes' for on \(EX_ON\)",
        ),
        (("--name", "n", "--mode", "z"), {}, r"mode must be one of x, y, got 'z' \(--mode\)"),
    ],
)
def test_bad_values_name_their_source(
    argv: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        from_sources(Example, parse(*argv), env)


def test_documentation_comes_from_the_fields() -> None:
    opts = {o.name: o for o in options(Example)}
    assert opts["count"].env == "EX_COUNT" and opts["items"].env == "EX_LIST"
    assert opts["secret"].env == "" and opts["name"].required
    assert opts["tags"].default == "a,b" and opts["where"].default == "none"
    table = markdown_table(Example)
    assert "| `--name`, `--nm` | `EX_NAME` | required | Required text. |" in table
    assert "| `--mode` | `EX_MODE` | `x` | A choice. One of `x`, `y`. |" in table
    assert len(table.splitlines()) == 2 + len(opts)
