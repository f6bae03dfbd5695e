"""The one place that touches wasmtime-py internals (pinned: wasmtime==50.0.1).

wasmtime-py's public API costs 6-18 us per ``Func.__call__`` (it rebuilds the function
type and converts every value) and ~6.5 us per host-function call; its ``Memory.write``
builds a new ctypes array type per call. The pool makes several of each per agent step,
so this adapter offers the same operations on the raw C API that wasmtime-py already
loads (``wasmtime_func_call_unchecked``, ``wasmtime_linker_define_func_unchecked``,
``wasmtime_memory_data``):

* `Calls` - call i32-returning exports with i32 arguments;
* `Memory` - bounds-known reads and writes of linear memory;
* `define_host` - host functions as raw ctypes callbacks;
* `global_get_bits` / `global_set_bits` - exact bits of numeric globals.

Every piece has a public-API twin; `AVAILABLE` (checked once at import) is False when
the internals are not shaped as expected, and the engine then uses the public API only.
Both paths are tested against each other (tests/wasm_pool/test_native.py).

Host-function exceptions: a raw callback stores the exception in `HostState.pending` and
returns a trap; the call site re-raises it. (The public path uses wasmtime-py's own
process-global slot the same way, which is why the engine runs one call at a time.)
"""

from __future__ import annotations

import ctypes
import functools
import struct
from collections.abc import Callable
from typing import Any

import wasmtime

__all__ = [
    "AVAILABLE",
    "Fuel",
    "HostState",
    "Memory",
    "caller_memory",
    "define_host",
    "global_get_bits",
    "global_set_bits",
    "make_call",
    "make_fuel",
    "make_memory",
]

_KINDS = {"i32": 0, "i64": 1, "f32": 2, "f64": 3}
_WIDTH = {"i32": 4, "i64": 8, "f32": 4, "f64": 8}


def _internals() -> tuple[Any, Any]:
    from wasmtime import _bindings, _ffi

    return _ffi, _bindings


def _probe() -> bool:
    try:
        ffi, bindings = _internals()
        needed = [
            "_wasmtime_func_call_unchecked",
            "_wasmtime_linker_define_func_unchecked",
            "_wasmtime_memory_data",
            "_wasmtime_memory_data_size",
            "_wasmtime_trap_new",
            "_wasmtime_global_get",
            "_wasmtime_global_set",
            "wasmtime_val_raw",
            "_wasmtime_caller_export_get",
            "wasmtime_func_unchecked_callback_t",
        ]
        if not all(hasattr(bindings, n) for n in needed) or not hasattr(
            ffi, "WASMTIME_EXTERN_MEMORY"
        ):
            return False
        raw_fields = dict((f[0], f[1]) for f in ffi.wasmtime_val_raw._fields_)
        val_fields = dict((f[0], f[1]) for f in ffi.wasmtime_valunion._fields_)
        if (
            raw_fields.get("i32") is not ctypes.c_int32
            or raw_fields.get("i64") is not ctypes.c_int64
            or val_fields.get("i32") is not ctypes.c_int32
            or val_fields.get("i64") is not ctypes.c_int64
        ):
            return False
        if ctypes.sizeof(ffi.wasmtime_val_raw) != 16:
            return False
        # The attributes the adapter reads from public objects.
        return (
            "_func" in wasmtime.Func.__annotations__
            and "_global" in wasmtime.Global.__annotations__
            and "_memory" in wasmtime.Memory.__annotations__
            and hasattr(wasmtime.Store, "_context")
            and hasattr(wasmtime.Trap, "_from_ptr")
            and hasattr(wasmtime.WasmtimeError, "_from_ptr")
        )
    except Exception:  # any surprise in the internals means: use the public API
        return False


AVAILABLE = _probe()
_VAL_RAW_SIZE = 16


@functools.cache
def _raw(name: str, restype: Any) -> Any:
    """A second, argtypes-free handle on a C function: ctypes then passes pointer-like
    arguments as they are, skipping per-call conversion checks (the hot path)."""
    ffi, _ = _internals()
    fn = ffi.dll._FuncPtr((name, ffi.dll))
    fn.restype = restype
    return fn


