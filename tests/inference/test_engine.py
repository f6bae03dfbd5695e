"""The engine without gRPC: providers, determinism, cache rules, generation and replay."""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from lockstep.errors import ConfigError, DeterminismError
from lockstep.pb.inference.v1 import inference_pb2 as pb
from lockstep_inference import (
    CacheFullError,
    InferenceEngine,
    InvalidInputError,
    ModelBusyError,
    ModelLoadError,
    ModelNotFoundError,
    OrtSession,
    ProviderUnavailableError,
    ReplayMismatchError,
    TensorIn,
)
from lockstep_inference._server import probe_provider
from tests.inference.conftest import build_tiny_models, cpu_config

pytestmark = pytest.mark.unit

X = np.arange(8, dtype=np.float32).reshape(2, 4) / 8


def add_input(x: np.ndarray = X) -> list[TensorIn]:
    return [TensorIn("x", "FP32", x.shape, x.astype("<f4").tobytes())]


def has_cuda() -> bool:
    try:
        return probe_provider(cpu_config(Path("."), provider="cuda"))[0] == "CUDAExecutionProvider"
    except ConfigError:
        return False


# -- providers ---------------------------------------------------------------------------


@pytest.mark.skipif(has_cuda(), reason="this machine has a usable CUDA provider")
def test_cuda_requested_falls_back_to_cpu_and_says_so(model_repo: Path) -> None:
    engine = InferenceEngine(cpu_config(model_repo, provider="cuda"))
    entry, outs = engine.infer("tiny_add", add_input(), [])
    info = engine.run_info(entry)
    assert info.provider == "CPUExecutionProvider"
    assert info.requested_provider == "cuda"
    assert "CUDA requested" in info.fallback_reason or "CUDA" in info.fallback_reason
    assert info.onnxruntime_version == ort.__version__
    np.testing.assert_array_equal(outs[0][1], X * 2 + 1)
    engine.close()


@pytest.mark.skipif(has_cuda(), reason="this machine has a usable CUDA provider")
def test_require_cuda_fails_loudly(model_repo: Path) -> None:
    cfg = cpu_config(model_repo, provider="require-cuda")
    with pytest.raises(ProviderUnavailableError, match="CUDA required"):
        OrtSession((model_repo / "tiny_add" / "model.onnx").read_bytes(), cfg, "tiny_add")
    with pytest.raises(ConfigError, match="CUDA required"):
        probe_provider(cfg)


def test_cpu_policy_reports_cpu_without_fallback(model_repo: Path) -> None:
    engine = InferenceEngine(cpu_config(model_repo))
    entry, _ = engine.infer("tiny_add", add_input(), [])
    assert entry.session.provider == "CPUExecutionProvider"
    assert entry.session.fallback_reason == ""
    assert "intra_op_threads=1" in engine.run_info(entry).settings
    engine.close()


# -- determinism -------------------------------------------------------------------------

# y = 2x + 1 on exactly representable inputs: the same bytes on every machine.
TINY_ADD_GOLDEN = hashlib.sha256((X * 2 + 1).astype("<f4").tobytes()).hexdigest()


def test_golden_output_hash_across_runs_and_sessions(model_repo: Path) -> None:
    digests = set()
    for _ in range(2):  # two engines = two independent sessions
        engine = InferenceEngine(cpu_config(model_repo))
        for _ in range(3):
            _, outs = engine.infer("tiny_add", add_input(), [])
            digests.add(hashlib.sha256(outs[0][1].astype("<f4").tobytes()).hexdigest())
        engine.close()
    assert digests == {TINY_ADD_GOLDEN}


def test_version_is_sha256_of_the_model_bytes(model_repo: Path) -> None:
    engine = InferenceEngine(cpu_config(model_repo))
    entry = engine.load("tiny_add")
    data = (model_repo / "tiny_add" / "model.onnx").read_bytes()
    assert entry.version == "sha256:" + hashlib.sha256(data).hexdigest()
    engine.close()


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tensors", "match"),
    [
        ([TensorIn("x", "FP64", (2, 4), b"\0" * 64)], "datatype FP64"),
        ([TensorIn("x", "FP32", (2, 5), b"\0" * 40)], "dimension 1 is 5"),
        ([TensorIn("x", "FP32", (8,), b"\0" * 32)], "rank"),
        ([TensorIn("x", "FP32", (2, 4), b"\0" * 31)], "31 bytes"),
        ([TensorIn("nope", "FP32", (2, 4), b"\0" * 32)], "no input 'nope'"),
        ([], "missing inputs x"),
        ([TensorIn("x", "BYTES", (2, 4), b"")], "datatype BYTES given"),
    ],
)
def test_bad_tensors_are_invalid_argument(
    model_repo: Path, tensors: list[TensorIn], match: str
) -> None:
    engine = InferenceEngine(cpu_config(model_repo))
    with pytest.raises(InvalidInputError, match=match):
        engine.infer("tiny_add", tensors, [])
    engine.close()


