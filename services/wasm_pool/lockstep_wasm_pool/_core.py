"""Loader of the native stepping core (services/wasm_pool/native/lockstep_core.c).

`load()` returns the ctypes library or raises `CoreUnavailable` saying why: not built,
stale (built for another source or wasmtime version), or its wasmtime struct layouts differ
from wasmtime-py's ctypes definitions (the library declares the C API subset itself, since
the wheel ships no headers). The library leaves the wasmtime symbols undefined; they are
resolved against the libwasmtime that wasmtime-py has loaded, made globally visible here
first, so the core and wasmtime-py share one copy (one Engine, one Module).
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["CoreUnavailable", "Fixup", "Info", "Settings", "load"]

HERE = Path(__file__).resolve().parent
LIBRARY = HERE / "_lockstep_core.so"
STAMP = HERE / "_lockstep_core.stamp"


class CoreUnavailable(RuntimeError):  # noqa: N818 - a reason, not a failure of the caller
    """The native core cannot be used here; the message says why."""


class Settings(ctypes.Structure):
    _fields_ = [
        ("max_log_bytes", ctypes.c_uint64),
        ("max_infers", ctypes.c_uint64),
        ("max_infer_input", ctypes.c_uint64),
        ("max_random", ctypes.c_uint64),
        ("max_inbox", ctypes.c_uint64),
        ("code_stack_overflow", ctypes.c_int32),
        ("code_unreachable", ctypes.c_int32),
        ("code_out_of_fuel", ctypes.c_int32),
        ("pad", ctypes.c_int32),
        ("fk", ctypes.c_int32 * 7),
        ("pad2", ctypes.c_int32),
    ]


class Fixup(ctypes.Structure):
    _fields_ = [
        ("row", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("trap_code", ctypes.c_int32),
        ("text_off", ctypes.c_uint32),
        ("text_len", ctypes.c_uint32),
        ("entry", ctypes.c_uint32),
    ]


class Info(ctypes.Structure):
    _fields_ = [
        ("fuel", ctypes.c_uint64),
        ("seed", ctypes.c_uint64),
        ("rand_pos", ctypes.c_uint64),
        ("next_request_id", ctypes.c_uint64),
        ("pages", ctypes.c_uint32),
        ("sends", ctypes.c_uint32),
        ("message_bytes", ctypes.c_uint32),
        ("logs", ctypes.c_uint32),
        ("raw_fuel", ctypes.c_uint64),
        ("raw_pages", ctypes.c_uint32),
        ("raw_sends", ctypes.c_uint32),
        ("raw_mb", ctypes.c_uint32),
        ("raw_logs", ctypes.c_uint32),
        ("module", ctypes.c_int32),
        ("name_len", ctypes.c_uint32),
        ("args_len", ctypes.c_uint32),
        ("n_globals", ctypes.c_uint32),
        ("mem_size", ctypes.c_uint64),
        ("strings", ctypes.c_void_p),
        ("mem", ctypes.c_void_p),
        ("idle", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    ]


FIX_TRAP, FIX_ERROR, FIX_LOGS, FIX_REJECTED = 1, 2, 3, 4
ENTRIES = (
    "agent_alloc",
    "agent_init",
    "agent_step",
    "agent_receive",
    "agent_receive_batch",
    "agent_shutdown",
    "instantiate",
)

_P = ctypes.c_void_p
_SIGS: dict[str, tuple[Any, list[Any]]] = {
    "ls_version": (ctypes.c_int, []),
    "ls_layout": (ctypes.c_int64, [ctypes.c_int]),
    "ls_pool_new": (_P, [_P, ctypes.POINTER(Settings)]),
    "ls_pool_free": (None, [_P]),
    "ls_error": (ctypes.c_char_p, [_P]),
    "ls_module_add": (
        ctypes.c_int,
        [_P, _P, ctypes.c_int, ctypes.c_int64, ctypes.c_uint32, _P, _P],
    ),
    "ls_create": (ctypes.c_int, [_P, _P, ctypes.c_size_t, _P, _P, _P, _P, _P, _P, _P]),
    "ls_step": (ctypes.c_int, [_P, _P, ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint32)]),
    "ls_destroy": (ctypes.c_int, [_P, _P, ctypes.c_uint32, ctypes.c_int, ctypes.c_int64]),
    "ls_out": (_P, [_P, ctypes.POINTER(ctypes.c_size_t)]),
    "ls_fixups": (ctypes.POINTER(Fixup), [_P, ctypes.POINTER(ctypes.c_size_t)]),
    "ls_fixtext": (_P, [_P]),
    "ls_lookup": (ctypes.c_int, [_P, _P, ctypes.c_size_t, _P]),
    "ls_handles": (ctypes.c_size_t, [_P, _P]),
    "ls_live": (ctypes.c_size_t, [_P]),
    "ls_reset": (None, [_P]),
    "ls_agent_info": (ctypes.c_int, [_P, ctypes.c_uint64, ctypes.POINTER(Info), _P]),
    "ls_restore": (
        ctypes.c_int,
        [
            _P,
            ctypes.c_uint64,
            ctypes.c_int32,
            ctypes.c_uint64,
            ctypes.c_uint32,
            ctypes.c_uint32,
            ctypes.c_uint32,
            ctypes.c_uint32,
            _P,
            ctypes.c_uint64,
            _P,
            ctypes.c_uint16,
            _P,
            ctypes.c_uint32,
            _P,
            ctypes.c_uint64,
            _P,
            ctypes.c_uint64,
            ctypes.c_uint64,
            ctypes.c_int,
            _P,
            ctypes.POINTER(ctypes.c_uint64),
        ],
    ),
    "ls_chacha": (None, [_P, ctypes.c_uint64, _P, ctypes.c_size_t]),
}


def _expected_layout() -> list[int]:
    """The facts ls_layout reports, computed from wasmtime-py's ctypes definitions."""
    from wasmtime import _bindings as b

    ext = b.wasmtime_extern_t
    val = b.wasmtime_val_t
    return [
        ctypes.sizeof(b.wasmtime_func_t),
        ctypes.sizeof(b.wasmtime_memory_t),
        ctypes.sizeof(b.wasmtime_global_t),
        ctypes.sizeof(b.wasmtime_instance_t),
        ctypes.sizeof(ext),
        ext.of.offset,
        ctypes.sizeof(b.wasmtime_val_raw_t),
        ctypes.sizeof(val),
        val.of.offset,
        ctypes.sizeof(b.wasm_byte_vec_t),
        ctypes.sizeof(b.wasm_frame_vec_t),
        ctypes.sizeof(b.wasmtime_extern_union_t),
    ]