class HostState:
    """Where a raw host callback leaves its exception for the call site to re-raise."""

    __slots__ = ("caller", "pending")

    def __init__(self) -> None:
        self.pending: BaseException | None = None
        # The calling instance (a raw wasmtime_caller_t* or a wasmtime.Caller) during a
        # host call; only used to reach memory from a start function, before the
        # instance's exports are known.
        self.caller: Any = None

    def take(self) -> BaseException | None:
        exc, self.pending = self.pending, None
        return exc


# ----------------------------------------------------------------------------- calls
def make_call(
    store: wasmtime.Store, func: wasmtime.Func, nargs: int, state: HostState, *, fast: bool
) -> Callable[..., int]:
    """A callable ``f(*i32 args) -> i32 result`` for an export of type (i32*) -> i32.

    Raises what ``Func.__call__`` raises (wasmtime.Trap / WasmtimeError), or the
    exception a host function left in `state`.
    """
    if not (fast and AVAILABLE):

        def public(*args: int) -> int:
            result = func(store, *args)
            return 0 if result is None else int(result)  # a start function returns nothing

        return public
    ffi, _ = _internals()
    ctx = store._context()
    ref = ctypes.byref(func._func)
    buf = (ffi.wasmtime_val_raw * max(1, nargs))()
    slot = ctypes.c_int32.from_buffer(buf)  # the i32 view of args_and_results[0]
    trap = ctypes.POINTER(ffi.wasm_trap_t)()
    trap_ref = ctypes.byref(trap)
    size = ctypes.c_size_t(1)
    raw_call = _raw("wasmtime_func_call_unchecked", ctypes.c_void_p)
    error_from_ptr = _error_from_address

    if nargs == 0:

        def call0() -> int:
            err = raw_call(ctx, ref, buf, size, trap_ref)
            if err or trap:
                return _slow_finish(err, trap, state, trap_ref, error_from_ptr)
            return slot.value

        return call0

    def call1(arg: int) -> int:
        slot.value = arg
        err = raw_call(ctx, ref, buf, size, trap_ref)
        if err or trap:
            return _slow_finish(err, trap, state, trap_ref, error_from_ptr)
        return slot.value

    if nargs == 1:
        return call1
    raise ValueError("make_call supports 0 or 1 arguments")  # pragma: no cover


def _slow_finish(err: Any, trap: Any, state: HostState, trap_ref: Any, error_from_ptr: Any) -> int:
    """Turn a failed raw call into the exception the public API would raise."""
    ffi, _ = _internals()
    if trap:
        # Hand the trap to a wasmtime.Trap (which deletes it) and reset the out-pointer.
        owned = ctypes.cast(trap, ctypes.POINTER(ffi.wasm_trap_t))  # copies the address
        trap_obj = wasmtime.Trap._from_ptr(owned)
        _reset_pointer(trap)
        pending = state.take()
        if pending is not None:
            raise pending
        raise trap_obj
    pending = state.take()
    if pending is not None:
        raise pending
    raise error_from_ptr(err)


def _error_from_address(address: int) -> wasmtime.WasmtimeError:
    ffi, _ = _internals()
    return wasmtime.WasmtimeError._from_ptr(
        ctypes.cast(address, ctypes.POINTER(ffi.wasmtime_error_t))
    )


def _reset_pointer(ptr: Any) -> None:
    ctypes.cast(ctypes.addressof(ptr), ctypes.POINTER(ctypes.c_void_p))[0] = None


# ----------------------------------------------------------------------------- fuel
class Fuel:
    """A store's fuel (public-API version)."""

    __slots__ = ("store",)

    def __init__(self, store: wasmtime.Store) -> None:
        self.store = store

    def set(self, amount: int) -> None:
        """Set the fuel left to `amount`."""
        self.store.set_fuel(amount)

    def remaining(self) -> int:
        """Fuel left."""
        return int(self.store.get_fuel())


