"""The shared-memory tick channel between an orchestrator and a pool on the same host.

gRPC stays the control plane; a local pool's CreateAgents, StepBatch and DestroyAgents
batches (the packed buffers of docs/wire.md) travel through shared memory instead
(docs/adr/004-shared-memory-ownership.md):

- Two regions, each with one writer: the orchestrator writes requests into its region,
  the pool writes results into its own. A region is an anonymous memory file
  (`memfd_create`): it has no name, so nothing is left behind on any exit, SIGKILL
  included; the kernel frees it when the last process holding it closes it.
- The doorbell is a connected Unix SOCK_SEQPACKET socket in the Linux abstract
  namespace (no file either). Each request is one small message (method, sequence,
  length); the reply is one message back (status, sequence, length). A region that has to
  grow is replaced by a bigger one whose file descriptor rides along with the message
  (SCM_RIGHTS). The reader copies the bytes out before it answers, so a writer may reuse
  its region as soon as it holds the answer.
- The socket is also the liveness signal: a pool that dies mid-batch closes its end and
  the orchestrator's wait returns at once (no hang on the doorbell).
- A connection is accepted only from the same user (SO_PEERCRED) presenting a one-time
  secret obtained over the authenticated gRPC control plane (OpenTickChannel).
- With OpenTelemetry on, a request carries the caller's trace context (W3C traceparent,
  after the header) and the pool handles it in a server span of that trace, as the gRPC
  instrumentation does for RPCs.

Linux only (memfd, abstract sockets, SCM_RIGHTS); elsewhere `supported()` is False and
the orchestrator uses gRPC.
"""

from __future__ import annotations

import array
import contextlib
import functools
import logging
import mmap
import os
import secrets
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry import propagate, trace

from lockstep.errors import ServiceError
from lockstep.otel import tracing_on

__all__ = [
    "METHODS",
    "ChannelClient",
    "ChannelClosedError",
    "ChannelRefusedError",
    "ChannelServer",
    "host_identity",
    "polls_fit",
    "supported",
]

log = logging.getLogger("lockstep.tick_channel")
_tracer = trace.get_tracer("lockstep.tick_channel")

VERSION = 1
# Method numbers on the wire.
METHODS = {"CreateAgents": 1, "StepBatch": 2, "DestroyAgents": 3}
_HELLO = struct.Struct("<4sHH32s")  # b"LSTC", version, 0, secret
_ACK = struct.Struct("<4sHH")  # b"LSTA", version, 0
_MSG = struct.Struct("<4sHHQQ")  # magic, method or status, flags, sequence, length
_NEW_REGION = 1
_POLL = 2  # on a batch: poll for the next one after answering (a core is free for it)
_MAX_PACKET = 64 * 1024
_MIN_REGION = 1 << 20


def supported() -> bool:
    """Whether this platform has what the channel needs (Linux: memfd, abstract sockets)."""
    return (
        sys.platform == "linux"
        and hasattr(os, "memfd_create")
        and hasattr(socket, "SOCK_SEQPACKET")
        and hasattr(socket, "send_fds")
    )


def host_identity() -> str:
    """Boot id and network namespace: two processes can share a channel only if these are
    equal (same kernel, and the abstract socket namespace is per network namespace)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
        netns = os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return ""
    return f"{boot}/{netns}"


class ChannelClosedError(ServiceError):
    """The peer is gone (its end of the doorbell closed) or did not answer in time."""


class ChannelRefusedError(ServiceError):
    """The pool refused the batch: `status` is the gRPC status name it would have used."""

    def __init__(self, status: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class _Region:
    """One writer's region: an anonymous memory file, mapped."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.fd = os.memfd_create("lockstep-tick", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, size)
            self.map = mmap.mmap(self.fd, size)
        except BaseException:
            os.close(self.fd)
            raise

    def close(self) -> None:
        self.map.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Writer:
    """The writing side of one direction: grows its region when a message needs it."""

    def __init__(self) -> None:
        self.region: _Region | None = None

    def put(self, data: bytes | memoryview) -> int | None:
        """Copy `data` into the region; returns a new region's fd to send, or None."""
        n = len(data)
        fresh = None
        if self.region is None or n > self.region.size:
            size = max(_MIN_REGION, 1 << max(n - 1, 1).bit_length())
            if self.region is not None:
                self.region.close()
            self.region = _Region(size)
            fresh = self.region.fd
        self.region.map[:n] = data
        return fresh

    def sent(self) -> None:
        """After a new region's fd went out: the mapping keeps it alive, drop the fd."""
        if self.region is not None and self.region.fd >= 0:
            os.close(self.region.fd)
            self.region.fd = -1

    def close(self) -> None:
        if self.region is not None:
            self.region.close()
            self.region = None


