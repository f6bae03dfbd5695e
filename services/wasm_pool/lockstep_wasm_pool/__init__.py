"""Lockstep wasm_pool: runs agent instances with wasmtime, one Store per agent.

Deterministic (fuel, NaN canonicalisation, no threads/relaxed SIMD, no WASI), sandboxed
(ABI v1 imports only, every pointer bounds-checked, memory capped per agent), and
snapshottable (linear memory and every mutable global). See docs/pool.md.
"""

from lockstep_wasm_pool._config import WasmPoolConfig
from lockstep_wasm_pool._engine import ModuleInfo, WasmPool, make_engine, state_hash
from lockstep_wasm_pool._errors import (
    AlreadyExistsError,
    InvalidRequestError,
    LimitReachedError,
    ModuleRejectedError,
    NotFoundError,
    PoolError,
)
from lockstep_wasm_pool._service import (
    ROLE_TABLE,
    SERVICE_NAME,
    WasmPoolServicer,
    create_server,
    open_pool,
)

__all__ = [
    "ROLE_TABLE",
    "SERVICE_NAME",
    "AlreadyExistsError",
    "InvalidRequestError",
    "LimitReachedError",
    "ModuleInfo",
    "ModuleRejectedError",
    "NotFoundError",
    "PoolError",
    "WasmPool",
    "WasmPoolConfig",
    "WasmPoolServicer",
    "create_server",
    "make_engine",
    "open_pool",
    "state_hash",
]
