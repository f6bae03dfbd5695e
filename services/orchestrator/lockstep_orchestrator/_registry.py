"""Registered modules: verified once (signature, manifest, ABI, capabilities, policy),
stored by hash, loaded into pools on demand."""

from __future__ import annotations

import logging
from pathlib import Path

from lockstep.errors import ModuleError, NotFoundError, quote
from lockstep.modules import Policy, strip_signature, verify
from lockstep.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep_orchestrator._ports import PoolFailureError, Pools

log = logging.getLogger("lockstep.orchestrator.modules")


class ModuleRegistry:
    """Module hash -> (info, bytes without signature); names resolve to the latest one."""

    def __init__(self, pools: Pools, directory: Path | None, policy: Policy) -> None:
        self._pools = pools
        self._dir = directory
        self._policy = policy
        self._modules: dict[str, tuple[opb.ModuleInfo, bytes]] = {}
        self._names: dict[str, str] = {}
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def register(self, wasm: bytes, name: str) -> opb.ModuleInfo:
        """Verify and store a module; raises ModuleError naming what is wrong.

        `name` must match the manifest's name when given (it is a check, not a rename).
        """
        verdict = verify(wasm, policy=self._policy)
        manifest = verdict.manifest
        if name and name != manifest.name:
            raise ModuleError(f"module manifest names it {manifest.name!r}, not {quote(name)}")
        stripped = strip_signature(wasm)
        try:
            checked = self._pools.check_module(stripped)
        except PoolFailureError as exc:
            if exc.status.name != "INVALID_ARGUMENT":
                raise
            raise ModuleError(exc.detail) from None
        if checked.module_hash != verdict.module_hash:
            raise ModuleError(f"pool computed {checked.module_hash} for {verdict.module_hash}")
        info = opb.ModuleInfo(
            module_hash=verdict.module_hash, name=manifest.name, version=manifest.version,
            abi_version=manifest.abi_version, capabilities=list(manifest.capabilities),
            signer=verdict.signer, verdict=verdict.verdict, size=verdict.size,
        )
        self._modules[verdict.module_hash] = (info, stripped)
        self._names[manifest.name] = verdict.module_hash
        if self._dir is not None:
            path = self._dir / (verdict.module_hash.removeprefix("sha256:") + ".wasm")
            path.write_bytes(stripped)
        return info

    def resolve(self, ref: str) -> str:
        """A module hash from a hash or a registered name."""
        if ref in self._modules:
            return ref
        if ref in self._names:
            return self._names[ref]
        raise NotFoundError(f"no registered module {quote(ref)}")

    def known(self) -> set[str]:
        """Hashes of every registered module."""
        return set(self._modules)

    def wasm(self, module_hash: str) -> bytes:
        return self._modules[module_hash][1]

    def list(self) -> list[opb.ModuleInfo]:
        return sorted((info for info, _ in self._modules.values()),
                      key=lambda i: (i.name, i.module_hash))
