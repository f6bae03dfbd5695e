"""Configuration of the inference service, read once at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from lockstep.config import setting
from lockstep.errors import ConfigError

__all__ = ["GRAPH_LEVELS", "MEMORY_CHARGES", "PROVIDERS", "InferenceConfig", "default_repository"]

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
    """Inference service settings: each field is a flag ``--<field-name>`` and the variable
    ``LOCKSTEP_INFERENCE_<FIELD_NAME>`` unless it names another (docs/services.md)."""

    ENV_PREFIX: ClassVar[str] = "LOCKSTEP_INFERENCE_"

    model_repository: Path = setting(
        default_factory=default_repository,
        env="LOCKSTEP_MODEL_REPOSITORY",
        aliases=("--model-repo",),
        shown_default="$LOCKSTEP_HOME/data/models",
        help="Directory holding one sub-directory per model (`<name>/model.onnx` plus an "
        "optional `<name>/lockstep.json`), see docs/inference.md.",
    )
    cache_budget_bytes: int = setting(
        2 * 1024**3,
        env="LOCKSTEP_INFERENCE_CACHE_BYTES",
        aliases=("--cache-bytes",),
        help="LRU model cache budget; models are charged per `memory_charge`.",
    )
    memory_charge: str = setting(
        "measured",
        choices=MEMORY_CHARGES,
        help="How the cache charges a model: `measured` (RSS growth around session "
        "creation, the file size as a floor) or `file` (file size only; deterministic).",
    )
    provider: str = setting(
        "cuda",
        choices=PROVIDERS,
        help="`cuda` (CUDA, with an explicit and recorded CPU fallback), `cpu`, or "
        "`require-cuda` (refuse to start without CUDA).",
    )
    device_id: int = setting(0, help="CUDA device ordinal.")
    intra_op_threads: int = setting(
        1,
        help="ONNX Runtime intra-op threads; 1 because a fixed, single-threaded reduction "
        "order is what makes CPU results bit-stable.",
    )
    inter_op_threads: int = setting(1, help="ONNX Runtime inter-op threads (1, likewise).")
    graph_optimization: str = setting(
        "basic",
        choices=GRAPH_LEVELS,
        help="ONNX Runtime graph optimisation level (fixed per server).",
    )
    max_tensor_bytes: int = setting(
        16 * 1024 * 1024, help="Largest input tensor (and agent input) accepted."
    )
    max_batch_requests: int = setting(1024, help="Most requests in one AgentInferBatch call.")
    max_generate_tokens: int = setting(256, help="Most tokens one generation may ask for.")
    default_generate_tokens: int = setting(
        32, help="Tokens generated when a request gives no max_tokens."
    )
    max_llm_batch: int = setting(
        32,
        help="Most llm generations decoded together; a tick with more is decoded in "
        "consecutive batches of this size, in request order.",
    )
    autoload: bool = setting(True, help="Load a model from the repository on first use.")
    cache_busy_wait_s: float = setting(
        10.0,
        help="How long a load waits for models with requests in flight to finish when the "
        "budget is full of them, before RESOURCE_EXHAUSTED (0: fail at once).",
    )

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