class _Reader:
    """The reading side: maps the regions the peer sends."""

    def __init__(self) -> None:
        self.map: mmap.mmap | None = None

    def adopt(self, fd: int) -> None:
        try:
            size = os.fstat(fd).st_size
            new = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        if self.map is not None:
            self.map.close()
        self.map = new

    def take(self, n: int) -> bytes:
        if self.map is None or n > len(self.map):
            raise ChannelClosedError("tick channel: message longer than the peer's region")
        return self.map[:n]

    def close(self) -> None:
        if self.map is not None:
            self.map.close()
            self.map = None


_FD_SPACE = socket.CMSG_LEN(array.array("i").itemsize)


def _recv(sock: socket.socket, flags: int = 0) -> tuple[bytes, list[int]]:
    """One message and the file descriptor riding along, if any. (socket.recv_fds does
    the same but drops `flags` before Python 3.12, so it cannot poll.)"""
    msg, ancdata, _flags, _addr = sock.recvmsg(_MAX_PACKET, _FD_SPACE, flags)
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return msg, list(fds)


# Waking a thread blocked in another process costs tens to hundreds of microseconds on a
# virtual machine (two processes ping-ponging one byte over a blocking socket: ~80 us a
# round trip on the 2-vCPU guest of docs/performance.md, ~6 us when both poll), more than
# a small tick's own work. So each end first polls its socket, but only while its waits
# stay short: a wait longer than twice its poll turns polling off until a wait is short
# again, so a long tick (or an idle pool) never keeps a core busy. The two ends wait for
# different things. A pool waits for the next batch while the kernel computes the rest of
# the tick (~0.5 ms at 100 agents), so it polls longer (BATCH_POLL_S); the orchestrator
# waits for results, which a small tick's pool sends within ~150 us at 100 agents and
# ~0.5-1 ms at 1,000 (RESULT_POLL_S; 500 us gave 2.5-3.1 ms a tick at 1,000 wealth agents
# on a slow hour of the host, 1 ms 1.9-2.4). The services set them with
# `--tick-channel-poll-us` (0: never poll). (Yielding the core between receives made the
# round trip slower on the 2-vCPU AMD guest of 2026-12-04: 47-64 -> 91 us.)
RESULT_POLL_S = 1e-3
BATCH_POLL_S = 2e-3


