"""Scenario files: a TOML description of a run (modules, agents, seed, ticks, actions).

See docs/scenarios.md for the format. Parsing is strict: unknown keys and bad values are
errors that name the offending field. A scenario can also be given as a Python dict of the
same shape (`scenario_from_dict`), and any value can be overridden by a dotted path
(`--set agents.0.count=1000` on the command line, `overrides=` here): overrides are applied
to the raw tables before validation, so an overridden value is checked like a written one.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lockstep.errors import ConfigError

__all__ = [
    "Action",
    "AgentGroup",
    "Scenario",
    "apply_overrides",
    "cli_overrides",
    "load_scenario",
    "parse_override",
    "parse_value",
    "scenario_from_dict",
]

_RUN_KEYS = {
    "label",
    "seed",
    "ticks",
    "until_idle",
    "max_steps_per_tick",
    "inference_latency",
    "pools",
}
_AGENT_KEYS = {
    "module",
    "name",
    "count",
    "start",
    "priority",
    "args",
    "args_hex",
    "topics",
    "restart",
    "limits",
}
_LIMIT_KEYS = {
    "fuel_per_step",
    "max_memory_pages",
    "max_messages_per_step",
    "max_message_bytes",
    "max_logs_per_step",
}
_RESTART_KEYS = {"max_restarts", "backoff_ticks", "backoff_multiplier", "max_backoff_ticks"}
_ACTION_KEYS = {"tick", "pause", "resume", "terminate", "send", "spawn"}


@dataclass(frozen=True)
class AgentGroup:
    """`count` agents of one module; `name` and `args` may use {i} (start, start+1, ...)
    and {n} (the count)."""

    module: str
    name: str
    count: int = 1
    start: int = 0
    priority: int = 0
    args: bytes = b""
    topics: tuple[str, ...] = ()
    restart: dict[str, int] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)

    def expand(self) -> list[tuple[str, bytes]]:
        """(name, args) for each agent of the group."""
        out = []
        for i in range(self.start, self.start + self.count):
            name = self.name.replace("{i}", str(i)).replace("{n}", str(self.count))
            args = self.args.replace(b"{i}", str(i).encode()).replace(
                b"{n}", str(self.count).encode()
            )
            out.append((name, args))
        return out


@dataclass(frozen=True)
class Action:
    """Control actions applied after `tick` completes (they take effect at tick + 1)."""

    tick: int
    pause: tuple[str, ...] = ()
    resume: tuple[str, ...] = ()
    terminate: tuple[str, ...] = ()
    send: tuple[tuple[str, bytes], ...] = ()
    spawn: tuple[AgentGroup, ...] = ()


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario file."""

    path: Path
    label: str
    seed: int
    ticks: int
    until_idle: bool
    max_steps_per_tick: int
    inference_latency: int
    pools: int
    limits: dict[str, int]
    modules: dict[str, Path]
    agents: tuple[AgentGroup, ...]
    actions: tuple[Action, ...]
    # The raw tables it was parsed from (for overrides); not part of equality.
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # The overrides applied, as (path, value) in the order given.
    overrides: tuple[tuple[str, Any], ...] = ()

    def with_overrides(
        self,
        overrides: list[tuple[str, Any]] | Mapping[str, Any] | None = None,
        *,
        seed: int | None = None,
        ticks: int | None = None,
    ) -> Scenario:
        """A copy with `overrides` ({"agents.0.count": 10, ...}), `seed` and `ticks`
        applied to the tables this scenario was parsed from, validated again."""
        if not self.raw:
            raise ConfigError(
                f"{self.path}: this scenario was not parsed from tables; "
                "overrides need load_scenario or scenario_from_dict"
            )
        items = list(overrides.items()) if isinstance(overrides, Mapping) else list(overrides or [])
        if seed is not None:
            items.append(("run.seed", seed))
        if ticks is not None:
            items.append(("run.ticks", ticks))
        raw = apply_overrides(self.raw, items, where=str(self.path))
        out = _parse(raw, self.path)
        return replace(out, overrides=self.overrides + tuple(items))


# All agents of a scenario (its groups and its actions' spawns): checked before any
# is expanded, so a scenario of 1,000 groups of 1M agents is refused, not attempted.
MAX_SCENARIO_AGENTS = 1_000_000