def test_unknown_and_corrupt_models(model_repo: Path) -> None:
    engine = InferenceEngine(cpu_config(model_repo))
    with pytest.raises(ModelNotFoundError, match="unknown model 'missing'"):
        engine.infer("missing", add_input(), [])
    with pytest.raises(InvalidInputError, match="bad model name"):
        engine.infer("../etc", add_input(), [])
    with pytest.raises(ModelLoadError, match="corrupt"):
        engine.load("corrupt")
    assert "corrupt" in engine.cache.load_errors
    # The engine keeps serving other models.
    engine.infer("tiny_add", add_input(), [])
    engine.close()


# -- cache -----------------------------------------------------------------------------------


def _cache_repo(tmp_path: Path) -> tuple[Path, int]:
    build_tiny_models(tmp_path)
    for name in ("m1", "m2", "m3"):
        shutil.copytree(tmp_path / "tiny_add", tmp_path / name)
    return tmp_path, (tmp_path / "m1" / "model.onnx").stat().st_size


def test_lru_eviction_under_budget(tmp_path: Path) -> None:
    repo, size = _cache_repo(tmp_path)
    engine = InferenceEngine(cpu_config(repo, memory_charge="file", cache_budget_bytes=2 * size))
    engine.infer("m1", add_input(), [])
    engine.infer("m2", add_input(), [])
    engine.infer("m1", add_input(), [])  # m1 is now the most recent
    engine.infer("m3", add_input(), [])  # auto-load evicts the least recent: m2
    assert engine.cache.evictions == ["m2"]
    assert [e.name for e in engine.cache.entries()] == ["m1", "m3"]
    assert engine.cache.used == 2 * size
    engine.close()


def test_models_in_flight_are_never_evicted(tmp_path: Path) -> None:
    repo, size = _cache_repo(tmp_path)
    engine = InferenceEngine(
        cpu_config(repo, memory_charge="file", cache_budget_bytes=2 * size, cache_busy_wait_s=0)
    )
    with engine.use("m1"), engine.use("m2"):
        with pytest.raises(CacheFullError, match="in flight"):
            engine.load("m3")
        with pytest.raises(ModelBusyError):
            engine.unload("m1")
        assert engine.cache.evictions == []
    with engine.use("m1"):
        engine.load("m3")  # m2 is idle now: it goes, m1 (busy) stays
    assert engine.cache.evictions == ["m2"]
    assert engine.unload("m1") == (True, size)
    assert engine.unload("m1") == (False, 0)
    engine.close()


def test_model_larger_than_budget_is_refused(tmp_path: Path) -> None:
    repo, size = _cache_repo(tmp_path)
    engine = InferenceEngine(cpu_config(repo, memory_charge="file", cache_budget_bytes=size - 1))
    with pytest.raises(CacheFullError, match="budget"):
        engine.load("m1")
    engine.close()


def test_measured_charge_is_at_least_the_file_size(model_repo: Path) -> None:
    engine = InferenceEngine(cpu_config(model_repo))
    entry = engine.load("tiny_add")
    assert entry.charged >= (model_repo / "tiny_add" / "model.onnx").stat().st_size
    engine.close()


# -- generation ------------------------------------------------------------------------------


def gen(
    engine: InferenceEngine, seed: int, prompt: str = "ab", model: str = "tiny_lm", **kw: Any
) -> pb.GenerateResponse:
    params = pb.SamplingParams(max_tokens=24, temperature=1.0, seed=seed, **kw)
    return engine.generate(model, prompt, params)


