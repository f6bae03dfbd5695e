"""Seeded token sampling with a portable draw stream.

Draw stream ("lockstep.sampling.v1"): the uniform draw of step i for seed s is

    h = SHA-256(b"lockstep.sampling.v1" || s as u64 little-endian || i as u64 little-endian)
    u = (first 8 bytes of h as u64 little-endian >> 11) / 2**53        # in [0, 1)

so any language can recompute it. The sampler works in float64 with Python's `math`
over the candidates sorted by (logit descending, token id ascending), which gives a total
order and keeps ties deterministic. The per-step log (token, draw, logits hash) is the
source of truth for replay: a replay returns the logged tokens without recomputing.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from lockstep_inference._errors import InferenceError, InvalidInputError

__all__ = [
    "DRAW_DOMAIN",
    "Sampling",
    "draw",
    "logits_sha256",
    "sample",
    "sample_vocab",
    "seed_from_key",
]

DRAW_DOMAIN = b"lockstep.sampling.v1"
SEED_DOMAIN = b"lockstep.agent-seed.v1"
_U64 = (1 << 64) - 1


@dataclass(frozen=True)
class Sampling:
    """Validated sampling parameters (defaults filled in)."""

    max_tokens: int
    temperature: float
    top_k: int
    top_p: float
    seed: int

    def __post_init__(self) -> None:
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise InvalidInputError(
                f"temperature must be a finite number >= 0, got {self.temperature}"
            )
        if not math.isfinite(self.top_p) or not 0.0 <= self.top_p <= 1.0:
            raise InvalidInputError(f"top_p must be in [0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise InvalidInputError(f"top_k must be >= 0, got {self.top_k}")
        if self.max_tokens < 1:
            raise InvalidInputError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not 0 <= self.seed <= _U64:
            raise InvalidInputError(f"seed must be an unsigned 64-bit integer, got {self.seed}")


def draw(seed: int, step: int) -> float:
    """The uniform draw in [0, 1) of `step` for `seed` (see the module docstring)."""
    h = hashlib.sha256(
        DRAW_DOMAIN + (seed & _U64).to_bytes(8, "little") + step.to_bytes(8, "little")
    ).digest()
    return (int.from_bytes(h[:8], "little") >> 11) / float(1 << 53)


def seed_from_key(key: str) -> int:
    """Seed of an agent request that gives none: first 8 bytes (LE) of SHA-256(domain||key)."""
    return int.from_bytes(hashlib.sha256(SEED_DOMAIN + key.encode("utf-8")).digest()[:8], "little")


def logits_sha256(logits: np.ndarray) -> bytes:
    """SHA-256 of the logits as float32 little-endian bytes."""
    return hashlib.sha256(np.ascontiguousarray(logits, dtype="<f4").tobytes()).digest()


def sample(logits: np.ndarray, params: Sampling, u: float) -> int:
    """Pick a token id from `logits` with draw `u` (inverse CDF over the kept candidates)."""
    values = [float(x) for x in np.asarray(logits, dtype=np.float32).reshape(-1)]
    if not values:
        raise InferenceError("model produced empty logits")
    if not all(math.isfinite(v) for v in values):
        raise InferenceError("model produced non-finite logits")
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    if params.temperature == 0.0:
        return order[0]
    if params.top_k:
        order = order[: params.top_k]
    top = values[order[0]]
    weights = [math.exp((values[i] - top) / params.temperature) for i in order]
    if 0.0 < params.top_p < 1.0:
        total = math.fsum(weights)
        acc = 0.0
        keep = len(weights)
        for n, w in enumerate(weights, start=1):
            acc += w / total
            if acc >= params.top_p:
                keep = n
                break
        order, weights = order[:keep], weights[:keep]
    target = u * math.fsum(weights)
    acc = 0.0
    for token, w in zip(order, weights, strict=True):
        acc += w
        if target < acc:
            return token
    return order[-1]


def sample_vocab(logits: np.ndarray, params: Sampling, u: float) -> int:
    """`sample` for large vocabularies, vectorised with numpy (LLM kind).

    Same rule as `sample`: candidates sorted by (logit descending, token id ascending);
    temperature 0 = argmax (lowest id on ties); weights exp((l - l_max) / T) in float64 over
    the top_k best (0 = all), the smallest prefix whose normalised running sum reaches top_p,
    then the first candidate whose running sum of weights exceeds u * sum. The running sums
    are sequential (np.cumsum), the totals math.fsum; exp is numpy's, so a weight can differ
    from `sample`'s math.exp in the last bit. Candidates whose weight underflows to 0 are
    never picked.
    """
    v = np.asarray(logits, dtype=np.float32).reshape(-1)
    if v.size == 0:
        raise InferenceError("model produced empty logits")
    if not np.isfinite(v).all():
        raise InferenceError("model produced non-finite logits")
    if params.temperature == 0.0:
        return int(np.argmax(v))
    n = v.size
    if params.top_k and params.top_k < n:
        cand = np.argpartition(-v, params.top_k - 1)[: params.top_k]
        order = cand[np.lexsort((cand, -v[cand]))]
    else:
        order = np.argsort(-v, kind="stable")
    vals = v[order].astype(np.float64)
    weights = np.exp((vals - vals[0]) / params.temperature)
    if 0.0 < params.top_p < 1.0:
        total = math.fsum(weights.tolist())
        acc = np.cumsum(weights / total)
        keep = int(np.searchsorted(acc, params.top_p, side="left")) + 1
        order, weights = order[:keep], weights[:keep]
    target = u * math.fsum(weights.tolist())
    acc = np.cumsum(weights)
    idx = int(np.searchsorted(acc, target, side="right"))
    if idx >= len(order):
        idx = int(np.flatnonzero(weights > 0)[-1])
    return int(order[idx])