class _RawFuel(Fuel):
    __slots__ = ("_amount", "_ctx", "_get", "_out", "_out_ref", "_set")

    def __init__(self, store: wasmtime.Store) -> None:
        super().__init__(store)
        self._ctx = store._context()
        self._set = _raw("wasmtime_context_set_fuel", ctypes.c_void_p)
        self._get = _raw("wasmtime_context_get_fuel", ctypes.c_void_p)
        self._out = ctypes.c_uint64(0)
        self._out_ref = ctypes.byref(self._out)
        self._amount = ctypes.c_uint64(0)

    def set(self, amount: int) -> None:
        if self._amount.value != amount:  # the budget rarely changes: reuse the c_uint64
            self._amount = ctypes.c_uint64(amount)
        err = self._set(self._ctx, self._amount)
        if err:
            raise _error_from_address(err)

    def remaining(self) -> int:
        err = self._get(self._ctx, self._out_ref)
        if err:
            raise _error_from_address(err)
        return self._out.value


def make_fuel(store: wasmtime.Store, *, fast: bool) -> Fuel:
    """A `Fuel` accessor, raw when possible."""
    return _RawFuel(store) if fast and AVAILABLE else Fuel(store)


# ----------------------------------------------------------------------------- memory
class Memory:
    """Reads/writes of one agent's linear memory (public-API version)."""

    __slots__ = ("memory", "store")

    def __init__(self, store: wasmtime.Store, memory: wasmtime.Memory) -> None:
        self.store = store
        self.memory = memory

    def size(self) -> int:
        """Current size in bytes."""
        return int(self.memory.data_len(self.store))

    def read(self, ptr: int, length: int) -> bytes:
        """`length` bytes at `ptr`; the caller has bounds-checked."""
        return bytes(self.memory.read(self.store, ptr, ptr + length))

    def write(self, ptr: int, data: bytes) -> None:
        """Write `data` at `ptr`; the caller has bounds-checked."""
        if data:
            self.memory.write(self.store, data, ptr)

    def read_pair(
        self,
        p1: int,
        n1: int,
        p2: int,
        n2: int,
    ) -> tuple[int, bytes | None, bytes | None]:
        """(size, bytes at p1, bytes at p2); a span outside memory reads as None."""
        size = self.size()
        a = self.read(p1, n1) if p1 + n1 <= size else None
        b = (self.read(p2, n2) if n2 else b"") if p2 + n2 <= size else None
        return size, a, b

    def put(self, ptr: int, data: bytes) -> int:
        """Write `data` at `ptr` if it fits; return the memory size either way."""
        size = self.size()
        if ptr + len(data) <= size:
            self.write(ptr, data)
        return size


class _RawMemory(Memory):
    __slots__ = ("_ctx", "_data", "_ref", "_size")

    def __init__(self, store: wasmtime.Store, memory: wasmtime.Memory) -> None:
        super().__init__(store, memory)
        self._ctx = store._context()
        self._ref = ctypes.byref(memory._memory)
        self._data = _raw("wasmtime_memory_data", ctypes.c_void_p)
        self._size = _raw("wasmtime_memory_data_size", ctypes.c_size_t)

    def size(self) -> int:
        return int(self._size(self._ctx, self._ref))

    def read(self, ptr: int, length: int) -> bytes:
        # The base may move when memory grows, so it is fetched on every access.
        return ctypes.string_at(self._data(self._ctx, self._ref) + ptr, length)

    def write(self, ptr: int, data: bytes) -> None:
        if data:
            ctypes.memmove(self._data(self._ctx, self._ref) + ptr, data, len(data))

    def read_pair(
        self,
        p1: int,
        n1: int,
        p2: int,
        n2: int,
    ) -> tuple[int, bytes | None, bytes | None]:
        ctx, ref = self._ctx, self._ref
        size: int = self._size(ctx, ref)
        base: int = self._data(ctx, ref)
        string_at = ctypes.string_at
        a = string_at(base + p1, n1) if p1 + n1 <= size else None
        b = (string_at(base + p2, n2) if n2 else b"") if p2 + n2 <= size else None
        return size, a, b

    def put(self, ptr: int, data: bytes) -> int:
        ctx, ref = self._ctx, self._ref
        size: int = self._size(ctx, ref)
        n = len(data)
        if n and ptr + n <= size:
            ctypes.memmove(self._data(ctx, ref) + ptr, data, n)
        return size


