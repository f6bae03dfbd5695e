"""LoadModule validation: malformed modules, foreign imports, missing/wrong exports."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lockstep.pb.common.v1 import common_pb2 as cpb
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb
from lockstep_wasm_pool import (
    InvalidRequestError,
    ModuleRejectedError,
    NotFoundError,
    WasmPool,
    WasmPoolConfig,
)
from tests.wasm_pool.conftest import GOOD, IMPORTS, agent_wat, spec, wat

pytestmark = pytest.mark.unit


def rejected(pool: WasmPool, wasm: bytes) -> ModuleRejectedError:
    with pytest.raises(ModuleRejectedError) as info:
        pool.load_module(wasm)
    return info.value


def test_good_module_info_and_cache(pool: WasmPool) -> None:
    info = pool.load_module(GOOD)
    assert info.module_hash == "sha256:" + hashlib.sha256(GOOD).hexdigest()
    assert list(info.imports) == [
        f"lockstep_v1.{n}" for n in ("send", "log", "tick", "random", "infer")
    ]
    assert set(info.exports) == {
        "agent_alloc",
        "agent_init",
        "agent_step",
        "agent_receive",
        "agent_shutdown",
    }
    assert not info.has_receive_batch
    assert pool.load_module(GOOD) == info
    assert list(pool.info().modules) == [info.module_hash]


def test_malformed(pool: WasmPool) -> None:
    exc = rejected(pool, b"\x00asm\x01\x00\x00\x00\x01\xff")
    assert exc.kind == cpb.FAULT_KIND_MALFORMED_MODULE
    assert exc.detail.startswith("invalid wasm module:")
    assert rejected(pool, b"not wasm").kind == cpb.FAULT_KIND_MALFORMED_MODULE


@pytest.mark.parametrize(
    ("imports", "needle"),
    [
        (
            '(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))',
            "import wasi_snapshot_preview1.fd_write is not allowed",
        ),
        ('(import "env" "abort" (func))', "import env.abort is not allowed"),
        (
            '(import "lockstep_v1" "clock" (func (result i64)))',
            "import lockstep_v1.clock is unknown",
        ),
        (
            '(import "lockstep_v1" "tick" (func (result i32)))',
            "import lockstep_v1.tick has signature () -> (i32), ABI v1 wants () -> (i64)",
        ),
        ('(import "lockstep_v1" "send" (global i32))', "import lockstep_v1.send has signature"),
        ('(import "env" "mem" (memory 1))', "import env.mem is not allowed"),
    ],
)
def test_bad_imports(pool: WasmPool, imports: str, needle: str) -> None:
    text = f"""(module {imports}
      (memory (export "memory") 1)
      (func (export "agent_alloc") (param i32) (result i32) (i32.const 0))
      (func (export "agent_init") (result i32) (i32.const 0))
      (func (export "agent_step") (param i32) (result i32) (i32.const 0))
      (func (export "agent_receive") (param i32) (result i32) (i32.const 0))
      (func (export "agent_shutdown") (result i32) (i32.const 0)))"""
    if "(memory 1)" in imports:
        text = text.replace('(memory (export "memory") 1)', "")
    exc = rejected(pool, wat(text))
    assert exc.kind == cpb.FAULT_KIND_ABI_VIOLATION
    assert needle in exc.detail


@pytest.mark.parametrize(
    ("drop", "replace", "needle"),
    [
        (
            '(func (export "agent_step") (param $ctx i32) (result i32) (i32.const 0))',
            "",
            "missing export agent_step",
        ),
        ('(memory (export "memory") 1)', "(memory 1)", "missing export memory"),
        (
            '(func (export "agent_init") (result i32) (i32.const 0))',
            '(func (export "agent_init") (param i32) (result i32) (i32.const 0))',
            "export agent_init has signature (i32) -> (i32), ABI v1 wants () -> (i32)",
        ),
        (
            '(func (export "agent_shutdown") (result i32) (i32.const 0))',
            '(global (export "agent_shutdown") i32 (i32.const 0))',
            "export agent_shutdown is not a",
        ),
    ],
)
def test_bad_exports(pool: WasmPool, drop: str, replace: str, needle: str) -> None:
    text = _good_text().replace(drop, replace)
    assert text != _good_text()
    exc = rejected(pool, wat(text))
    assert exc.kind == cpb.FAULT_KIND_ABI_VIOLATION
    assert needle in exc.detail


def test_bad_batch_signature(pool: WasmPool) -> None:
    exc = rejected(
        pool,
        wat(
            _good_text().replace(
                "(global $count",
                '(func (export "agent_receive_batch") (result i32) (i32.const 0)) (global $count',
            )
        ),
    )
    assert "export agent_receive_batch has signature () -> (i32)" in exc.detail


def test_reserved_export_and_stateful_instructions(pool: WasmPool) -> None:
    exc = rejected(
        pool, agent_wat(extra='(global (export "__lockstep_global_0") i32 (i32.const 0))')
    )
    assert "reserved prefix" in exc.detail
    exc = rejected(
        pool,
        agent_wat(extra="(table 1 funcref) (func (table.set 0 (i32.const 0) (ref.null func)))"),
    )
    assert "table.set" in exc.detail
    exc = rejected(pool, agent_wat(extra='(data "x") (func (data.drop 3))'))
    assert "data.drop" in exc.detail


def test_rejected_module_faults_agents_at_create(pool: WasmPool) -> None:
    bad = wat(
        '(module (import "wasi_snapshot_preview1" "random_get" '
        "(func (param i32 i32) (result i32))))"
    )
    exc = rejected(pool, bad)
    # Loading it again gives the same answer from the cache.
    assert rejected(pool, bad).detail == exc.detail
    good = pool.load_module(GOOD).module_hash
    bad_hash = "sha256:" + hashlib.sha256(bad).hexdigest()
    resp = pool.create_agents(
        pb.CreateAgentsRequest(
            agents=[spec(1, "a", good), spec(2, "b", bad_hash), spec(3, "c", good)]
        )
    )
    assert [r.HasField("fault") for r in resp.results] == [False, True, False]
    assert resp.results[1].fault.kind == cpb.FAULT_KIND_ABI_VIOLATION
    assert "wasi_snapshot_preview1.random_get" in resp.results[1].fault.detail
    assert pool.seqs() == [1, 3]


def test_create_request_validation(pool: WasmPool) -> None:
    good = pool.load_module(GOOD).module_hash
    with pytest.raises(NotFoundError, match="not loaded"):
        pool.create_agents(pb.CreateAgentsRequest(agents=[spec(1, "a", "sha256:00")]))
    with pytest.raises(InvalidRequestError, match="bad agent name"):
        pool.create_agents(pb.CreateAgentsRequest(agents=[spec(1, "a b", good)]))
    with pytest.raises(InvalidRequestError, match="args are 65537 bytes"):
        pool.create_agents(pb.CreateAgentsRequest(agents=[spec(1, "a", good, args=bytes(65537))]))
    from lockstep_wasm_pool import AlreadyExistsError

    with pytest.raises(AlreadyExistsError, match="sequence is already live"):
        pool.create_agents(pb.CreateAgentsRequest(agents=[spec(1, "a", good), spec(1, "b", good)]))
    assert pool.seqs() == []  # nothing half-created


def test_module_size_bound() -> None:
    with (
        WasmPool(WasmPoolConfig(max_module_bytes=100)) as pool,
        pytest.raises(InvalidRequestError, match="above the pool limit of 100"),
    ):
        pool.load_module(GOOD)


def test_memory_grow_within_limit_works(pool: WasmPool) -> None:
    from tests.wasm_pool.conftest import create, step

    wasm = agent_wat(step="(i32.store (i32.const 600) (memory.grow (i32.const 2))) (i32.const 0)")
    create(pool, (1, "a", wasm))
    (result,) = step(pool, 1, 1)
    assert not result.HasField("fault")
    snap = pool.snapshot([1])[0]
    assert len(snap.memory) == 3 * 65536
    assert snap.memory[600:604] == (1).to_bytes(4, "little")


def _good_text() -> str:
    return f"""(module {IMPORTS}
  (memory (export "memory") 1)
  (global $count (mut i32) (i32.const 0))
  (func (export "agent_alloc") (param $size i32) (result i32) (i32.const 4096))
  (func (export "agent_init") (result i32) (i32.const 0))
  (func (export "agent_step") (param $ctx i32) (result i32) (i32.const 0))
  (func (export "agent_receive") (param $msg i32) (result i32) (i32.const 0))
  (func (export "agent_shutdown") (result i32) (i32.const 0)))"""


def test_serialized_module_cache(tmp_path: Path) -> None:
    from tests.wasm_pool.conftest import create, step

    cache = tmp_path / "modules"
    with WasmPool(WasmPoolConfig(module_cache_dir=cache)) as first:
        digest = first.load_module(GOOD).module_hash
    files = sorted(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".cwasm"
    with WasmPool(WasmPoolConfig(module_cache_dir=cache)) as second:
        assert second.load_module(GOOD).module_hash == digest  # from the cache
        create(second, (1, "a", GOOD))
        assert not step(second, 1, 1)[0].HasField("fault")
    files[0].write_bytes(b"garbage")  # a corrupt entry is recompiled and replaced
    with WasmPool(WasmPoolConfig(module_cache_dir=cache)) as third:
        assert third.load_module(GOOD).module_hash == digest
    assert files[0].read_bytes() != b"garbage"
