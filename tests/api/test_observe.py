"""Observations: the SDKs' `ls_observe` encoding (run in wasmtime with a recording host, no
services) read back by the Python decoder; and, once the pool accepts log level 5 and the
orchestrator journals `agent.log`, observations of a real run."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from lockstep.agents import build_agent
from lockstep.api import (
    OBSERVE_LEVEL,
    decode_observation,
    encode_observation,
    gini,
    model_reporters,
)
from lockstep.api._records import observation_rows

pytestmark = pytest.mark.unit
HERE = Path(__file__).resolve().parent


def _step_once(wasm: Path, tick: int) -> list[tuple[int, str]]:
    """Instantiate the agent with a host that records log calls, step it once at `tick`."""
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    module = wasmtime.Module.from_file(engine, str(wasm))
    logs: list[tuple[int, str]] = []
    memory: list[wasmtime.Memory] = []

    def log(level: int, ptr: int, length: int) -> int:
        logs.append((level, bytes(memory[0].read(store, ptr, ptr + length)).decode()))
        return 0

    i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
    host: dict[str, tuple[wasmtime.FuncType, Callable[..., Any]]] = {
        "send": (wasmtime.FuncType([i32] * 4, [i32]), lambda *a: 0),
        "log": (wasmtime.FuncType([i32] * 3, [i32]), log),
        "tick": (wasmtime.FuncType([], [i64]), lambda: tick),
        "random": (wasmtime.FuncType([i32] * 2, [i32]), lambda *a: 0),
        "infer": (wasmtime.FuncType([i32] * 4, [i64]), lambda *a: -4),
    }
    imports = []
    for imp in module.imports:
        ty, fn = host[str(imp.name)]
        imports.append(wasmtime.Func(store, ty, fn))
    inst = wasmtime.Instance(store, module, imports)
    exports = inst.exports(store)
    memory.append(exports["memory"])  # type: ignore[arg-type]
    name, args = b"obs", b""
    ctx = (
        struct.pack("<IHHqII", 24 + len(name) + len(args), 1, len(name), tick, 0, len(args))
        + name
        + args
    )
    assert exports["agent_init"](store) == 0  # type: ignore[operator]
    ptr = exports["agent_alloc"](store, len(ctx))  # type: ignore[operator]
    memory[0].write(store, ctx, ptr)
    assert exports["agent_step"](store, ptr) == 0  # type: ignore[operator]
    return logs


@pytest.mark.parametrize("source", ["observer.c", "observer.ts"])
def test_sdk_observations_decode_exactly(source: str, tmp_path: Path) -> None:
    wasm = build_agent(HERE / source, tmp_path / "observer.wasm")
    logs = _step_once(wasm, 9)
    assert [level for level, _ in logs] == [OBSERVE_LEVEL] * 3
    decoded = [decode_observation(text) for _, text in logs]
    assert decoded[0] == [("wealth", 2.5)]
    assert decoded[1] == [("count", -42.0)]
    assert decoded[2][0] == ("tick", 9.0)
    assert decoded[2][1] == ("third", 1.0 / 3.0)  # exact: the bits travel, not a rounding
    assert decoded[2][2][0] == "neg" and str(decoded[2][2][1]) == "-0.0"
    # Both SDKs write the same text as the Python encoder.
    assert logs[2][1] == encode_observation([("tick", 9), ("third", 1.0 / 3.0), ("neg", -0.0)])


def test_malformed_lines_are_counted_not_guessed() -> None:
    rows, bad = observation_rows(
        [
            (1, "a", 5, "w=1 x=2.5e3"),
            (1, "b", 5, "w=oops"),
            (1, "c", 2, "not an observation"),
            (2, "a", 5, "=3"),
        ]
    )
    assert rows == [(1, "a", "w", 1.0), (1, "a", "x", 2500.0)]
    assert bad == 2


def test_model_reporters_from_observations() -> None:
    import pandas as pd

    obs = pd.DataFrame(
        [
            (1, "a", "wealth", 1.0),
            (1, "b", "wealth", 1.0),
            (2, "a", "wealth", 2.0),
            (2, "b", "wealth", 0.0),
        ],
        columns=["tick", "agent", "key", "value"],
    )
    out = model_reporters(
        obs, {"gini": lambda df: gini(df["wealth"]), "total": lambda df: df["wealth"].sum()}
    )
    assert list(out.index) == [1, 2]
    assert out.loc[1, "gini"] == 0.0 and out.loc[2, "gini"] == 0.5
    assert list(out["total"]) == [2.0, 2.0]