def _check_enums() -> None:
    from wasmtime import _bindings as b
    from wasmtime import _ffi as ffi

    want = {"WASMTIME_EXTERN_FUNC": 0, "WASMTIME_EXTERN_GLOBAL": 1, "WASMTIME_EXTERN_MEMORY": 3}
    for name, value in want.items():
        if getattr(ffi, name).value != value:
            raise CoreUnavailable(
                f"wasmtime-py's {name} is {getattr(ffi, name).value}, the core assumes {value}"
            )
    for name in (
        "wasmtime_func_unchecked_callback_t",
        "_wasmtime_linker_instantiate_pre",
        "_wasmtime_instance_pre_instantiate",
        "_wasmtime_func_call_unchecked",
    ):
        if not hasattr(b, name):
            raise CoreUnavailable(f"wasmtime-py lacks {name}")


_LIB: Any = None


def load() -> Any:
    """The loaded, checked core library (cached); raises CoreUnavailable."""
    global _LIB
    if _LIB is not None:
        return _LIB
    if not sys.platform.startswith("linux"):
        raise CoreUnavailable(f"the native core is built for linux only, not {sys.platform}")
    if not LIBRARY.is_file():
        raise CoreUnavailable(
            f"{LIBRARY.name} is not built (python3 dev.py setup, or "
            "python services/wasm_pool/native/build.py)"
        )
    build = HERE.parent / "native" / "build.py"
    if build.is_file():  # a source checkout: the stamp must match the source and versions
        import importlib.util

        spec = importlib.util.spec_from_file_location("_lockstep_core_build", build)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        if not mod.up_to_date():
            raise CoreUnavailable(
                f"{LIBRARY.name} is stale (the C source or the wasmtime or "
                "zig version changed): rerun python3 dev.py setup"
            )
    from wasmtime import _ffi as ffi

    wasmtime_path = getattr(ffi.dll, "_name", None)
    if not wasmtime_path:
        raise CoreUnavailable("cannot find the libwasmtime that wasmtime-py loaded")
    try:
        # Promote wasmtime-py's copy to global visibility (RTLD_NOLOAD: never a second copy).
        ctypes.CDLL(wasmtime_path, mode=os.RTLD_NOLOAD | os.RTLD_GLOBAL)
        lib = ctypes.CDLL(str(LIBRARY))
    except OSError as exc:
        raise CoreUnavailable(f"cannot load {LIBRARY.name}: {exc}") from None
    for name, (restype, argtypes) in _SIGS.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    if lib.ls_version() != 1:
        raise CoreUnavailable(f"{LIBRARY.name} has interface version {lib.ls_version()}")
    want = _expected_layout()
    got = [lib.ls_layout(i) for i in range(len(want))]
    if got != want:
        raise CoreUnavailable(
            f"wasmtime struct layouts differ between the core {got} and wasmtime-py {want}"
        )
    _check_enums()
    _LIB = lib
    return lib
