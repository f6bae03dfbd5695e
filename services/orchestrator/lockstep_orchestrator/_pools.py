"""Clients for the wasm_pool processes an orchestrator shards its agents over."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from lockstep.client import AuthedChannel, wait_serving
from lockstep.errors import ServiceError
from lockstep.wasm_pool.v1 import wasm_pool_pb2 as pb
from lockstep.wasm_pool.v1 import wasm_pool_pb2_grpc as pb_grpc

RPC_TIMEOUT_S = 600.0


def _pool_error(address: str, what: str, exc: grpc.RpcError) -> ServiceError:
    return ServiceError(f"pool {address}: {what} failed: {exc.code().name}: {exc.details()}")


class PoolSet:
    """N pool processes; agent placement is decided by the caller (never affects digests)."""

    def __init__(self, addresses: Sequence[str], token: str | None) -> None:
        if not addresses:
            raise ServiceError("no wasm_pool addresses configured")
        self.addresses = list(addresses)
        self._channels = [AuthedChannel(a, token) for a in self.addresses]
        self._stubs = [pb_grpc.WasmPoolServiceStub(c) for c in self._channels]
        self._loaded: list[set[str]] = [set() for _ in self.addresses]

    def __len__(self) -> int:
        return len(self.addresses)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def ensure_module(self, pool: int, module_hash: str, wasm: bytes) -> None:
        """Load a module into one pool (once)."""
        if module_hash in self._loaded[pool]:
            return
        try:
            resp = self._stubs[pool].LoadModule(pb.LoadModuleRequest(wasm=wasm),
                                                timeout=RPC_TIMEOUT_S)
        except grpc.RpcError as exc:
            raise _pool_error(self.addresses[pool], "LoadModule", exc) from None
        self._loaded[pool].add(resp.module_hash)

    def check_module(self, wasm: bytes) -> pb.LoadModuleResponse:
        """Compile and ABI-check a module in pool 0 (the registration check)."""
        try:
            resp: pb.LoadModuleResponse = self._stubs[0].LoadModule(
                pb.LoadModuleRequest(wasm=wasm), timeout=RPC_TIMEOUT_S)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise ValueError(exc.details()) from None
            raise _pool_error(self.addresses[0], "LoadModule", exc) from None
        self._loaded[0].add(resp.module_hash)
        return resp

    def create(self, requests: dict[int, pb.CreateAgentsRequest]
               ) -> dict[int, pb.CreateAgentsResponse]:
        futures = {i: self._stubs[i].CreateAgents.future(req, timeout=RPC_TIMEOUT_S)
                   for i, req in sorted(requests.items())}
        return self._gather("CreateAgents", futures)

    def step(self, requests: dict[int, pb.StepBatchRequest]) -> dict[int, pb.StepBatchResponse]:
        """One StepBatch per pool, all in flight at once."""
        if len(requests) == 1:
            # A blocking call avoids the thread grpc starts for a future.
            (i, req), = requests.items()
            try:
                return {i: self._stubs[i].StepBatch(req, timeout=RPC_TIMEOUT_S)}
            except grpc.RpcError as exc:
                raise _pool_error(self.addresses[i], "StepBatch", exc) from None
        futures = {i: self._stubs[i].StepBatch.future(req, timeout=RPC_TIMEOUT_S)
                   for i, req in sorted(requests.items())}
        return self._gather("StepBatch", futures)

    def destroy(self, requests: dict[int, pb.DestroyAgentsRequest]
                ) -> dict[int, pb.DestroyAgentsResponse]:
        futures = {i: self._stubs[i].DestroyAgents.future(req, timeout=RPC_TIMEOUT_S)
                   for i, req in sorted(requests.items())}
        return self._gather("DestroyAgents", futures)

    def snapshot(self, pool: int, handles: list[int]) -> list[pb.AgentSnapshot]:
        """Complete instance state of `handles` in one pool."""
        try:
            return list(self._stubs[pool].Snapshot(pb.SnapshotRequest(handles=handles),
                                                   timeout=RPC_TIMEOUT_S))
        except grpc.RpcError as exc:
            raise _pool_error(self.addresses[pool], "Snapshot", exc) from None

    def restore(self, pool: int, snapshots: list[pb.AgentSnapshot]) -> None:
        """Recreate agents in one pool from snapshots."""
        try:
            self._stubs[pool].Restore(iter(snapshots), timeout=RPC_TIMEOUT_S)
        except grpc.RpcError as exc:
            raise _pool_error(self.addresses[pool], "Restore", exc) from None

    def forget_modules(self) -> None:
        """A pool may have restarted and lost its compiled modules: load them again."""
        self._loaded = [set() for _ in self.addresses]

    def wait_all_serving(self, timeout: float) -> None:
        """Block until every pool answers its health check (after a restart)."""
        for address in self.addresses:
            wait_serving(address, timeout=timeout)

    def reset(self) -> None:
        for i, stub in enumerate(self._stubs):
            try:
                stub.Reset(pb.ResetRequest(), timeout=RPC_TIMEOUT_S)
            except grpc.RpcError as exc:
                raise _pool_error(self.addresses[i], "Reset", exc) from None

    def _gather(self, what: str, futures: dict[int, grpc.Future]) -> dict:  # type: ignore[type-arg]
        out = {}
        error: ServiceError | None = None
        for i, fut in futures.items():
            try:
                out[i] = fut.result()
            except grpc.RpcError as exc:
                error = error or _pool_error(self.addresses[i], what, exc)
        if error is not None:
            raise error
        return out
