"""Configuration of the inference service, read once at start-up."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from lockstep.errors import ConfigError

__all__ = ["GRAPH_LEVELS", "PROVIDERS", "InferenceConfig", "add_arguments", "default_repository"]

#: Provider policies. "cuda" asks for CUDA and falls back to CPU (recorded) when the session
#: does not get it; "require-cuda" fails instead; "cpu" never tries CUDA.
PROVIDERS = ("cpu", "cuda", "require-cuda")
#: Graph optimisation levels, fixed per server so every session is built the same way.
GRAPH_LEVELS = ("disabled", "basic", "extended", "all")
#: How the cache charges a model: "measured" = max(RSS growth while the session is
#: created, model file size); "file" = model file size (deterministic, used by tests).
MEMORY_CHARGES = ("measured", "file")


def default_repository() -> Path:
    """$LOCKSTEP_MODEL_REPOSITORY, else the supervisor's data/models directory."""
    env = os.environ.get("LOCKSTEP_MODEL_REPOSITORY")
    if env:
        return Path(env)
    home = os.environ.get("LOCKSTEP_HOME")
    base = Path(home) if home else Path.home() / ".lockstep"
    return base / "data" / "models"


@dataclass(frozen=True)
class InferenceConfig:
    """Inference service settings.

    model_repository: directory holding one sub-directory per model (`<name>/model.onnx`
        plus optional `<name>/lockstep.json`), see docs/inference.md.
    cache_budget_bytes: LRU cache budget; models are charged per `memory_charge`.
    memory_charge: "measured" (RSS delta around session creation, file size as a floor)
        or "file" (file size only; deterministic).
    provider: "cuda" (default: CUDA, explicit CPU fallback), "cpu", or "require-cuda".
    device_id: CUDA device ordinal.
    intra_op_threads / inter_op_threads: ONNX Runtime thread pools; 1 by default because a
        fixed, single-threaded reduction order is what makes CPU results bit-stable.
    graph_optimization: ONNX Runtime graph optimisation level (fixed per server).
    max_tensor_bytes: largest input tensor (and agent input) accepted.
    max_batch_requests: most requests in one AgentInferBatch call.
    max_generate_tokens: most tokens one generation may ask for.
    default_generate_tokens: tokens generated when a request gives no max_tokens.
    max_llm_batch: most llm generations decoded together; a tick with more is decoded in
        consecutive batches of this size, in request order.
    autoload: load a model from the repository on first use.
    cache_busy_wait_s: how long a load waits for models with requests in flight to finish
        when the budget is full of them, before RESOURCE_EXHAUSTED (0 = fail at once).
    """

    model_repository: Path = field(default_factory=default_repository)
    cache_budget_bytes: int = 2 * 1024**3
    memory_charge: str = "measured"
    provider: str = "cuda"
    device_id: int = 0
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    graph_optimization: str = "basic"
    max_tensor_bytes: int = 16 * 1024 * 1024
    max_batch_requests: int = 1024
    max_generate_tokens: int = 256
    default_generate_tokens: int = 32
    max_llm_batch: int = 32
    autoload: bool = True
    cache_busy_wait_s: float = 10.0

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ConfigError(
                f"provider must be one of {', '.join(PROVIDERS)}, got {self.provider!r}"
            )
        if self.graph_optimization not in GRAPH_LEVELS:
            raise ConfigError(
                f"graph_optimization must be one of {', '.join(GRAPH_LEVELS)}, "
                f"got {self.graph_optimization!r}"
            )
        if self.memory_charge not in MEMORY_CHARGES:
            raise ConfigError(
                f"memory_charge must be one of {', '.join(MEMORY_CHARGES)}, "
                f"got {self.memory_charge!r}"
            )
        for name in (
            "cache_budget_bytes",
            "intra_op_threads",
            "inter_op_threads",
            "max_tensor_bytes",
            "max_batch_requests",
            "max_generate_tokens",
            "max_llm_batch",
            "default_generate_tokens",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.cache_busy_wait_s < 0:
            raise ConfigError(f"cache_busy_wait_s must be >= 0, got {self.cache_busy_wait_s}")
        if self.device_id < 0:
            raise ConfigError(f"device_id must be >= 0, got {self.device_id}")
        if self.default_generate_tokens > self.max_generate_tokens:
            raise ConfigError("default_generate_tokens must be <= max_generate_tokens")

    @property
    def settings_text(self) -> str:
        """Canonical text of the session settings, recorded with every result."""
        return (
            f"graph_optimization={self.graph_optimization};"
            f"intra_op_threads={self.intra_op_threads};"
            f"inter_op_threads={self.inter_op_threads};"
            "execution_mode=sequential;deterministic_compute=1"
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> InferenceConfig:
        """Build from the flags added by `add_arguments` (which default to env vars)."""
        try:
            return cls(
                model_repository=Path(args.model_repo),
                cache_budget_bytes=int(args.cache_bytes),
                memory_charge=str(args.memory_charge),
                provider=str(args.provider),
                device_id=int(args.device_id),
                intra_op_threads=int(args.intra_op_threads),
                inter_op_threads=int(args.inter_op_threads),
                graph_optimization=str(args.graph_optimization),
                max_tensor_bytes=int(args.max_tensor_bytes),
            )
        except ValueError as exc:
            raise ConfigError(f"bad inference setting: {exc}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The service's own flags; each defaults to an environment variable."""
    env = os.environ.get
    d = InferenceConfig.__dataclass_fields__
    parser.add_argument(
        "--model-repo",
        "--model-repository",
        dest="model_repo",
        default=str(default_repository()),
        help="model repository directory [env LOCKSTEP_MODEL_REPOSITORY]",
    )
    parser.add_argument(
        "--cache-bytes",
        default=env("LOCKSTEP_INFERENCE_CACHE_BYTES", str(d["cache_budget_bytes"].default)),
        help="model cache budget in bytes [env LOCKSTEP_INFERENCE_CACHE_BYTES]",
    )
    parser.add_argument(
        "--memory-charge",
        choices=MEMORY_CHARGES,
        default=env("LOCKSTEP_INFERENCE_MEMORY_CHARGE", "measured"),
        help="how models are charged [env LOCKSTEP_INFERENCE_MEMORY_CHARGE]",
    )
    parser.add_argument(
        "--provider",
        default=env("LOCKSTEP_INFERENCE_PROVIDER", "cuda"),
        help="cuda (fallback to CPU) | cpu | require-cuda [env LOCKSTEP_INFERENCE_PROVIDER]",
    )
    parser.add_argument(
        "--device-id",
        default=env("LOCKSTEP_INFERENCE_DEVICE_ID", "0"),
        help="CUDA device [env LOCKSTEP_INFERENCE_DEVICE_ID]",
    )
    parser.add_argument(
        "--intra-op-threads",
        default=env("LOCKSTEP_INFERENCE_INTRA_THREADS", "1"),
        help="ORT intra-op threads [env LOCKSTEP_INFERENCE_INTRA_THREADS]",
    )
    parser.add_argument(
        "--inter-op-threads",
        default=env("LOCKSTEP_INFERENCE_INTER_THREADS", "1"),
        help="ORT inter-op threads [env LOCKSTEP_INFERENCE_INTER_THREADS]",
    )
    parser.add_argument(
        "--graph-optimization",
        default=env("LOCKSTEP_INFERENCE_GRAPH_OPT", "basic"),
        help="disabled|basic|extended|all [env LOCKSTEP_INFERENCE_GRAPH_OPT]",
    )
    parser.add_argument(
        "--max-tensor-bytes",
        default=env("LOCKSTEP_INFERENCE_MAX_TENSOR_BYTES", str(d["max_tensor_bytes"].default)),
        help="largest input tensor [env LOCKSTEP_INFERENCE_MAX_TENSOR_BYTES]",
    )