def make_memory(store: wasmtime.Store, memory: wasmtime.Memory, *, fast: bool) -> Memory:
    """A `Memory` accessor, raw when possible."""
    if fast and AVAILABLE:
        return _RawMemory(store, memory)
    return Memory(store, memory)


def caller_memory(
    store: wasmtime.Store,
    state: HostState,
    name: str = "memory",
) -> Memory | None:
    """The calling instance's exported memory, from inside a host call (else None)."""
    caller = state.caller
    if caller is None:
        return None
    if isinstance(caller, wasmtime.Caller):
        memory = caller.get(name)
    else:
        ffi, bindings = _internals()
        if isinstance(caller, int):  # raw callbacks receive the address
            caller = ctypes.cast(caller, ctypes.POINTER(ffi.wasmtime_caller_t))
        item = ffi.wasmtime_extern_t()
        raw = name.encode()
        if not bindings._wasmtime_caller_export_get(caller, raw, len(raw), ctypes.byref(item)):
            return None
        memory = (
            wasmtime.Memory._from_raw(item.of.memory)
            if item.kind == ffi.WASMTIME_EXTERN_MEMORY.value
            else None
        )
    if not isinstance(memory, wasmtime.Memory):
        return None
    return Memory(store, memory)


# ----------------------------------------------------------------------------- host funcs
def define_host(
    linker: wasmtime.Linker,
    module: str,
    name: str,
    params: int,
    result: str,
    fn: Callable[..., int],
    state: HostState,
    keep: list[object],
    *,
    fast: bool,
) -> None:
    """Define host function `module.name`: `params` i32 parameters, one `result` value.

    `fn` takes the i32 arguments (signed ints) and returns the result; an exception it
    raises becomes a trap and is re-raised at the call site. `keep` receives objects that
    must live as long as the linker.
    """
    i32 = wasmtime.ValType.i32()
    res = wasmtime.ValType.i64() if result == "i64" else i32
    ty = wasmtime.FuncType([i32] * params, [res])
    keep.append(ty)
    if not (fast and AVAILABLE):

        def public(caller: wasmtime.Caller, *args: int) -> int:
            state.caller = caller
            try:
                return fn(*args)
            finally:
                state.caller = None

        linker.define_func(module, name, ty, public, access_caller=True)
        return
    _, bindings = _internals()
    trap_new = bindings._wasmtime_trap_new
    message = b"lockstep host function fault"
    # args_and_results is an array of 16-byte wasmtime_val_raw_t; viewing it as int32
    # (or int64) lets ctypes hand out plain ints instead of building a union per access.
    stride = _VAL_RAW_SIZE // 4
    if result == "i64":
        cb_type = _CB64
        stride //= 2
    else:
        cb_type = _CB32

    def fault(exc: BaseException) -> int:
        state.pending = exc
        trap = trap_new(message, len(message))
        return ctypes.cast(trap, ctypes.c_void_p).value or 0

    callback = _callback(params, result == "i64", stride, fn, state, fault)
    cb = cb_type(callback)
    keep.append(cb)
    mod_b = module.encode()
    name_b = name.encode()
    null_finalizer = ctypes.cast(0, ctypes.CFUNCTYPE(None, ctypes.c_void_p))
    define = _raw("wasmtime_linker_define_func_unchecked", ctypes.c_void_p)
    err = define(
        linker.ptr(),
        mod_b,
        ctypes.c_size_t(len(mod_b)),
        name_b,
        ctypes.c_size_t(len(name_b)),
        ty.ptr(),
        cb,
        None,
        null_finalizer,
    )
    if err:
        raise _error_from_address(err)


