"""The shared-memory tick channel (lockstep.tick_channel) with real sockets and memory
files: round trips that grow the regions, refusals with their status, the admission
checks, and a peer SIGKILLed mid-batch: detected at once, nothing left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lockstep import tick_channel
from lockstep.errors import InvalidRequestError
from lockstep.status import status_of
from lockstep.tick_channel import (
    ChannelClient,
    ChannelClosedError,
    ChannelRefusedError,
    ChannelServer,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not tick_channel.supported(),
        reason="the tick channel needs Linux (memfd, abstract sockets)",
    ),
]


def refusal(exc: BaseException) -> tuple[str, str]:
    code, detail = status_of(exc)
    return code.name, detail


def handler(method: str, data: bytes) -> bytes:
    if data == b"refuse":
        raise InvalidRequestError("no thanks")
    return method.encode() + b":" + data[::-1]


@pytest.fixture
def server() -> Iterator[ChannelServer]:
    srv = ChannelServer(handler, refusal)
    yield srv
    srv.close()


def memfds() -> int:
    """Tick-channel memory files this process holds open (each mapping holds one)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own fd is gone by now
            n += "lockstep-tick" in os.readlink(f"/proc/self/fd/{fd}")
    return n


def abstract_sockets(prefix: str) -> int:
    return Path("/proc/net/unix").read_text().count("@" + prefix)


def test_round_trips_grow_the_regions_and_refusals_carry_their_status(
    server: ChannelServer,
) -> None:
    name, secret = server.open()
    client = ChannelClient.connect(name, secret)
    try:
        for size in (0, 10, 3 << 20, 100, 9 << 20, 7):  # past the 1 MiB first region, twice
            data = os.urandom(size)
            client.send("StepBatch", data)
            assert client.receive(10) == b"StepBatch:" + data[::-1]
        client.send("CreateAgents", b"refuse")
        with pytest.raises(ChannelRefusedError) as refused:
            client.receive(10)
        assert refused.value.status == "INVALID_ARGUMENT" and "no thanks" in str(refused.value)
        client.send("DestroyAgents", b"ok")  # the channel goes on after a refusal
        assert client.receive(10) == b"DestroyAgents:ko"
    finally:
        client.close()
    server.close()  # its connection thread ends and unmaps its regions
    deadline = time.monotonic() + 10
    while memfds() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert memfds() == 0  # every region (each mapping holds a memfd) is gone


def test_a_wrong_or_reused_secret_is_refused(server: ChannelServer) -> None:
    name, secret = server.open()
    with pytest.raises(ChannelClosedError, match=r"refused|cannot connect"):
        ChannelClient.connect(name, os.urandom(32))
    ChannelClient.connect(name, secret).close()
    with pytest.raises(ChannelClosedError, match=r"refused|cannot connect"):
        ChannelClient.connect(name, secret)  # one time only
    with pytest.raises(ChannelClosedError, match="cannot connect"):
        ChannelClient.connect("lockstep-pool-no-such-socket", secret)


_SLOW_POOL = r"""
import sys, time
from lockstep.tick_channel import ChannelServer
srv = ChannelServer(lambda m, d: time.sleep(60) or d, lambda e: ("INTERNAL", str(e)))
name, secret = srv.open()
print(name, secret.hex(), flush=True)
time.sleep(120)
"""


def test_a_peer_killed_mid_batch_is_detected_at_once_and_leaves_nothing() -> None:
    shm_before = sorted(os.listdir("/dev/shm"))
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_POOL], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        name, secret = proc.stdout.readline().split()
        client = ChannelClient.connect(name, bytes.fromhex(secret))
        client.send("StepBatch", os.urandom(2 << 20))  # the "pool" now works for a minute
        assert abstract_sockets(name) >= 1
        proc.send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(ChannelClosedError, match=r"closed|gone"):
            client.receive(60)
        assert time.monotonic() - t0 < 10  # the doorbell closed with the process
        client.close()
    finally:
        proc.kill()
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert abstract_sockets(name) == 0  # the socket went with the process
    assert sorted(os.listdir("/dev/shm")) == shm_before  # no named segments, ever
    assert memfds() == 0


