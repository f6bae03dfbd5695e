"""The own gRPC API over a real channel: roles, statuses, agent batches, real models."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest

from lockstep.auth import Role
from lockstep.pb.inference.v1 import inference_pb2 as pb
from lockstep_inference import seed_from_key
from lockstep_inference._prepare import _package_dir, charlm_reference, pokepy_vocab
from tests.inference.conftest import Server, cpu_config, needs_real_models

pytestmark = pytest.mark.integration

X = np.arange(8, dtype=np.float32).reshape(2, 4)


def tiny_request(x: np.ndarray = X, name: str = "tiny_add", dt: str = "FP32") -> pb.InferRequest:
    return pb.InferRequest(
        model=name,
        inputs=[
            pb.Tensor(name="x", datatype=dt, shape=list(x.shape), data=x.astype("<f4").tobytes())
        ],
    )


def code_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details() or ""


def test_infer_reports_provider_version_and_settings(server: Server) -> None:
    resp = server.stub().Infer(tiny_request())
    out = resp.outputs[0]
    assert (out.name, out.datatype, list(out.shape)) == ("y", "FP32", [2, 4])
    np.testing.assert_array_equal(np.frombuffer(out.data, "<f4").reshape(2, 4), X * 2 + 1)
    assert resp.model_version.startswith("sha256:")
    assert resp.run_info.provider == "CPUExecutionProvider"
    assert "deterministic_compute=1" in resp.run_info.settings


def test_roles(server: Server) -> None:
    viewer, operator, service = (server.stub(r) for r in (Role.VIEWER, Role.OPERATOR, Role.SERVICE))
    assert code_of(lambda: viewer.Infer(tiny_request()))[0] == grpc.StatusCode.PERMISSION_DENIED
    assert (
        code_of(lambda: operator.LoadModel(pb.LoadModelRequest(name="tiny_add")))[0]
        == grpc.StatusCode.PERMISSION_DENIED
    )
    assert (
        code_of(lambda: service.UnloadModel(pb.UnloadModelRequest(name="tiny_add")))[0]
        == grpc.StatusCode.PERMISSION_DENIED
    )
    service.AgentInferBatch(pb.AgentInferBatchRequest())
    viewer.ListModels(pb.ListModelsRequest())
    info = server.stub(Role.ADMIN).LoadModel(pb.LoadModelRequest(name="tiny_add"))
    assert info.loaded and info.provider == "CPUExecutionProvider"


def test_bad_input_gets_precise_status_and_server_keeps_serving(server: Server) -> None:
    stub, admin = server.stub(), server.stub(Role.ADMIN)
    big = np.zeros(((1 << 16) + 1, 4), np.float32)  # above the 1 MiB test limit
    cases = [
        (lambda: stub.Infer(tiny_request(name="missing")), grpc.StatusCode.NOT_FOUND, "unknown"),
        (lambda: stub.Infer(tiny_request(dt="FP64")), grpc.StatusCode.INVALID_ARGUMENT, "FP64"),
        (
            lambda: stub.Infer(tiny_request(np.zeros((2, 3), np.float32))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "dimension 1 is 3",
        ),
        (lambda: stub.Infer(tiny_request(big)), grpc.StatusCode.RESOURCE_EXHAUSTED, "limit"),
        (
            lambda: admin.LoadModel(pb.LoadModelRequest(name="corrupt")),
            grpc.StatusCode.FAILED_PRECONDITION,
            "cannot load",
        ),
        (
            lambda: stub.Infer(tiny_request(name="corrupt")),
            grpc.StatusCode.FAILED_PRECONDITION,
            "cannot load",
        ),
        (lambda: stub.Infer(tiny_request(name="../x")), grpc.StatusCode.INVALID_ARGUMENT, "name"),
        (
            lambda: stub.Generate(pb.GenerateRequest(model="tiny_lm", prompt="zz")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "vocabulary",
        ),
        (
            lambda: stub.Infer(pb.InferRequest(model="tiny_add", expected_version="sha256:00")),
            grpc.StatusCode.FAILED_PRECONDITION,
            "expects sha256:00",
        ),
    ]
    for call, code, text in cases:
        got, details = code_of(call)
        assert got == code, details
        assert text in details
    listing = stub.ListModels(pb.ListModelsRequest())
    corrupt = next(m for m in listing.models if m.name == "corrupt")
    assert not corrupt.loaded and "cannot load" in corrupt.reason
    assert stub.Infer(tiny_request()).outputs  # still serving


def test_generate_stream_and_replay_over_grpc(server: Server) -> None:
    stub = server.stub()
    req = pb.GenerateRequest(
        model="tiny_lm",
        prompt="a",
        params=pb.SamplingParams(max_tokens=12, temperature=1.0, seed=42),
    )
    resp = stub.Generate(req)
    events = list(stub.GenerateStream(req))
    assert [e.step for e in events[:-1]] == list(resp.log.steps)
    assert events[-1].done == resp
    assert resp.log.run_info.provider == "CPUExecutionProvider"
    replay = stub.ReplayGeneration(pb.ReplayGenerationRequest(log=resp.log))
    assert replay.replayed and replay.tokens == resp.tokens
    tampered = pb.GenerationLog()
    tampered.CopyFrom(resp.log)
    tampered.steps[0].logits_sha256 = b"x" * 32
    code, details = code_of(
        lambda: stub.ReplayGeneration(pb.ReplayGenerationRequest(log=tampered, verify=True))
    )
    assert code == grpc.StatusCode.ABORTED and "step 0" in details


def test_agent_batch_conventions_and_per_request_errors(server: Server) -> None:
    stub = server.stub(Role.SERVICE)
    x = np.asarray([1, 2, 3, 4], "<f4")
    reqs = [
        pb.AgentInferRequest(key="k1", model="tiny_add", input=x.tobytes()),
        pb.AgentInferRequest(key="k2", model="tiny_lm", input=b"ab"),
        pb.AgentInferRequest(
            key="k3",
            model="tiny_lm",
            input=json.dumps(
                {"prompt": "c", "seed": 5, "max_tokens": 6, "temperature": 0.7}
            ).encode(),
        ),
        pb.AgentInferRequest(key="k4", model="missing", input=b""),
        pb.AgentInferRequest(key="k5", model="tiny_add", input=b"\0" * 6),
        pb.AgentInferRequest(key="k6", model="tiny_lm", input=b'{"prompt": 3}'),
        pb.AgentInferRequest(key="k7", model="tiny_lm", input=b"\xff\xfe"),
    ]
    resp = stub.AgentInferBatch(pb.AgentInferBatchRequest(requests=reqs))
    r = {res.key: res for res in resp.results}
    assert [res.key for res in resp.results] == [q.key for q in reqs]
    np.testing.assert_array_equal(np.frombuffer(r["k1"].output, "<f4"), x * 2 + 1)
    assert r["k1"].provider == "CPUExecutionProvider" and r["k1"].model_version.startswith("sha")
    assert r["k2"].generation.params.seed == seed_from_key("k2")
    assert r["k2"].output.decode() == "".join(s.text for s in r["k2"].generation.steps)
    assert r["k3"].generation.params.seed == 5 and len(r["k3"].generation.steps) <= 6
    assert (r["k4"].error_code, r["k5"].error_code, r["k6"].error_code, r["k7"].error_code) == (
        "NOT_FOUND",
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
    )
    assert "not valid UTF-8" in r["k7"].error
    again = stub.AgentInferBatch(pb.AgentInferBatchRequest(requests=reqs))
    assert again == resp  # deterministic on CPU
    dup = [reqs[0], reqs[0]]
    code, details = code_of(lambda: stub.AgentInferBatch(pb.AgentInferBatchRequest(requests=dup)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "duplicate" in details


# -- real models -------------------------------------------------------------------------------


@needs_real_models
def test_real_models_are_deterministic_across_servers(
    server_factory: Callable[..., Server], model_repo: Path
) -> None:
    sentences = [
        "The cat sits on the mat.",
        "A feline rests on a rug.",
        "Quarterly revenue grew by ten percent.",
    ]
    reqs = [
        pb.AgentInferRequest(key=f"s{i}", model="minilm", input=s.encode())
        for i, s in enumerate(sentences)
    ]
    reqs += [pb.AgentInferRequest(key=f"g{i}", model="charlm", input=b"pi") for i in range(3)]
    digests = []
    for _ in range(2):  # two servers = two sessions each
        srv = server_factory(cpu_config(model_repo))
        resp = srv.stub(Role.SERVICE).AgentInferBatch(pb.AgentInferBatchRequest(requests=reqs))
        assert all(not r.error for r in resp.results), [r.error for r in resp.results]
        digests.append(hashlib.sha256(b"".join(r.output for r in resp.results)).hexdigest())
        vecs = [np.frombuffer(r.output, "<f4") for r in resp.results[:3]]
        assert all(v.shape == (384,) and abs(float(np.linalg.norm(v)) - 1) < 1e-5 for v in vecs)
        # Paraphrases are closer than unrelated sentences: the model really encodes meaning.
        assert float(vecs[0] @ vecs[1]) > float(vecs[0] @ vecs[2]) + 0.2
        names = [r.output.decode() for r in resp.results[3:]]
        assert all(n.isalpha() and n.islower() for n in names)
        assert len(set(names)) > 1  # seeds differ per key
    assert digests[0] == digests[1]


@needs_real_models
def test_charlm_greedy_golden(server: Server) -> None:
    resp = server.stub().Generate(
        pb.GenerateRequest(
            model="charlm", prompt="", params=pb.SamplingParams(max_tokens=20, temperature=0)
        )
    )
    assert resp.log.finish_reason == "eos"
    again = server.stub().Generate(
        pb.GenerateRequest(
            model="charlm", prompt="", params=pb.SamplingParams(max_tokens=20, temperature=0)
        )
    )
    assert again == resp
    # Greedy decoding with pokepy's own numpy forward pass gives the same name.
    pkg = _package_dir("pokepy", "pokepy-generator")
    vocab = pokepy_vocab(pkg)
    context, expected = [0] * 8, ""
    for _ in range(20):
        token = int(np.argmax(charlm_reference(pkg, np.asarray([context]))[0]))
        if token == 0:
            break
        expected += vocab[token]
        context = [*context[1:], token]
    assert resp.text == expected == "shellon"


def test_concurrent_callers_get_identical_results(server: Server) -> None:
    from concurrent.futures import ThreadPoolExecutor

    stub = server.stub()
    gen_req = pb.GenerateRequest(
        model="tiny_lm",
        prompt="ab",
        params=pb.SamplingParams(max_tokens=16, temperature=1.0, seed=77),
    )
    want_gen, want_inf = stub.Generate(gen_req), stub.Infer(tiny_request())

    def work(i: int) -> bool:
        if i % 2:
            return bool(stub.Generate(gen_req) == want_gen)
        return bool(stub.Infer(tiny_request()) == want_inf)

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert all(pool.map(work, range(48)))


@needs_real_models
def test_charlm_sampled_golden_across_runs(server: Server) -> None:
    """Recorded once; a change means the model, the converter or the sampler changed."""
    req = pb.GenerateRequest(
        model="charlm",
        prompt="pi",
        params=pb.SamplingParams(max_tokens=20, temperature=1.0, seed=7),
    )
    resp = server.stub().Generate(req)
    assert (resp.text, list(resp.tokens)) == ("mrito", [13, 18, 9, 20, 15, 0])
    assert resp.log.model_version == CHARLM_VERSION


CHARLM_VERSION = "sha256:1c9e975b8853c7ef572b5e0cc6d0a2b57c3237c6e6c7f73525b1e3957eb569c4"