def test_same_seed_same_tokens_different_seed_different_tokens(model_repo: Path) -> None:
    engine = InferenceEngine(cpu_config(model_repo))
    a, b = gen(engine, 11), gen(engine, 11)
    assert list(a.tokens) == list(b.tokens) and a.log == b.log
    other = [list(gen(engine, s).tokens) for s in range(12, 20)]
    assert any(t != list(a.tokens) for t in other)
    engine.close()


def test_replay_returns_logged_tokens_without_the_model(model_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(model_repo / "tiny_lm", repo / "tiny_lm")
    engine = InferenceEngine(cpu_config(repo))
    resp = gen(engine, 5)
    engine.close()
    shutil.rmtree(repo / "tiny_lm")  # no model any more: replay must not need it
    engine = InferenceEngine(cpu_config(repo))
    replayed = engine.replay(resp.log, verify=False)
    assert replayed.replayed and list(replayed.tokens) == list(resp.tokens)
    assert replayed.text == resp.text
    assert engine.cache.entries() == []
    with pytest.raises(ModelNotFoundError):
        engine.replay(resp.log, verify=True)
    engine.close()


def test_verify_recomputes_and_names_the_divergent_step(model_repo: Path) -> None:
    engine = InferenceEngine(cpu_config(model_repo))
    resp = gen(engine, 3)
    assert engine.replay(resp.log, verify=True).tokens == resp.tokens
    tampered = pb.GenerationLog()
    tampered.CopyFrom(resp.log)
    tampered.steps[1].token = (tampered.steps[1].token + 1) % 5
    with pytest.raises(ReplayMismatchError, match="step 1: sampled token") as err:
        engine.replay(tampered, verify=True)
    assert isinstance(err.value, DeterminismError)
    tampered.CopyFrom(resp.log)
    tampered.steps[0].logits_sha256 = b"\0" * 32
    with pytest.raises(ReplayMismatchError, match="step 0: logits hash"):
        engine.replay(tampered, verify=True)
    tampered.CopyFrom(resp.log)
    tampered.steps[0].draw = 0.5
    with pytest.raises(ReplayMismatchError, match="step 0: logged draw"):
        engine.replay(tampered, verify=False)  # draws are checked even without the model
    engine.close()


def test_streaming_yields_the_same_steps(model_repo: Path) -> None:
    engine = InferenceEngine(cpu_config(model_repo))
    items = list(
        engine.generate_iter(
            "tiny_lm", "a", pb.SamplingParams(max_tokens=10, temperature=0.8, top_k=3, seed=9)
        )
    )
    final = items[-1]
    assert isinstance(final, pb.GenerateResponse)
    assert list(final.log.steps) == items[:-1]
    assert final == engine.generate(
        "tiny_lm", "a", pb.SamplingParams(max_tokens=10, temperature=0.8, top_k=3, seed=9)
    )
    engine.close()


def test_generation_bad_input(model_repo: Path) -> None:
    engine = InferenceEngine(cpu_config(model_repo))
    with pytest.raises(InvalidInputError, match="not in the model's vocabulary"):
        gen(engine, 1, prompt="az")
    with pytest.raises(InvalidInputError, match="kind 'tensor'"):
        gen(engine, 1, model="tiny_add")
    with pytest.raises(InvalidInputError, match="above the limit"):
        engine.generate("tiny_lm", "", pb.SamplingParams(max_tokens=100000))
    with pytest.raises(InvalidInputError, match="temperature"):
        engine.generate("tiny_lm", "", pb.SamplingParams(temperature=-1))
    engine.close()


def test_load_waits_for_busy_models_instead_of_failing(tmp_path: Path) -> None:
    repo, size = _cache_repo(tmp_path)
    engine = InferenceEngine(
        cpu_config(repo, memory_charge="file", cache_budget_bytes=2 * size, cache_busy_wait_s=60)
    )
    errors: list[BaseException] = []
    with engine.use("m1"), engine.use("m2"):
        loader = threading.Thread(
            target=lambda: _catch(errors, lambda: engine.infer("m3", add_input(), []))
        )
        loader.start()
    loader.join(60)
    assert not loader.is_alive() and errors == []
    assert len(engine.cache.evictions) == 1
    engine.close()


def _catch(errors: list[BaseException], fn: Callable[[], object]) -> None:
    try:
        fn()
    except BaseException as exc:
        errors.append(exc)
