"""Modules: the deterministic wasmtime Engine, and loading a module (validate, rewrite,
check against ABI v1, compile with an on-disk cache)."""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import wasmtime

from lockstep import abi as _abi
from lockstep import wasmbin as _wasmbin
from lockstep.pb.common.v1 import common_pb2
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb

from ._config import WasmPoolConfig
from ._errors import ModuleRejectedError
from ._faults import _first_line

FK = common_pb2
_NUMERIC = frozenset({"i32", "i64", "f32", "f64"})

try:
    WASMTIME_VERSION = importlib.metadata.version("wasmtime")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - installed from source
    WASMTIME_VERSION = "unknown"


def make_engine(config: WasmPoolConfig) -> wasmtime.Engine:
    """A wasmtime Engine configured for determinism and for many small instances."""
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    cfg.cranelift_nan_canonicalization = True
    cfg.wasm_threads = False
    cfg.shared_memory = False
    cfg.wasm_relaxed_simd = False
    cfg.wasm_simd = True
    # Proposals whose state a snapshot could not capture, or that nothing needs, are off.
    cfg.wasm_gc = False
    cfg.wasm_function_references = False
    cfg.wasm_exceptions = False
    cfg.wasm_stack_switching = False
    cfg.wasm_multi_memory = False
    cfg.wasm_memory64 = False
    cfg.wasm_custom_page_sizes = False
    cfg.wasm_component_model = False
    cfg.wasm_reference_types = True  # LLVM's call_indirect encoding needs it
    cfg.wasm_bulk_memory = True
    cfg.wasm_multi_value = True
    cfg.wasm_tail_call = True
    cfg.memory_reservation = config.memory_reservation
    cfg.memory_guard_size = config.memory_guard_size
    cfg.memory_reservation_for_growth = 0
    cfg.memory_init_cow = config.memory_init_cow
    cfg.max_wasm_stack = config.max_wasm_stack
    return wasmtime.Engine(cfg)


@dataclass
class ModuleInfo:
    """A compiled, validated module."""

    hash: str
    module: wasmtime.Module
    pre: wasmtime.InstancePre
    imports: list[str]
    exports: list[str]
    has_receive_batch: bool
    mutable_globals: list[tuple[int, str]]  # (global index, type name)
    grow_helper: int | None  # function index of the injected memory.grow helper
    has_start: bool = False  # its start function is exported as wasmbin.START_EXPORT

    def response(self) -> pb.LoadModuleResponse:
        return pb.LoadModuleResponse(
            module_hash=self.hash,
            imports=self.imports,
            exports=self.exports,
            has_receive_batch=self.has_receive_batch,
        )


def compile_module(
    engine: wasmtime.Engine,
    linker: wasmtime.Linker,
    config: WasmPoolConfig,
    digest: str,
    wasm: bytes,
) -> ModuleInfo:
    """Validate, rewrite (lockstep.wasmbin), check against ABI v1 and compile a module;
    ModuleRejectedError says why not."""
    try:
        wasmtime.Module.validate(engine, wasm)
    except wasmtime.WasmtimeError as exc:
        raise ModuleRejectedError(
            FK.FAULT_KIND_MALFORMED_MODULE, f"invalid wasm module: {_first_line(str(exc))}"
        ) from None
    try:
        prepared = _wasmbin.prepare(wasm)
    except _wasmbin.RewriteError as exc:
        raise ModuleRejectedError(
            FK.FAULT_KIND_ABI_VIOLATION, f"unsupported wasm module: {exc}"
        ) from None
    except _wasmbin.MalformedModuleError as exc:
        raise ModuleRejectedError(FK.FAULT_KIND_MALFORMED_MODULE, str(exc)) from None
    layout = prepared.layout
    for name in layout.export_names:
        if name.startswith(_wasmbin.RESERVED_EXPORT_PREFIX):
            raise ModuleRejectedError(
                FK.FAULT_KIND_ABI_VIOLATION,
                f"export {name!r} uses the reserved prefix {_wasmbin.RESERVED_EXPORT_PREFIX!r}",
            )
    mutable: list[tuple[int, str]] = []
    for g in layout.globals:
        if g.mutable and not g.imported:
            if g.type_name not in _NUMERIC:
                raise ModuleRejectedError(
                    FK.FAULT_KIND_ABI_VIOLATION,
                    f"mutable global {g.index} has type {g.type_name}; "
                    "ABI v1 snapshots support only i32/i64/f32/f64",
                )
            mutable.append((g.index, g.type_name))
    module = _compile_cached(engine, config, digest, prepared.wasm)
    imports, exports, has_batch = _check_abi(prepared.wasm)
    try:
        pre = linker.instantiate_pre(module)
    except wasmtime.WasmtimeError as exc:  # pragma: no cover - _check_abi covers imports
        raise ModuleRejectedError(FK.FAULT_KIND_ABI_VIOLATION, _first_line(str(exc))) from None
    return ModuleInfo(
        digest,
        module,
        pre,
        imports,
        exports,
        has_batch,
        mutable,
        prepared.grow_helper,
        prepared.has_start,
    )


def _compile_cached(
    engine: wasmtime.Engine, config: WasmPoolConfig, digest: str, wasm: bytes
) -> wasmtime.Module:
    cache_dir = config.module_cache_dir
    path: Path | None = None
    if cache_dir is not None:
        # Keyed by the engine too: a serialized module is only valid for the same
        # wasmtime version and settings.
        c = config
        engine_key = (
            f"{WASMTIME_VERSION}|{c.memory_reservation}|{c.memory_guard_size}|"
            f"{c.max_wasm_stack}|{_wasmbin.REWRITE_VERSION}|"
            f"cow={int(c.memory_init_cow)}"
        )
        key = hashlib.sha256(f"{engine_key}|{digest}".encode())
        path = cache_dir / f"{key.hexdigest()}.cwasm"
        if path.is_file():
            try:
                return wasmtime.Module.deserialize_file(engine, str(path))
            except wasmtime.WasmtimeError:
                pass  # stale or corrupt: recompile and overwrite
    try:
        module = wasmtime.Module(engine, wasm)
    except wasmtime.WasmtimeError as exc:
        raise ModuleRejectedError(
            FK.FAULT_KIND_MALFORMED_MODULE, f"cannot compile module: {_first_line(str(exc))}"
        ) from None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(bytes(module.serialize()))
        tmp.replace(path)
    return module


def _check_abi(wasm: bytes) -> tuple[list[str], list[str], bool]:
    """The one ABI v1 conformance check (lockstep.abi); return (imports, function exports,
    batch?) of a prepared module."""
    module = _wasmbin.parse_module(wasm)
    found = _abi.problems(module)
    if found:
        raise ModuleRejectedError(FK.FAULT_KIND_ABI_VIOLATION, _abi.describe(found[0]))
    imports = [f"{imp.module}.{imp.name}" for imp in module.imports]
    exports = [
        e.name
        for e in module.exports
        if e.kind == _wasmbin.ExternKind.FUNC
        and not e.name.startswith(_wasmbin.RESERVED_EXPORT_PREFIX)
    ]
    return imports, exports, module.export("agent_receive_batch") is not None