def test_polling_takes_queued_messages_with_their_descriptors_and_stops_after_long_waits() -> None:
    from lockstep.tick_channel import _recv, _Waiter

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    try:
        # Polling really polls: an empty socket answers at once (socket.recv_fds of
        # Python 3.11 drops its flags argument and would block here).
        with pytest.raises(BlockingIOError):
            _recv(a, socket.MSG_DONTWAIT)
        waiter = _Waiter(poll_s=0.05)
        assert waiter.polling
        socket.send_fds(b, [b"first"], [w])
        msg, fds = _recv_checked(waiter, a)
        assert msg == b"first" and len(fds) == 1  # the descriptor rode along
        os.write(fds[0], b"!")
        os.close(fds[0])
        assert os.read(r, 1) == b"!"
        assert waiter.polling  # taken while polling: stays on
        # A wait longer than the window turns polling off until a wait is short again.
        late = threading.Timer(waiter.window_s + 0.3, b.send, args=(b"late",))
        late.start()
        assert _recv_checked(waiter, a) == (b"late", [])
        assert not waiter.polling
        b.send(b"soon")
        assert _recv_checked(waiter, a) == (b"soon", [])
        assert waiter.polling
        assert waiter.recv(a, timeout=0.01) is None  # nothing came: None, polling off
        assert not waiter.polling
        assert _Waiter(poll_s=0).polling is False
        with pytest.raises(ValueError, match="poll time"):
            _Waiter(poll_s=-1)
    finally:
        for s in (a, b):
            s.close()
        os.close(r)
        os.close(w)


def _recv_checked(waiter: Any, sock: socket.socket) -> tuple[bytes, list[int]]:
    got = waiter.recv(sock, timeout=30)
    assert got is not None
    return got


def test_an_idle_channel_polls_no_longer_than_its_window(server: ChannelServer) -> None:
    """Both ends poll only right after a message: an idle channel uses no CPU."""
    name, secret = server.open()
    client = ChannelClient.connect(name, secret)
    try:
        for i in range(20):  # back to back: both ends are polling now
            client.send("StepBatch", bytes([i]))
            assert client.receive(10) == b"StepBatch:" + bytes([i])
        cpu = time.process_time()
        threading.Event().wait(0.5)  # idle: the property under test
        assert time.process_time() - cpu < 0.1  # a polling loop would burn ~0.5 s
        client.send("StepBatch", b"again")  # and the channel still answers after it
        assert client.receive(10) == b"StepBatch:niaga"
    finally:
        client.close()


def test_the_pool_polls_for_the_next_batch_only_when_the_batch_says_a_core_is_free(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch sent with poll=False (the orchestrator and its local pools have no core to
    spare) makes the pool block for the next one at once, and the orchestrator block for
    its result; with poll=True both ends poll first (non-blocking receives)."""
    seen: list[tuple[str, int]] = []
    real = tick_channel._recv

    def observed(sock: socket.socket, flags: int = 0) -> tuple[bytes, list[int]]:
        seen.append((threading.current_thread().name, flags))
        return real(sock, flags)

    monkeypatch.setattr(tick_channel, "_recv", observed)
    # Polls of 5 s: whoever polls is still polling when the next message comes.
    server = ChannelServer(handler, refusal, poll_s=5.0)
    name, secret = server.open()
    client = ChannelClient.connect(name, secret, poll_s=5.0)
    try:
        for poll in (True, False):
            for i in range(3):  # the pool waits polled (or not) after each answer
                client.send("StepBatch", bytes([i]), poll=poll)
                assert client.receive(10) == b"StepBatch:" + bytes([i])
            seen.clear()
            client.send("StepBatch", b"x", poll=poll)
            assert client.receive(10) == b"StepBatch:x"
            pool = {f for who, f in seen if who == "tick-channel-conn"}
            mine = {f for who, f in seen if who != "tick-channel-conn"}
            if poll:
                assert socket.MSG_DONTWAIT in pool and socket.MSG_DONTWAIT in mine
            else:
                assert pool <= {0} and mine == {0}  # blocking receives only
    finally:
        client.close()
        server.close()


def test_polling_pays_only_with_a_core_for_each_process() -> None:
    assert tick_channel.polls_fit(1, cpus=2)  # one pool and the orchestrator on 2 cores
    assert not tick_channel.polls_fit(2, cpus=2)  # two pools would take the kernel's core
    assert tick_channel.polls_fit(3, cpus=16)
    assert tick_channel.polls_fit(0, cpus=1)
