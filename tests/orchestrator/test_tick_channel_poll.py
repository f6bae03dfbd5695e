"""`--tick-channel-poll-us` reaches both ends of the tick channel (docs/adr/004): the
orchestrator's pools port and a pool process started with the flag."""

from __future__ import annotations

import pytest

from lockstep import batch as wire
from lockstep import tick_channel
from lockstep.spawn import start_service
from lockstep_orchestrator._ports import GrpcPools
from lockstep_wasm_pool import WasmPoolConfig
from lockstep_wasm_pool._engine import WasmPool
from lockstep_wasm_pool._service import WasmPoolServicer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not tick_channel.supported(), reason="the tick channel needs Linux"),
]


def test_the_poll_setting_reaches_the_pools_port_and_the_pool() -> None:
    with WasmPool(WasmPoolConfig(tick_channel_poll_us=0)) as pool:
        servicer = WasmPoolServicer(pool)
        try:
            assert servicer.channels is not None and servicer.channels._poll_s == 0
        finally:
            servicer.close()
    proc = start_service("lockstep_wasm_pool", None, "--tick-channel-poll-us", "0")
    try:
        for poll_s in (0.0, tick_channel.RESULT_POLL_S):
            pools = GrpcPools([proc.address], None, "auto", poll_s=poll_s)
            try:
                for tick in (1, 2):  # every batch answered over the channel either way
                    pools.step({0: wire.pack_step(tick, [], [], [])})
                assert pools.transports() == ["shm"]
                chan = pools._channels_shm[0]
                assert chan is not None and chan._waiter.poll_s == poll_s
                if not poll_s:
                    assert chan._waiter.polling is False  # never polls
            finally:
                pools.close()
    finally:
        proc.stop()


def test_the_pools_port_polls_only_with_a_core_for_each_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a core for the orchestrator and each local pool, batches ask the pool to poll
    for the next one; with fewer (here: one core pretended), both ends block at once."""
    sent: list[bool] = []
    send = tick_channel.ChannelClient.send

    def observed(
        self: tick_channel.ChannelClient, method: str, data: bytes, poll: bool = True
    ) -> None:
        sent.append(poll)
        send(self, method, data, poll)

    monkeypatch.setattr(tick_channel.ChannelClient, "send", observed)
    proc = start_service("lockstep_wasm_pool", None)
    try:
        pools = GrpcPools([proc.address], None, "auto")
        try:
            for cpus, tick in ((8, 1), (8, 2), (1, 3), (1, 4)):
                monkeypatch.setattr(tick_channel, "_cores", lambda cpus=cpus: cpus)
                pools.step({0: wire.pack_step(tick, [], [], [])})
            assert pools.transports() == ["shm"]
            assert sent == [True, True, False, False]
        finally:
            pools.close()
    finally:
        proc.stop()
