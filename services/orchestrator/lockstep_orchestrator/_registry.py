"""Registered modules: verified once (signature, manifest, ABI, capabilities, policy),
stored by hash, loaded into pools on demand.

With a directory, every registration is kept there (`<hex>.module`, the bytes as
registered, signature included; `<hex>.wasm`, the stripped bytes pools load; `index.json`,
the registration order) and read back when the orchestrator starts, so registered modules
survive a restart (checkpoints and journals name modules by hash). Each is verified again
under the current policy at start-up; one that no longer passes (an unsigned module
without --dev-mode, a key no longer trusted, a capability no longer granted) is skipped
with a warning."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from lockstep.errors import ModuleError, NotFoundError, quote
from lockstep.modules import Policy, strip_signature, verify
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
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
        self._order: list[str] = []
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._load(directory)

    def _load(self, directory: Path) -> None:
        try:
            order = json.loads((directory / "index.json").read_text())
        except FileNotFoundError:
            return
        for module_hash in order:
            path = directory / (str(module_hash).removeprefix("sha256:") + ".module")
            try:
                info, stripped = self._verified(path.read_bytes(), "")
            except (OSError, ModuleError) as exc:
                log.warning("registered module %s not loaded: %s", module_hash, exc)
                continue
            if info.module_hash != module_hash:
                log.warning(
                    "registered module %s not loaded: its file holds %s",
                    module_hash,
                    info.module_hash,
                )
                continue
            self._add(info, stripped)
        log.info("%d registered modules read back from %s", len(self._modules), directory)

    def _verified(self, wasm: bytes, name: str) -> tuple[opb.ModuleInfo, bytes]:
        verdict = verify(wasm, policy=self._policy)
        manifest = verdict.manifest
        if name and name != manifest.name:
            raise ModuleError(f"module manifest names it {manifest.name!r}, not {quote(name)}")
        info = opb.ModuleInfo(
            module_hash=verdict.module_hash,
            name=manifest.name,
            version=manifest.version,
            abi_version=manifest.abi_version,
            capabilities=list(manifest.capabilities),
            signer=verdict.signer,
            verdict=verdict.verdict,
            size=verdict.size,
        )
        return info, strip_signature(wasm)

    def _add(self, info: opb.ModuleInfo, stripped: bytes) -> None:
        self._modules[info.module_hash] = (info, stripped)
        self._names[info.name] = info.module_hash
        if info.module_hash in self._order:
            self._order.remove(info.module_hash)
        self._order.append(info.module_hash)

    def register(self, wasm: bytes, name: str) -> opb.ModuleInfo:
        """Verify and store a module; raises ModuleError naming what is wrong.

        `name` must match the manifest's name when given (it is a check, not a rename).
        """
        info, stripped = self._verified(wasm, name)
        try:
            checked = self._pools.check_module(stripped)
        except PoolFailureError as exc:
            if exc.status.name != "INVALID_ARGUMENT":
                raise
            raise ModuleError(exc.detail) from None
        if checked.module_hash != info.module_hash:
            raise ModuleError(f"pool computed {checked.module_hash} for {info.module_hash}")
        self._add(info, stripped)
        if self._dir is not None:
            stem = info.module_hash.removeprefix("sha256:")
            _write(self._dir / f"{stem}.wasm", stripped)
            _write(self._dir / f"{stem}.module", wasm)
            _write(self._dir / "index.json", json.dumps(self._order).encode())
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
        return sorted(
            (info for info, _ in self._modules.values()), key=lambda i: (i.name, i.module_hash)
        )


def _write(path: Path, data: bytes) -> None:
    """Replace a file whole (write a temporary file, then rename), mode 0600."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
