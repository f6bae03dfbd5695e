"""The one place that touches wasmtime-py internals (pinned: wasmtime==50.0.1).

Everything here has a public-API fallback, chosen once at import time by `AVAILABLE`,
which is False when the internals are not shaped as expected (another wasmtime-py
version). Tests cover both paths (tests/wasm_pool/test_native.py).
"""

from __future__ import annotations

import ctypes
import struct
from typing import Any

import wasmtime

__all__ = ["AVAILABLE", "global_get_bits", "global_set_bits"]

_KINDS = {"i32": 0, "i64": 1, "f32": 2, "f64": 3}
_WIDTH = {"i32": 4, "i64": 8, "f32": 4, "f64": 8}


def _probe() -> bool:
    try:
        ffi = _ffi()
        needed = ["wasmtime_global_get", "wasmtime_global_set", "wasmtime_val_t",
                  "wasmtime_func_call_unchecked", "wasmtime_memory_data",
                  "wasmtime_memory_data_size"]
        if not all(hasattr(ffi, n) for n in needed):
            return False
        union_fields = dict(ffi.wasmtime_valunion._fields_)
        return union_fields.get("i32") is ctypes.c_int32 \
            and union_fields.get("i64") is ctypes.c_int64 \
            and hasattr(wasmtime.Global, "__annotations__") \
            and "_global" in wasmtime.Global.__annotations__
    except Exception:  # any surprise in the internals means: use the public API
        return False


AVAILABLE = _probe()


def _ffi() -> Any:
    from wasmtime import _ffi as ffi

    return ffi


def _ctx(store: Any) -> Any:
    return store._context()


def global_get_bits(store: wasmtime.Store, glob: wasmtime.Global, type_name: str,
                    *, fast: bool = True) -> bytes:
    """The raw little-endian bits of a numeric global (exact, NaN payloads included)."""
    if fast and AVAILABLE:
        ffi = _ffi()
        raw = ffi.wasmtime_val_t()
        ffi.wasmtime_global_get(_ctx(store), ctypes.byref(glob._global), ctypes.byref(raw))
        if raw.kind != _KINDS[type_name]:
            raise TypeError(f"global is not {type_name}")
        if _WIDTH[type_name] == 4:
            return struct.pack("<i", raw.of.i32)
        return struct.pack("<q", raw.of.i64)
    value = glob.value(store)
    fmt = {"i32": "<i", "i64": "<q", "f32": "<f", "f64": "<d"}[type_name]
    return struct.pack(fmt, value)


def global_set_bits(store: wasmtime.Store, glob: wasmtime.Global, type_name: str,
                    bits: bytes, *, fast: bool = True) -> None:
    """Set a numeric global from raw little-endian bits."""
    if len(bits) != _WIDTH[type_name]:
        raise ValueError(f"{type_name} global needs {_WIDTH[type_name]} bytes, got {len(bits)}")
    if fast and AVAILABLE:
        ffi = _ffi()
        raw = ffi.wasmtime_val_t()
        raw.kind = _KINDS[type_name]
        if len(bits) == 4:
            raw.of.i32 = struct.unpack("<i", bits)[0]
        else:
            raw.of.i64 = struct.unpack("<q", bits)[0]
        err = ffi.wasmtime_global_set(_ctx(store), ctypes.byref(glob._global),
                                      ctypes.byref(raw))
        if err:
            raise wasmtime.WasmtimeError._from_ptr(err)
        return
    fmt = {"i32": "<i", "i64": "<q", "f32": "<f", "f64": "<d"}[type_name]
    value = struct.unpack(fmt, bits)[0]
    if type_name in ("f32", "f64"):
        glob.set_value(store, wasmtime.Val.f32(value) if type_name == "f32"
                       else wasmtime.Val.f64(value))
    else:
        glob.set_value(store, value)
