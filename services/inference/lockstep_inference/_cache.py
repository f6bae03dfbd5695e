"""LRU model cache under a byte budget.

Each model is charged its measured memory (config.memory_charge). A model with requests
in flight is never evicted or unloaded. Recency is a logical counter bumped on every use,
never the wall clock, so eviction order is a total order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from lockstep_inference._errors import CacheFullError, ModelBusyError, ModelNotFoundError
from lockstep_inference._repository import ModelFiles
from lockstep_inference._session import OrtSession

__all__ = ["CacheEntry", "ModelCache"]


@dataclass
class CacheEntry:
    """A loaded model."""

    files: ModelFiles
    session: OrtSession
    adapter: Any
    charged: int
    in_flight: int = 0
    requests: int = 0
    errors: int = 0
    last_use: int = 0
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.files.name

    @property
    def version(self) -> str:
        return self.files.version


# A loader turns a model name into (files, session, adapter, charged bytes).
Loader = Callable[[str], tuple[ModelFiles, OrtSession, Any, int]]


class ModelCache:
    """Loaded models by name; thread-safe."""

    def __init__(
        self, budget: int, loader: Loader, size_hint: Callable[[str], int], busy_wait_s: float = 0.0
    ) -> None:
        self.budget = budget
        self._loader = loader
        self._size_hint = size_hint
        # How long a load waits for busy models to finish before RESOURCE_EXHAUSTED: a
        # request must not fail just because another client's request is running.
        self._busy_wait_s = busy_wait_s
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._load_lock = threading.Lock()
        self._entries: dict[str, CacheEntry] = {}
        self._clock = 0
        self.evictions: list[str] = []  # names in eviction order (observability, tests)
        self.load_errors: dict[str, str] = {}

    @property
    def used(self) -> int:
        with self._lock:
            return sum(e.charged for e in self._entries.values())

    def entries(self) -> list[CacheEntry]:
        """Loaded entries sorted by name (a snapshot; fields may move on)."""
        with self._lock:
            return [self._entries[n] for n in sorted(self._entries)]

    def get(self, name: str) -> CacheEntry | None:
        """The entry of a loaded model, or None."""
        with self._lock:
            return self._entries.get(name)

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def load(self, name: str, *, reload: bool = False) -> CacheEntry:
        """Load `name` (no-op when loaded, unless `reload` and its bytes changed)."""
        with self._load_lock:
            with self._lock:
                current = self._entries.get(name)
                if current is not None and not reload:
                    current.last_use = self._tick()
                    return current
            hint = self._size_hint(name)
            if hint > self.budget:
                raise CacheFullError(
                    f"model {name!r} needs at least {hint} bytes, more than the "
                    f"cache budget of {self.budget} bytes"
                )
            try:
                files, session, adapter, charged = self._loader(name)
            except ModelNotFoundError:
                raise
            except Exception as exc:
                with self._lock:
                    self.load_errors[name] = str(exc)
                raise
            with self._lock:
                self.load_errors.pop(name, None)
                current = self._entries.get(name)
                if current is not None:
                    if current.version == files.version:
                        session.close()
                        current.last_use = self._tick()
                        return current
                    if current.in_flight:
                        session.close()
                        raise ModelBusyError(
                            f"model {name!r} has {current.in_flight} requests "
                            "in flight; reload it when they are done"
                        )
                    del self._entries[name]
                    current.session.close()
                deadline: float | None = None
                while True:
                    try:
                        self._make_room(charged, name)
                        break
                    except CacheFullError:
                        # Wait (bounded) for busy models to become idle, then retry.
                        now = time.monotonic()
                        deadline = now + self._busy_wait_s if deadline is None else deadline
                        if now >= deadline or not self._idle.wait(deadline - now):
                            session.close()
                            raise
                entry = CacheEntry(
                    files=files,
                    session=session,
                    adapter=adapter,
                    charged=charged,
                    last_use=self._tick(),
                )
                self._entries[name] = entry
                return entry

    def _make_room(self, need: int, name: str) -> None:
        # Caller holds self._lock.
        if need > self.budget:
            raise CacheFullError(
                f"model {name!r} is charged {need} bytes, more than the cache "
                f"budget of {self.budget} bytes"
            )
        used = sum(e.charged for e in self._entries.values())
        while used + need > self.budget:
            idle = [e for e in self._entries.values() if e.in_flight == 0]
            if not idle:
                busy = ", ".join(sorted(self._entries))
                raise CacheFullError(
                    f"cache full: model {name!r} needs {need} bytes, {used} of "
                    f"{self.budget} are used by models with requests in flight ({busy})"
                )
            victim = min(idle, key=lambda e: (e.last_use, e.name))
            del self._entries[victim.name]
            victim.session.close()
            self.evictions.append(victim.name)
            used -= victim.charged

    def unload(self, name: str) -> tuple[bool, int]:
        """Drop `name`; (was it loaded, bytes released). Busy models are refused."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                return False, 0
            if entry.in_flight:
                raise ModelBusyError(
                    f"model {name!r} has {entry.in_flight} requests in flight; "
                    "unload it when they are done"
                )
            del self._entries[name]
        entry.session.close()
        return True, entry.charged

    @contextmanager
    def use(self, name: str, *, autoload: bool) -> Iterator[CacheEntry]:
        """Hold `name` for one request: loaded (auto-loading if allowed) and not evictable."""
        for _ in range(8):
            with self._lock:
                entry = self._entries.get(name)
                if entry is not None:
                    entry.in_flight += 1
                    entry.requests += 1
                    entry.last_use = self._tick()
                    break
            if not autoload:
                raise ModelNotFoundError(f"model {name!r} is not loaded (auto-load is off)")
            self.load(name)
        else:  # pragma: no cover - needs 8 evictions racing one request
            raise CacheFullError(f"model {name!r} was evicted repeatedly before it could run")
        try:
            yield entry
        except Exception:
            with self._lock:
                entry.errors += 1
            raise
        finally:
            with self._lock:
                entry.in_flight -= 1
                if entry.in_flight == 0:
                    self._idle.notify_all()

    def close(self) -> None:
        """Close every session."""
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for e in entries:
            e.session.close()
