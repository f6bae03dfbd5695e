"""Registered modules: verified once, stored by hash, loaded into pools on demand."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from lockstep.errors import ModuleError
from lockstep.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep_orchestrator._pools import PoolSet

log = logging.getLogger("lockstep.orchestrator.modules")

MAX_MODULE_BYTES = 32 * 1024 * 1024


class ModuleRegistry:
    """Module hash -> (info, bytes); names resolve to the latest registration."""

    def __init__(self, pools: PoolSet, directory: Path | None, dev_mode: bool) -> None:
        self._pools = pools
        self._dir = directory
        self._dev_mode = dev_mode
        self._modules: dict[str, tuple[opb.ModuleInfo, bytes]] = {}
        self._names: dict[str, str] = {}
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def register(self, wasm: bytes, name: str) -> opb.ModuleInfo:
        """Verify and store a module; raises ModuleError naming what is wrong."""
        if len(wasm) > MAX_MODULE_BYTES:
            raise ModuleError(f"module is {len(wasm)} bytes; the limit is {MAX_MODULE_BYTES}")
        if not self._dev_mode:
            raise ModuleError("signed-module verification is not available in this build; "
                              "start the orchestrator with --dev-mode to accept unsigned modules")
        if not name:
            raise ModuleError("an unsigned module needs a name to register under")
        log.warning("DEV MODE: registering unsigned module %r", name)
        try:
            checked = self._pools.check_module(wasm)
        except ValueError as exc:
            raise ModuleError(str(exc)) from None
        module_hash = "sha256:" + hashlib.sha256(wasm).hexdigest()
        assert checked.module_hash == module_hash, (checked.module_hash, module_hash)
        info = opb.ModuleInfo(module_hash=module_hash, name=name, version="0.0.0",
                              abi_version="1.0", verdict="unsigned-dev-mode", size=len(wasm))
        self._modules[module_hash] = (info, wasm)
        self._names[name] = module_hash
        if self._dir is not None:
            (self._dir / (module_hash.removeprefix("sha256:") + ".wasm")).write_bytes(wasm)
        return info

    def resolve(self, ref: str) -> str:
        """A module hash from a hash or a registered name."""
        if ref in self._modules:
            return ref
        if ref in self._names:
            return self._names[ref]
        raise KeyError(f"no registered module {ref!r}")

    def wasm(self, module_hash: str) -> bytes:
        return self._modules[module_hash][1]

    def info(self, module_hash: str) -> opb.ModuleInfo:
        return self._modules[module_hash][0]

    def list(self) -> list[opb.ModuleInfo]:
        return sorted((info for info, _ in self._modules.values()),
                      key=lambda i: (i.name, i.module_hash))