@functools.lru_cache(maxsize=1)
def _cores() -> int:
    """The CPUs this process may run on (read once)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def polls_fit(local_pools: int, cpus: int | None = None) -> bool:
    """Whether polling pays: the orchestrator and its pools on this host each have a core.
    Where they do not, a polling pool takes the core the kernel is computing on between two
    batches (wealth 100 on 2 pools and 2 vCPUs: 1.2-1.3 ms a tick blocking, 3.2-3.4 ms
    polling), so both ends block at once; the orchestrator says so with each batch."""
    return local_pools + 1 <= (cpus if cpus is not None else _cores())


def _checked_poll(poll_s: float) -> float:
    if poll_s < 0:
        raise ValueError(f"poll time must be >= 0, got {poll_s}")
    return poll_s


class _Waiter:
    """Receive the next message, polling briefly before blocking (see RESULT_POLL_S)."""

    def __init__(self, poll_s: float) -> None:
        self.poll_s = _checked_poll(poll_s)
        self.window_s = 2 * poll_s
        self.polling = poll_s > 0

    def recv(
        self, sock: socket.socket, timeout: float | None = None, poll: bool = True
    ) -> tuple[bytes, list[int]] | None:
        """The next message, or None when `timeout` passed without one; `poll` False: block
        at once (no core to spare for polling)."""
        started = time.perf_counter()
        if self.polling and poll:
            deadline = started + self.poll_s
            while True:
                try:
                    return _recv(sock, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    pass
                if time.perf_counter() >= deadline:
                    break
        if timeout is not None:
            ready, _, _ = select.select([sock], [], [], timeout)
            if not ready:
                self.polling = False
                return None
        got = _recv(sock)
        self.polling = self.poll_s > 0 and time.perf_counter() - started <= self.window_s
        return got


def _send(sock: socket.socket, packet: bytes, fd: int | None) -> None:
    if fd is None:
        sock.sendall(packet)
    else:
        socket.send_fds(sock, [packet], [fd])


# ------------------------------------------------------------------ orchestrator side
class ChannelClient:
    """The orchestrator's end: send a batch, then wait for its result (split so that
    every pool of a tick computes at once)."""

    def __init__(self, sock: socket.socket, name: str, poll_s: float = RESULT_POLL_S) -> None:
        self.sock = sock
        self.name = name
        self._writer = _Writer()
        self._reader = _Reader()
        self._seq = 0
        self._pending: int | None = None
        self._poll = True
        self._waiter = _Waiter(poll_s)

    @classmethod
    def connect(
        cls, name: str, secret: bytes, timeout: float = 10.0, poll_s: float = RESULT_POLL_S
    ) -> ChannelClient:
        """Connect to the pool's abstract socket `name` and present `secret`; `poll_s`:
        how long to poll for a result before blocking (RESULT_POLL_S)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(timeout)
            sock.connect("\0" + name)
            sock.sendall(_HELLO.pack(b"LSTC", VERSION, 0, secret))
            ack = sock.recv(_ACK.size)
            if len(ack) != _ACK.size or _ACK.unpack(ack)[0] != b"LSTA":
                raise ChannelClosedError(f"tick channel {name}: refused by the pool")
            sock.settimeout(None)
        except OSError as exc:
            sock.close()
            raise ChannelClosedError(f"tick channel {name}: cannot connect: {exc}") from None
        except BaseException:
            sock.close()
            raise
        return cls(sock, name, poll_s)

    def send(self, method: str, data: bytes, poll: bool = True) -> None:
        """Publish a batch. `poll`: whether the pool may poll for the next batch after
        answering this one and whether the result is polled for here (False where the
        pools and this process have no core to spare: see polls_fit)."""
        self._seq += 1
        self._poll = poll
        fd = self._writer.put(data)
        carrier: dict[str, str] = {}
        if tracing_on():  # (without a tracer provider there is no span to carry)
            propagate.inject(carrier)  # empty unless a span is being recorded
        flags = (_NEW_REGION if fd is not None else 0) | (_POLL if poll else 0)
        packet = (
            _MSG.pack(b"LSTQ", METHODS[method], flags, self._seq, len(data))
            + "\n".join(f"{k}={v}" for k, v in carrier.items()).encode()
        )
        try:
            _send(self.sock, packet, fd)
        except OSError as exc:
            raise ChannelClosedError(f"tick channel {self.name}: send failed: {exc}") from None
        finally:
            if fd is not None:
                self._writer.sent()
        self._pending = self._seq

    def receive(self, timeout: float | None) -> bytes:
        """The result of the batch sent last; ChannelClosedError when the pool is gone,
        ChannelRefusedError when it refused the batch."""
        if self._pending is None:
            raise ChannelClosedError(f"tick channel {self.name}: nothing was sent")
        try:
            got = self._waiter.recv(self.sock, timeout, self._poll)
            if got is None:
                raise ChannelClosedError(f"tick channel {self.name}: no answer in {timeout}s")
            msg, fds = got
        except OSError as exc:
            raise ChannelClosedError(f"tick channel {self.name}: {exc}") from None
        if not msg:
            for fd in fds:
                os.close(fd)
            raise ChannelClosedError(
                f"tick channel {self.name}: the pool closed it (process gone?)"
            )
        magic, status, flags, seq, length = _MSG.unpack_from(msg)
        if magic != b"LSTR" or seq != self._pending:
            for fd in fds:
                os.close(fd)
            raise ChannelClosedError(
                f"tick channel {self.name}: out of step "
                f"(got {magic!r} #{seq}, expected #{self._pending})"
            )
        self._pending = None
        if flags & _NEW_REGION and fds:
            self._reader.adopt(fds[0])
        if status:
            text = msg[_MSG.size : _MSG.size + length].decode("utf-8", "replace")
            code, _, detail = text.partition(":")
            raise ChannelRefusedError(code, detail)
        return self._reader.take(length)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        self._writer.close()
        self._reader.close()


# ------------------------------------------------------------------ pool side
Handler = Callable[[str, bytes], bytes]
# An exception from the handler -> (gRPC status name, detail).
Refusal = Callable[[BaseException], tuple[str, str]]


@dataclass
class _Listener:
    sock: socket.socket
    name: str


