"""Inference benchmark: service round trip vs a direct ONNX Runtime call, same run.

    python bench/inference.py [--quick]      # prints the metrics as JSON

`run(quick)` returns metric dicts {"name", "unit", "median", "p10", "p90", "baseline",
"baseline_median", "ratio", "spec_target", "goal", "provider"}. The model is the real
all-MiniLM-L6-v2 int8 embedding model (`lockstep models prepare` source), a batch of 8
sentences; both sides use the same session settings (lockstep_inference.session_options)
and the CPU provider; calls are interleaved so drift hits both equally.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/inference.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import metric, standalone

SENTENCES = [
    "The cat sits on the mat.",
    "A feline rests on a rug near the window.",
    "Quarterly revenue grew by ten percent year over year.",
    "Deterministic replay makes multi-agent experiments auditable.",
    "The orchestrator batches inference requests once per tick.",
    "Rain is expected tomorrow afternoon in the northern valleys.",
    "She plays the violin in a small string quartet.",
    "Hash chains make the audit log tamper-evident.",
]


def _time(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


def run(quick: bool) -> list[dict[str, Any]]:
    """Measure and return the metrics (empty when the model packages are missing)."""
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from lockstep.auth import Role, write_token_file
    from lockstep.dial import AuthedChannel, wait_serving
    from lockstep.errors import ConfigError
    from lockstep.pb.inference.v1 import inference_pb2 as pb
    from lockstep.pb.inference.v1 import inference_pb2_grpc as pb_grpc
    from lockstep_inference import InferenceConfig, create_server, prepare_models
    from lockstep_inference._session import session_options

    iters = 15 if quick else 60
    with tempfile.TemporaryDirectory(prefix="lockstep-bench-inference-") as tmp:
        repo = Path(tmp) / "models"
        try:
            prepare_models(repo, ["minilm"])
        except ConfigError as exc:
            print(f"bench/inference.py: skipped: {exc}", file=sys.stderr)
            return []
        config = InferenceConfig(model_repository=repo, provider="cpu")
        tok = Tokenizer.from_file(str(repo / "minilm" / "tokenizer.json"))
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        tok.enable_truncation(128)
        enc = tok.encode_batch(SENTENCES)
        feeds = {
            "input_ids": np.asarray([e.ids for e in enc], np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in enc], np.int64),
            "token_type_ids": np.asarray([e.type_ids for e in enc], np.int64),
        }
        direct = ort.InferenceSession(
            str(repo / "minilm" / "model.onnx"),
            sess_options=session_options(config),
            providers=["CPUExecutionProvider"],
        )
        store = write_token_file(Path(tmp) / "tokens.json")
        bound = create_server("127.0.0.1:0", auth=store, config=config)
        try:
            wait_serving(bound.address)
            stub = pb_grpc.InferenceServiceStub(
                AuthedChannel(bound.address, store.token(Role.SERVICE))
            )
            request = pb.InferRequest(
                model="minilm",
                output_names=["last_hidden_state"],
                inputs=[
                    pb.Tensor(
                        name=k,
                        datatype="INT64",
                        shape=list(v.shape),
                        data=v.astype("<i8").tobytes(),
                    )
                    for k, v in feeds.items()
                ],
            )
            agent = pb.AgentInferBatchRequest(
                requests=[
                    pb.AgentInferRequest(key=f"k{i}", model="minilm", input=s.encode())
                    for i, s in enumerate(SENTENCES)
                ]
            )
            single = [
                {k: v[i : i + 1, : int(feeds["attention_mask"][i].sum())] for k, v in feeds.items()}
                for i in range(len(SENTENCES))
            ]
            resp = stub.Infer(request)  # warm-up: loads the model
            provider = resp.run_info.provider
            same = np.frombuffer(resp.outputs[0].data, "<f4").reshape(
                direct.run(["last_hidden_state"], feeds)[0].shape
            )
            if not np.array_equal(same, direct.run(["last_hidden_state"], feeds)[0]):
                raise RuntimeError("service and direct outputs differ")
            stub.AgentInferBatch(agent)
            for _ in range(3):
                direct.run(None, feeds)
            svc_ms, direct_ms, agent_ms, direct1_ms = [], [], [], []
            for _ in range(iters):
                direct_ms.append(_time(lambda: direct.run(None, feeds)))
                svc_ms.append(_time(lambda: stub.Infer(request)))
                direct1_ms.append(_time(lambda: [direct.run(None, f) for f in single]))
                agent_ms.append(_time(lambda: stub.AgentInferBatch(agent)))
        finally:
            bound.stop(grace=0)
    metrics = []
    for name, ours, base, base_name in [
        ("inference.service_round_trip_batch8", svc_ms, direct_ms, "direct session.run batch 8"),
        (
            "inference.agent_batch8_round_trip",
            agent_ms,
            direct1_ms,
            "direct session.run x8 (one sentence each, tokenised beforehand)",
        ),
    ]:
        metrics.append(metric(name, "ms", ours, base_name, base, "-", "<= 1.2x", provider=provider))
    return metrics


if __name__ == "__main__":
    sys.exit(standalone(run, __doc__))