def _sx(v: int) -> int:
    """The i32 in the low half of a 64-bit slot (the high half is not defined)."""
    return ((v & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000


def _callback(
    params: int,
    wide: bool,
    stride: int,
    fn: Callable[..., int],
    state: HostState,
    fault: Callable[[BaseException], int],
) -> Callable[..., int]:
    """A raw callback specialised by arity (host calls are hot; no generic unpacking)."""
    a, b, c, d = 0, stride, 2 * stride, 3 * stride
    if params == 4 and not wide:

        def cb4(_env: Any, caller: Any, args: Any, _n: int) -> int:
            state.caller = caller
            try:
                args[0] = fn(args[a], args[b], args[c], args[d])
                return 0
            except BaseException as exc:
                return fault(exc)
            finally:
                state.caller = None

        return cb4
    if params == 4:

        def cb4w(_env: Any, caller: Any, args: Any, _n: int) -> int:
            state.caller = caller
            try:
                args[0] = fn(_sx(args[a]), _sx(args[b]), _sx(args[c]), _sx(args[d]))
                return 0
            except BaseException as exc:
                return fault(exc)
            finally:
                state.caller = None

        return cb4w
    if params == 3 and not wide:

        def cb3(_env: Any, caller: Any, args: Any, _n: int) -> int:
            state.caller = caller
            try:
                args[0] = fn(args[a], args[b], args[c])
                return 0
            except BaseException as exc:
                return fault(exc)
            finally:
                state.caller = None

        return cb3
    if params == 2 and not wide:

        def cb2(_env: Any, caller: Any, args: Any, _n: int) -> int:
            state.caller = caller
            try:
                args[0] = fn(args[a], args[b])
                return 0
            except BaseException as exc:
                return fault(exc)
            finally:
                state.caller = None

        return cb2
    if params == 0:

        def cb0(_env: Any, caller: Any, args: Any, _n: int) -> int:
            state.caller = caller
            try:
                args[0] = fn()
                return 0
            except BaseException as exc:
                return fault(exc)
            finally:
                state.caller = None

        return cb0

    def cbn(_env: Any, caller: Any, args: Any, _n: int) -> int:
        state.caller = caller
        try:
            vals = [args[i * stride] for i in range(params)]
            args[0] = fn(*(_sx(v) for v in vals) if wide else vals)
            return 0
        except BaseException as exc:
            return fault(exc)
        finally:
            state.caller = None

    return cbn


_CB32 = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_int32),
    ctypes.c_size_t,
)
_CB64 = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_int64),
    ctypes.c_size_t,
)


# ----------------------------------------------------------------------------- globals
def global_get_bits(
    store: wasmtime.Store, glob: wasmtime.Global, type_name: str, *, fast: bool = True
) -> bytes:
    """The raw little-endian bits of a numeric global (exact, NaN payloads included)."""
    if fast and AVAILABLE:
        ffi, bindings = _internals()
        raw = ffi.wasmtime_val_t()
        bindings._wasmtime_global_get(
            store._context(), ctypes.byref(glob._global), ctypes.byref(raw)
        )
        if raw.kind != _KINDS[type_name]:
            raise TypeError(f"global is not {type_name}")
        if _WIDTH[type_name] == 4:
            return struct.pack("<i", raw.of.i32)
        return struct.pack("<q", raw.of.i64)
    value = glob.value(store)
    fmt = {"i32": "<i", "i64": "<q", "f32": "<f", "f64": "<d"}[type_name]
    return struct.pack(fmt, value)


def global_set_bits(
    store: wasmtime.Store, glob: wasmtime.Global, type_name: str, bits: bytes, *, fast: bool = True
) -> None:
    """Set a numeric global from raw little-endian bits."""
    if len(bits) != _WIDTH[type_name]:
        raise ValueError(f"{type_name} global needs {_WIDTH[type_name]} bytes, got {len(bits)}")
    if fast and AVAILABLE:
        ffi, bindings = _internals()
        raw = ffi.wasmtime_val_t()
        raw.kind = _KINDS[type_name]
        if len(bits) == 4:
            raw.of.i32 = struct.unpack("<i", bits)[0]
        else:
            raw.of.i64 = struct.unpack("<q", bits)[0]
        err = bindings._wasmtime_global_set(
            store._context(), ctypes.byref(glob._global), ctypes.byref(raw)
        )
        if err:
            raise wasmtime.WasmtimeError._from_ptr(err)
        return
    fmt = {"i32": "<i", "i64": "<q", "f32": "<f", "f64": "<d"}[type_name]
    value = struct.unpack(fmt, bits)[0]
    if type_name == "f32":
        glob.set_value(store, wasmtime.Val.f32(value))
    elif type_name == "f64":
        glob.set_value(store, wasmtime.Val.f64(value))
    else:
        glob.set_value(store, value)
