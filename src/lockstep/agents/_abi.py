"""Static check of a built module against agent ABI v1 (docs/abi.md), in pure Python.

The pool checks the same at registration; checking at build time turns a late
"module rejected" into an error that points at the source, with a hint about the
usual cause (a libc call, Math.random, a WASI import).
"""

from __future__ import annotations

from lockstep import abi, wasmbin
from lockstep.abi import EXPORTS as _REQUIRED
from lockstep.abi import IMPORT_MODULE as ABI_MODULE
from lockstep.abi import IMPORTS as ABI_IMPORTS
from lockstep.abi import OPTIONAL_EXPORTS

__all__ = [
    "ABI_EXPORTS",
    "ABI_IMPORTS",
    "IMPORT_MODULE",
    "OPTIONAL_EXPORTS",
    "REQUIRED_EXPORTS",
    "abi_problems",
]

# One source for the ABI tables and the conformance check: lockstep.abi.
IMPORT_MODULE = ABI_MODULE
REQUIRED_EXPORTS = _REQUIRED

#: Every ABI export name: ``memory`` and the functions above.
ABI_EXPORTS: frozenset[str] = frozenset({"memory", *REQUIRED_EXPORTS, *OPTIONAL_EXPORTS})

# Why a foreign import usually appears, keyed by (module, name); "" matches any name.
_HINTS: dict[tuple[str, str], str] = {
    ("env", "abort"): "the AssemblyScript abort hook; build with `lockstep agent build` "
                      "(sdk/assemblyscript/asconfig.json routes it to the SDK)",
    ("env", "seed"): "Math.random in AssemblyScript; use randomU64()/randomBelow()",
    ("env", "Date.now"): "Date in AssemblyScript; use tick() for time",
    ("env", "trace"): "trace() in AssemblyScript; use log()",
    ("env", "console.log"): "console.log in AssemblyScript; use log()",
}
_LIBC = {"memcpy", "memmove", "memset", "memcmp", "malloc", "free", "calloc", "realloc",
         "strlen", "printf", "puts", "abort", "exit", "time", "rand"}


def _hint(module: str, name: str) -> str:
    if module.startswith("wasi"):
        return "WASI is not available to agents (no clock, entropy or files)"
    hint = _HINTS.get((module, name))
    if hint is not None:
        return hint
    if module == "env" and name in _LIBC:
        return f"{name} is a libc function; agents have no libc (see sdk/c/lockstep.h)"
    return f"only {IMPORT_MODULE} functions are linked"


def abi_problems(wasm: bytes) -> list[str]:
    """Every way ``wasm`` breaks ABI v1, one line each (empty: it conforms).

    Checks imports (only ``lockstep_v1`` functions, by name and signature) and exports
    (``memory`` and the required functions with their signatures, the optional batch
    export's signature). Extra exports are allowed here; the pool accepts them.
    """
    try:
        module = wasmbin.parse_module(wasm)
    except wasmbin.MalformedModuleError as exc:
        return [str(exc)]
    return [_describe(p) for p in abi.problems(module)]


def _describe(p: abi.Problem) -> str:
    if p.code == "foreign-import":
        module, _, name = p.name.partition(".")
        return f"import {p.name} is not allowed ({_hint(module, name)})"
    return {
        "unknown-import": f"import {p.name} is unknown ({IMPORT_MODULE} has "
                          f"{', '.join(ABI_IMPORTS)})",
        "import-kind": f"import {p.name} has signature {p.got}, ABI v1 wants {p.want}",
        "import-signature": f"import {p.name} has signature {p.got}, ABI v1 wants {p.want}",
        "missing-memory": "missing export memory",
        "memory-kind": "export memory is not a memory",
        "missing-export": f"missing export {p.name}",
        "export-kind": f"export {p.name} is not a function",
        "export-signature": f"export {p.name} has signature {p.got}, ABI v1 wants {p.want}",
    }[p.code]