class ChannelServer:
    """The pool's end: one listening abstract socket, a thread per connection; every
    batch goes to `handler(method, data) -> result`. `poll_s`: how long a connection
    polls for the next batch before blocking (BATCH_POLL_S)."""

    def __init__(self, handler: Handler, refusal: Refusal, poll_s: float = BATCH_POLL_S) -> None:
        self._handler = handler
        self._refusal = refusal
        self._poll_s = _checked_poll(poll_s)
        self._secrets: set[bytes] = set()
        self._lock = threading.Lock()
        self._listener: _Listener | None = None
        self._conns: set[socket.socket] = set()
        self._closed = False

    def open(self) -> tuple[str, bytes]:
        """(socket name, one-time secret) for one connection (OpenTickChannel)."""
        with self._lock:
            if self._closed:
                raise ServiceError("the pool is shutting down")
            if self._listener is None:
                name = f"lockstep-pool-{os.getpid()}-{secrets.token_hex(8)}"
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
                sock.bind("\0" + name)
                sock.listen(4)
                self._listener = _Listener(sock, name)
                threading.Thread(
                    target=self._accept, args=(sock,), name="tick-channel", daemon=True
                ).start()
            secret = secrets.token_bytes(32)
            self._secrets.add(secret)
            return self._listener.name, secret

    def close(self) -> None:
        with self._lock:
            self._closed = True
            listener, self._listener = self._listener, None
            conns = list(self._conns)
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.sock.shutdown(socket.SHUT_RDWR)
            listener.sock.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return  # closed
            threading.Thread(
                target=self._serve, args=(conn,), name="tick-channel-conn", daemon=True
            ).start()

    def _admit(self, conn: socket.socket) -> bool:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid != os.getuid():
            log.warning("tick channel: refused a connection from uid %d", uid)
            return False
        conn.settimeout(10.0)
        hello = conn.recv(_HELLO.size)
        if len(hello) != _HELLO.size:
            return False
        magic, version, _r, secret = _HELLO.unpack(hello)
        with self._lock:
            known = any(secrets.compare_digest(secret, s) for s in self._secrets)
            if known:
                self._secrets.discard(secret)
        if magic != b"LSTC" or version != VERSION or not known:
            log.warning("tick channel: refused a connection without a valid secret")
            return False
        conn.settimeout(None)
        conn.sendall(_ACK.pack(b"LSTA", VERSION, 0))
        return True

    def _handle(self, method: str, data: bytes, context: bytes) -> bytes:
        if not context:
            return self._handler(method, data)
        carrier = dict(
            line.partition("=")[::2] for line in context.decode("ascii", "replace").splitlines()
        )
        with _tracer.start_as_current_span(
            f"tick channel {method}",
            context=propagate.extract(carrier),
            kind=trace.SpanKind.SERVER,
            attributes={"lockstep.batch_bytes": len(data)},
        ):
            return self._handler(method, data)

    def _serve(self, conn: socket.socket) -> None:
        reader, writer, waiter = _Reader(), _Writer(), _Waiter(self._poll_s)
        names = {v: k for k, v in METHODS.items()}
        with self._lock:
            self._conns.add(conn)
        try:
            if not self._admit(conn):
                return
            poll = False  # until a batch says a core is free for it
            while True:
                got = waiter.recv(conn, None, poll)
                assert got is not None  # no timeout
                msg, fds = got
                if not msg:
                    return  # the orchestrator closed the channel
                magic, method, flags, seq, length = _MSG.unpack_from(msg)
                poll = bool(flags & _POLL)
                if flags & _NEW_REGION and fds:
                    reader.adopt(fds[0])
                if magic != b"LSTQ" or method not in names:
                    log.warning("tick channel: malformed request; closing")
                    return
                data = reader.take(length)
                try:
                    result = self._handle(names[method], data, msg[_MSG.size :])
                except Exception as exc:
                    code, detail = self._refusal(exc)
                    text = f"{code}:{detail}".encode()[: _MAX_PACKET - _MSG.size]
                    conn.sendall(_MSG.pack(b"LSTR", 1, 0, seq, len(text)) + text)
                    continue
                fd = writer.put(result)
                try:
                    _send(
                        conn,
                        _MSG.pack(
                            b"LSTR", 0, _NEW_REGION if fd is not None else 0, seq, len(result)
                        ),
                        fd,
                    )
                finally:
                    if fd is not None:
                        writer.sent()
        except (OSError, ChannelClosedError) as exc:
            log.info("tick channel connection ended: %s", exc)
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()
            reader.close()
            writer.close()
