"""The draw stream and the sampler."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from lockstep_inference import InvalidInputError, draw, seed_from_key
from lockstep_inference._sampling import Sampling, logits_sha256, sample

pytestmark = pytest.mark.unit


def params(**kw: float) -> Sampling:
    base = {"max_tokens": 8, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": 0}
    base.update(kw)
    return Sampling(**base)  # type: ignore[arg-type]


def test_draw_is_the_documented_sha256_construction() -> None:
    for seed, step in [(0, 0), (1, 5), (2**64 - 1, 1000)]:
        h = hashlib.sha256(
            b"lockstep.sampling.v1" + seed.to_bytes(8, "little") + step.to_bytes(8, "little")
        ).digest()
        assert draw(seed, step) == (int.from_bytes(h[:8], "little") >> 11) / 2**53
    # Golden values, so an accidental change of the construction is caught.
    assert draw(0, 0) == 0.13165498939388387
    assert draw(7, 1) == 0.8211848443270451
    assert min(draw(3, i) for i in range(1000)) >= 0.0
    assert max(draw(3, i) for i in range(1000)) < 1.0


def test_seed_from_key_is_stable_and_distinct() -> None:
    assert seed_from_key("run/agent/1") == seed_from_key("run/agent/1")
    assert seed_from_key("run/agent/1") != seed_from_key("run/agent/2")


def test_greedy_breaks_ties_by_lowest_token_id() -> None:
    logits = np.asarray([0.5, 2.0, 2.0, -1.0], np.float32)
    assert sample(logits, params(temperature=0.0), 0.99) == 1


def test_inverse_cdf_follows_the_draw() -> None:
    logits = np.log(np.asarray([0.5, 0.25, 0.25], np.float32))
    assert sample(logits, params(), 0.0) == 0
    assert sample(logits, params(), 0.49) == 0
    assert sample(logits, params(), 0.51) in (1, 2)
    assert sample(logits, params(), 0.999) == 2


def test_top_k_and_top_p_cut_the_tail() -> None:
    logits = np.log(np.asarray([0.1, 0.6, 0.3], np.float32))
    assert {sample(logits, params(top_k=1), u / 10) for u in range(10)} == {1}
    assert {sample(logits, params(top_k=2), u / 10) for u in range(10)} == {1, 2}
    assert {sample(logits, params(top_p=0.5), u / 10) for u in range(10)} == {1}
    assert {sample(logits, params(top_p=0.85), u / 10) for u in range(10)} == {1, 2}


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": -1.0},
        {"top_p": 1.5},
        {"top_k": -1},
        {"max_tokens": 0},
        {"temperature": float("nan")},
    ],
)
def test_bad_parameters_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(InvalidInputError):
        params(**bad)


def test_logits_hash_is_over_float32_little_endian() -> None:
    logits = np.asarray([1.0, 2.0], np.float64)
    assert logits_sha256(logits) == hashlib.sha256(np.asarray([1.0, 2.0], "<f4").tobytes()).digest()
