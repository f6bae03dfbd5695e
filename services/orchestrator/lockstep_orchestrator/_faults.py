"""The orchestrator's fault points (lockstep.faults, docs/faults.md): a `Pools` wrapper
around each step batch, installed only when LOCKSTEP_FAULTS names a plan (the run manager
then uses it in place of the real adapter; without a plan nothing wraps anything)."""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from lockstep.faults import Injector
from lockstep_orchestrator._ports import PoolFailureError, Pools

_TICK = struct.Struct("<q")  # the step request's i64 tick at offset 16 (docs/wire.md)


def _tick_of(requests: dict[int, bytes]) -> int:
    for buf in requests.values():
        return int(_TICK.unpack_from(buf, 16)[0])
    return 0


class FaultyPools:
    """`Pools` with the plan's faults at each step batch: signals `before`, `during` and
    `after` it, and a lost, duplicated or delayed response of one pool. Everything else
    goes straight to the wrapped adapter."""

    def __init__(self, inner: Pools, faults: Injector) -> None:
        self._inner = inner
        self.faults = faults

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __len__(self) -> int:
        return len(self._inner)

    def step(self, requests: dict[int, bytes]) -> dict[int, bytes]:
        return self.step_begin(requests)()

    def step_begin(self, requests: dict[int, bytes]) -> Callable[[], dict[int, bytes]]:
        """`before` as the batches go out, `during` beside them, the response faults and
        `after` in the wait (so a tick started before the previous one commits meets the
        same logical points)."""
        tick = _tick_of(requests)
        inj = self.faults
        inj.at("before", tick)
        during = threading.Thread(target=inj.at, args=("during", tick), daemon=True)
        during.start()  # concurrently with the batch's calls
        try:
            wait = self._inner.step_begin(requests)
        except BaseException:
            during.join()
            raise

        def finish() -> dict[int, bytes]:
            try:
                out = wait()
            finally:
                during.join()
            for pool in sorted(requests):
                fault = inj.response(tick, pool)
                if fault is None:
                    continue
                address = self._inner.addresses[pool]
                if fault.kind == "pool.drop":
                    raise PoolFailureError(
                        pool,
                        address,
                        "StepBatch",
                        grpc.StatusCode.UNAVAILABLE,
                        f"response lost (fault injection {fault.id})",
                    )
                if fault.kind == "pool.duplicate":  # the same batch again: the pool must not
                    out[pool] = self._inner.step({pool: requests[pool]})[pool]  # run it twice
                elif fault.kind == "pool.delay":
                    time.sleep(fault.ms / 1000)
            inj.at("after", tick)
            return out

        return finish
