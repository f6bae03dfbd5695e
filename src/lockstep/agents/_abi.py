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
    return [abi.describe(p) for p in abi.problems(module)]