def _check_keys(where: str, table: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def _int(where: str, value: Any, lo: int = 0, hi: int = 2**63 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{where}: expected an integer in {lo}..{hi}, got {value!r}")
    return value


def _names(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of agent names")
    return tuple(value)


def _int_table(where: str, value: Any, allowed: set[str]) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table")
    _check_keys(where, value, allowed)
    return {k: _int(f"{where}.{k}", v) for k, v in value.items()}


def _group(where: str, raw: Any, modules: dict[str, Path]) -> AgentGroup:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table")
    _check_keys(where, raw, _AGENT_KEYS)
    module = raw.get("module")
    if module not in modules:
        raise ConfigError(
            f"{where}.module: {module!r} is not one of the [modules] "
            f"({', '.join(sorted(modules)) or 'none defined'})"
        )
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name: expected a non-empty string")
    count = _int(f"{where}.count", raw.get("count", 1), 1, 1_000_000)
    if count > 1 and "{i}" not in name:
        raise ConfigError(f"{where}.name: with count > 1 the name must contain {{i}}")
    if "args" in raw and "args_hex" in raw:
        raise ConfigError(f"{where}: give args or args_hex, not both")
    args = b""
    if "args" in raw:
        if not isinstance(raw["args"], str):
            raise ConfigError(f"{where}.args: expected a string")
        args = raw["args"].encode()
    elif "args_hex" in raw:
        try:
            args = bytes.fromhex(raw["args_hex"])
        except (TypeError, ValueError):
            raise ConfigError(f"{where}.args_hex: not valid hex") from None
    topics = raw.get("topics", [])
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        raise ConfigError(f"{where}.topics: expected a list of strings")
    return AgentGroup(
        module=module,
        name=name,
        count=count,
        start=_int(f"{where}.start", raw.get("start", 0), 0, 10_000_000),
        priority=_int(f"{where}.priority", raw.get("priority", 0), -(2**31), 2**31 - 1),
        args=args,
        topics=tuple(topics),
        restart=_int_table(f"{where}.restart", raw.get("restart", {}), _RESTART_KEYS),
        limits=_int_table(f"{where}.limits", raw.get("limits", {}), _LIMIT_KEYS),
    )


def parse_value(text: str) -> Any:
    """An override value: a TOML value (`10`, `true`, `"a b"`, `[1, 2]`, `{x = 1}`), or else
    the text itself as a string (`n=10 wealth=2`)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_override(item: str) -> tuple[str, Any]:
    """`PATH=VALUE` (as given to `--set`) -> (path, parsed value)."""
    path, sep, value = item.partition("=")
    path = path.strip()
    if not sep or not path:
        raise ConfigError(f"bad override {item!r}: expected PATH=VALUE, e.g. agents.0.count=10")
    return path, parse_value(value)


def cli_overrides(
    items: list[str] | None, seed: int | None = None, ticks: int | None = None
) -> list[tuple[str, Any]]:
    """The overrides of `lockstep run --set PATH=VALUE ... --seed S --ticks T`."""
    out = [parse_override(item) for item in items or []]
    if seed is not None:
        out.append(("run.seed", seed))
    if ticks is not None:
        out.append(("run.ticks", ticks))
    return out


def apply_overrides(
    raw: Mapping[str, Any],
    overrides: list[tuple[str, Any]] | Mapping[str, Any],
    where: str = "scenario",
) -> dict[str, Any]:
    """A deep copy of the scenario tables `raw` with each (dotted path, value) set.

    Path segments name table keys (created when missing: validation then says whether the
    key is allowed) or, on arrays, indices from 0 (`agents.0.count`, `actions.1.tick`)."""
    out: dict[str, Any] = copy.deepcopy(dict(raw))
    items = list(overrides.items()) if isinstance(overrides, Mapping) else list(overrides)
    for path, value in items:
        parts = path.split(".")
        if not all(parts):
            raise ConfigError(f"{where}: bad override path {path!r}")
        node: Any = out
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            here = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(
                        f"{where}: override {path}: {here} is not an index of "
                        f"an array of {len(node)}"
                    )
                key: Any = int(part)
            elif isinstance(node, dict):
                key = part
                if not last and key not in node:
                    node[key] = {}
            else:
                raise ConfigError(
                    f"{where}: override {path}: {'.'.join(parts[:depth])} is a "
                    "value, not a table or array"
                )
            if last:
                node[key] = copy.deepcopy(value)
            else:
                node = node[key]
    return out


def load_scenario(
    path: Path | str,
    overrides: list[tuple[str, Any]] | Mapping[str, Any] | None = None,
) -> Scenario:
    """Parse and validate a scenario file, with optional overrides (dotted path -> value,
    see `apply_overrides`); errors name the file and field."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"scenario {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"scenario {path} is unreadable: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"scenario {path} is not valid TOML: {exc}") from None
    scenario = _parse(raw, path)
    if overrides:
        scenario = scenario.with_overrides(overrides)
    return scenario


def scenario_from_dict(
    tables: Mapping[str, Any], base_dir: Path | str = ".", name: str = "scenario"
) -> Scenario:
    """A scenario defined in Python: `tables` has the shape of a scenario file
    ({"run": {...}, "modules": {...}, "agents": [...], "actions": [...]}); module paths are
    relative to `base_dir`; `name` is the default label and names it in errors."""
    return _parse(copy.deepcopy(dict(tables)), Path(base_dir) / f"{name}.toml")


def _parse(raw: dict[str, Any], path: Path) -> Scenario:
    where = str(path)
    _check_keys(where, raw, {"run", "limits", "modules", "agents", "actions"})
    run = raw.get("run", {})
    _check_keys(f"{where} [run]", run, _RUN_KEYS)
    modules: dict[str, Path] = {}
    for name, spec in raw.get("modules", {}).items():
        if not isinstance(spec, dict):
            raise ConfigError(f"{where} [modules.{name}]: expected a table")
        _check_keys(f"{where} [modules.{name}]", spec, {"source", "wasm"})
        ref = spec.get("source") or spec.get("wasm")
        if not isinstance(ref, str) or ("source" in spec) == ("wasm" in spec):
            raise ConfigError(f"{where} [modules.{name}]: give exactly one of source / wasm")
        modules[name] = (path.parent / ref).resolve()
    if not modules:
        raise ConfigError(f"{where}: no [modules] defined")
    agents = tuple(
        _group(f"{where} [[agents]] #{i + 1}", a, modules)
        for i, a in enumerate(raw.get("agents", []))
    )
    actions = []
    for i, act in enumerate(raw.get("actions", [])):
        aw = f"{where} [[actions]] #{i + 1}"
        _check_keys(aw, act, _ACTION_KEYS)
        sends = []
        for j, msg in enumerate(act.get("send", [])):
            if not isinstance(msg, dict) or set(msg) != {"to", "payload"}:
                raise ConfigError(f"{aw}.send[{j}]: expected {{to = ..., payload = ...}}")
            sends.append((str(msg["to"]), str(msg["payload"]).encode()))
        actions.append(
            Action(
                tick=_int(f"{aw}.tick", act.get("tick")),
                pause=_names(f"{aw}.pause", act.get("pause", [])),
                resume=_names(f"{aw}.resume", act.get("resume", [])),
                terminate=_names(f"{aw}.terminate", act.get("terminate", [])),
                send=tuple(sends),
                spawn=tuple(
                    _group(f"{aw}.spawn[{j}]", g, modules)
                    for j, g in enumerate(act.get("spawn", []))
                ),
            )
        )
    total = sum(g.count for g in agents) + sum(g.count for a in actions for g in a.spawn)
    if total > MAX_SCENARIO_AGENTS:
        raise ConfigError(
            f"{where}: {total} agents in all; a scenario holds at most {MAX_SCENARIO_AGENTS}"
        )
    ticks = _int(f"{where} [run].ticks", run.get("ticks", 100), 1, 10_000_000)
    return Scenario(
        path=path,
        label=str(run.get("label", path.stem)),
        seed=_int(f"{where} [run].seed", run.get("seed", 0), 0, 2**64 - 1),
        ticks=ticks,
        until_idle=bool(run.get("until_idle", False)),
        max_steps_per_tick=_int(
            f"{where} [run].max_steps_per_tick", run.get("max_steps_per_tick", 0), 0, 2**32 - 1
        ),
        inference_latency=_int(
            f"{where} [run].inference_latency", run.get("inference_latency", 1), 1, 1_000_000
        ),
        pools=_int(f"{where} [run].pools", run.get("pools", 1), 1, 64),
        limits=_int_table(f"{where} [limits]", raw.get("limits", {}), _LIMIT_KEYS),
        modules=modules,
        agents=agents,
        actions=tuple(sorted(actions, key=lambda a: a.tick)),
        raw=raw,
    )
