"""Automatic checkpoints on disk, so that an orchestrator restarted after a crash resumes
its run from the latest one instead of re-executing every tick (docs/architecture.md,
"Faults and recovery").

The automatic checkpoints of a resumable run are written to the data dir in the format of
explicit ones (`_checkpoint.save`: atomic, 0600 in a 0700 directory), as
`checkpoints/<run>-auto-t<tick>.json` and `.snap`, by one background thread: a tick waits
for the capture, not for the write (the state and snapshots captured are not touched
again, and nothing here enters a journal or a digest). Only the last `keep` of the run
stay on disk; those of any other run are removed when a run becomes the current one, and
all of them at a clean shutdown (nothing is left to resume). A checkpoint taken while the
one before is still being written replaces any write not started yet: a tick never waits
for the disk, and the time the writes take counts in the checkpoints' time budget.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as ppb
from lockstep_orchestrator._checkpoint import save

log = logging.getLogger("lockstep.orchestrator")

CHECKPOINT_DIR = "checkpoints"  # in the data dir: explicit and automatic checkpoints
WRITE_BYTES_PER_S = 250e6  # write speed before one is measured (here: ~400 MB/s)
_FILE = re.compile(r"^(?P<run>.+?)-(?P<auto>auto-)?t(?P<tick>\d+)\.(?P<ext>json|snap)(\.tmp)?$")


def auto_id(run_id: str, tick: int) -> str:
    """The id of the automatic checkpoint of `run_id` at `tick` (`lockstep restore` takes it)."""
    return f"{run_id}-auto-t{tick}"


def persisted(directory: Path, run_id: str) -> list[tuple[int, str]]:
    """(tick, id) of the checkpoints of `run_id` in `directory`, automatic and explicit,
    whose `.json` exists (so whose write completed), latest first."""
    found: dict[int, str] = {}
    try:
        names = [p.name for p in directory.iterdir()]
    except OSError:
        return []
    for name in names:
        m = _FILE.match(name)
        if m is None or m["run"] != run_id or m["ext"] != "json" or name.endswith(".tmp"):
            continue
        tick = int(m["tick"])
        if tick not in found or m["auto"]:  # same tick twice: the same state; prefer auto
            found[tick] = name[: -len(".json")]
    return sorted(found.items(), reverse=True)


class CheckpointWriter:
    """The writer of automatic checkpoints (see the module): one background thread (or the
    caller's, with `background=False`) doing writes and removals in order. A checkpoint
    handed over while the one before is still being written replaces any write not started
    yet, so a tick never waits for the disk; the replaced one stays in memory only."""

    def __init__(self, background: bool = True) -> None:
        self.background = background
        self._cond = threading.Condition()
        self._jobs: list[tuple[Any, tuple[Any, ...]]] = []
        self._busy = False
        self._thread: threading.Thread | None = None
        self.bytes_per_s = WRITE_BYTES_PER_S  # measured by each write
        self.written = 0  # checkpoints written (all runs)
        self.superseded = 0  # checkpoints replaced by a newer one before they were written
        self.last_seconds = 0.0  # how long the last write took

    def _submit(self, fn: Any, *args: Any) -> None:
        if not self.background:
            fn(*args)
            return
        with self._cond:
            if fn == self._write:
                before = len(self._jobs)
                self._jobs = [j for j in self._jobs if j[0] != self._write]
                self.superseded += before - len(self._jobs)
            self._jobs.append((fn, args))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="checkpoint-writer", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._jobs:
                    if self._thread is None:
                        return
                    self._cond.wait()
                fn, args = self._jobs.pop(0)
                self._busy = True
            try:
                fn(*args)
            except Exception:  # never let the writer die: the next checkpoint tries again
                log.exception("automatic checkpoint writer")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def save(
        self,
        directory: Path,
        run_id: str,
        tick: int,
        state: dict[str, Any],
        snapshots: list[ppb.AgentSnapshot],
        keep: int,
    ) -> None:
        """Write a checkpoint (in the background: see the class)."""
        self._submit(self._write, directory, run_id, tick, state, snapshots, keep)

    def purge(self, directory: Path, keep_run: str | None) -> None:
        """Remove (after any write in progress) the automatic checkpoints of every run but
        `keep_run`."""
        self._submit(self._purge, directory, keep_run)

    def wait(self) -> None:
        """Until every write and removal asked for so far is done."""
        with self._cond:
            while self._jobs or self._busy:
                self._cond.wait()

    def close(self) -> None:
        """Finish what was asked for, then stop the thread."""
        self.wait()
        with self._cond:
            thread, self._thread = self._thread, None
            self._cond.notify_all()
        if thread is not None:
            thread.join()

    # ---- on the writer's thread ---------------------------------------------------------
    def _write(
        self,
        directory: Path,
        run_id: str,
        tick: int,
        state: dict[str, Any],
        snapshots: list[ppb.AgentSnapshot],
        keep: int,
    ) -> None:
        began = time.monotonic()
        try:
            size = save(directory, auto_id(run_id, tick), state, snapshots)
        except OSError as exc:  # the disk is full or gone: the ones before stay usable
            log.warning("automatic checkpoint of tick %d not written: %s", tick, exc)
            return
        took = time.monotonic() - began
        self.last_seconds = took
        self.bytes_per_s = size / max(took, 1e-6)
        self.written += 1
        log.debug("automatic checkpoint of tick %d written: %d bytes in %.3f s", tick, size, took)
        self._prune(directory, run_id, keep)

    def _prune(self, directory: Path, run_id: str, keep: int) -> None:
        """Keep the last `keep` automatic checkpoints of `run_id` (their `.json` written),
        remove the older ones (`.json` first: a checkpoint is gone once it is) and any
        leftover of an interrupted write or removal."""
        kept = {tick for tick, cid in persisted(directory, run_id) if cid == auto_id(run_id, tick)}
        kept = set(sorted(kept, reverse=True)[: max(1, keep)])
        self._remove(directory, lambda run, tick: run == run_id and tick not in kept)

    def _purge(self, directory: Path, keep_run: str | None) -> None:
        self._remove(directory, lambda run, _tick: run != keep_run)

    @staticmethod
    def _remove(directory: Path, doomed: Any) -> None:
        try:
            paths = sorted(directory.iterdir(), key=lambda p: not p.name.endswith(".json"))
        except OSError:
            return
        for path in paths:  # each .json before any .snap
            m = _FILE.match(path.name)
            if m is None or not m["auto"] or not doomed(m["run"], int(m["tick"])):
                continue
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not remove %s: %s", path, exc)
