"""Settings defined once: a frozen dataclass whose fields carry their own documentation.

Every service's configuration is a frozen dataclass whose fields are made with `setting`:
the field's default, its one-line meaning, and optionally a flag alias, an environment
variable name or a parser. From that one definition come the command-line flags
(`add_flags`: ``--<field-name>``, each defaulting to its environment variable, then to the
field's default), the values read at start-up (`from_sources`: flags over environment
over defaults, a bad or missing value a ConfigError naming the flag and the variable),
``--help``, and the settings tables of docs/services.md (`markdown_table`; a test compares
them with the document, so the docs cannot drift from the fields).

Environment variables are ``<ENV_PREFIX><FIELD_NAME>`` (the class's ``ENV_PREFIX``, e.g.
``LOCKSTEP_POOL_``) unless a field names its own (the addresses every deployment passes,
``LOCKSTEP_TELEMETRY_ADDRESS``, keep one name across services). Values are parsed by the
field's type: ``int`` (``1_000``, ``0x20``), ``float``, ``str``, ``bool`` (``1``/``0``/
``true``/``false``; a bare ``--flag`` means true), ``Path``, ``X | None`` (empty means
None), ``tuple[str, ...]`` and ``frozenset[str]`` (comma-separated).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, TypeVar

from lockstep.errors import ConfigError

__all__ = ["Option", "add_flags", "from_sources", "markdown_table", "options", "setting"]

_KEY = "lockstep.setting"
C = TypeVar("C")


@dataclass(frozen=True)
class _Spec:
    help: str
    env: str | None  # None: ENV_PREFIX + NAME; "": no environment variable
    aliases: tuple[str, ...]
    parse: Callable[[str], object] | None
    choices: tuple[str, ...] | None
    shown_default: str | None
    flag: bool


def setting(
    default: Any = MISSING,
    *,
    help: str,
    env: str | None = None,
    aliases: Sequence[str] = (),
    parse: Callable[[str], object] | None = None,
    choices: Sequence[str] | None = None,
    default_factory: Callable[[], Any] | None = None,
    shown_default: str | None = None,
    flag: bool = True,
) -> Any:
    """A dataclass field that is also a documented flag and environment variable.

    help: what the setting means (one or two sentences; the docs table and ``--help``).
    env: the environment variable ("": none; default ``ENV_PREFIX + FIELD_NAME``).
    aliases: further flags accepted for it (older spellings kept working).
    parse: turns the raw text into the value (default: by the field's type).
    choices: the accepted values, listed in ``--help`` and checked before parsing.
    shown_default: how the docs and ``--help`` show a computed default.
    flag: False keeps it out of the command line (set in code only).
    """
    spec = _Spec(
        help=help,
        env=env,
        aliases=tuple(aliases),
        parse=parse,
        choices=tuple(choices) if choices is not None else None,
        shown_default=shown_default,
        flag=flag,
    )
    metadata = {_KEY: spec}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Option:
    """One setting as the command line, the environment and the docs see it."""

    name: str  # the dataclass field
    flag: str  # --field-name
    aliases: tuple[str, ...]
    env: str  # "" when it has none
    help: str
    default: str  # as documented; "required" when the field has no default
    required: bool
    kind: str  # bool, int, float, str, path, list
    choices: tuple[str, ...] | None
    parse: Callable[[str], object]

    @property
    def dest(self) -> str:
        return "setting_" + self.name

    @property
    def sources(self) -> str:
        """How to set it, for error messages: ``--flag / ENV``."""
        return f"{self.flag} / {self.env}" if self.env else self.flag


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise ValueError(raw)


def _parse_int(raw: str) -> int:
    return int(raw.strip().replace("_", ""), 0)


def _split(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _kind(hint: Any) -> tuple[str, Callable[[str], object], bool]:
    """(kind, parser, optional) for a resolved type hint."""
    optional = False
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"unsupported setting type {hint!r}")
        hint, optional = rest[0], True
    origin = typing.get_origin(hint)
    if origin is tuple:
        return "list", lambda raw: tuple(_split(raw)), optional
    if origin is frozenset:
        return "list", lambda raw: frozenset(_split(raw)), optional
    simple: dict[Any, tuple[str, Callable[[str], object]]] = {
        bool: ("bool", _parse_bool),
        int: ("int", _parse_int),
        float: ("float", float),
        str: ("str", str),
        Path: ("path", Path),
    }
    if hint not in simple:
        raise TypeError(f"unsupported setting type {hint!r}")
    kind, parse = simple[hint]
    return kind, parse, optional


def _show(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int) and value >= 10_000:
        return f"{value:_}"
    if isinstance(value, tuple | frozenset | list):
        return ",".join(sorted(str(v) for v in value)) or '""'
    if value == "":
        return '""'
    return str(value)


def options(cls: type) -> list[Option]:
    """The settings of config class `cls`, in field order (fields not made with `setting`
    are skipped: they are set in code only)."""
    prefix = str(getattr(cls, "ENV_PREFIX", "LOCKSTEP_"))
    hints = typing.get_type_hints(cls)
    out: list[Option] = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(_KEY)
        if not isinstance(spec, _Spec) or not spec.flag:
            continue
        kind, by_type, optional = _kind(hints[f.name])

        def parse(
            raw: str,
            by_type: Callable[[str], object] = by_type,
            spec: _Spec = spec,
            optional: bool = optional,
        ) -> object:
            if optional and raw == "":
                return None
            return (spec.parse or by_type)(raw)

        required = f.default is MISSING and f.default_factory is MISSING
        if spec.shown_default is not None:
            shown = spec.shown_default
        elif required:
            shown = "required"
        elif f.default is not MISSING:
            shown = _show(f.default)
        else:
            shown = _show(f.default_factory())  # type: ignore[operator]
        out.append(
            Option(
                name=f.name,
                flag="--" + f.name.replace("_", "-"),
                aliases=spec.aliases,
                env=(prefix + f.name.upper()) if spec.env is None else spec.env,
                help=spec.help,
                default=shown,
                required=required,
                kind=kind,
                choices=spec.choices,
                parse=parse,
            )
        )
    return out


def add_flags(parser: argparse.ArgumentParser, cls: type, title: str | None = None) -> None:
    """One flag per setting of `cls` (in an argument group when `title` is given). Flags
    default to None so that `from_sources` can tell a given flag from an absent one."""
    group: Any = parser.add_argument_group(title) if title else parser
    for opt in options(cls):
        where = f" [env {opt.env}]" if opt.env else ""
        default = "required" if opt.required else f"default {opt.default}"
        text = f"{opt.help} ({default}){where}".replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": opt.dest, "default": None, "help": text}
        if opt.kind == "bool":
            kwargs.update(nargs="?", const="1", metavar="0|1")
        elif opt.choices:
            kwargs.update(metavar="|".join(opt.choices))
        else:
            kwargs.update(metavar=opt.kind.upper() if opt.kind != "str" else "TEXT")
        group.add_argument(opt.flag, *opt.aliases, **kwargs)


def from_sources(
    cls: type[C],
    args: argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
    **given: Any,
) -> C:
    """An instance of `cls` from flags (when parsed with `add_flags`), over environment
    variables, over the defaults; `given` values (set in code) win over all three.

    A value that does not parse, is not one of the choices, or a required setting given
    nowhere is a ConfigError naming the flag and the variable; the class's own checks
    (``__post_init__``) then run as usual.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for opt in options(cls):
        if opt.name in given:
            continue
        raw = getattr(args, opt.dest, None) if args is not None else None
        source = opt.flag
        if raw is None and opt.env:
            raw = env.get(opt.env)
            source = opt.env
        if raw is None:
            if opt.required:
                raise ConfigError(f"no {opt.sources} given")
            continue
        if opt.choices and raw not in opt.choices:
            raise ConfigError(
                f"{opt.name} must be one of {', '.join(opt.choices)}, got {raw!r} ({source})"
            )
        try:
            values[opt.name] = opt.parse(str(raw))
        except ValueError:
            raise ConfigError(f"bad value {raw!r} for {opt.name} ({source})") from None
    return cls(**values, **given)


def markdown_table(cls: type) -> str:
    """The settings of `cls` as the Markdown table docs/services.md shows."""
    rows = [
        "| flag | environment | default | meaning |",
        "|---|---|---|---|",
    ]
    for opt in options(cls):
        flags = ", ".join(f"`{f}`" for f in (opt.flag, *opt.aliases))
        env = f"`{opt.env}`" if opt.env else ""
        default = opt.default if opt.default == "required" else f"`{opt.default}`"
        meaning = opt.help
        if opt.choices:
            meaning += f" One of {', '.join(f'`{c}`' for c in opt.choices)}."
        cells = [flags, env, default, meaning.replace("|", "\\|")]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"
