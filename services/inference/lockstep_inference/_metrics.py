"""The inference service's Prometheus metrics: requests by model and method, the model
cache's bytes, loaded models, and the execution provider (requests' latency is the shared
grpc_server_handling_seconds of lockstep.metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from lockstep_inference._engine import InferenceEngine

__all__ = ["InferenceMetrics"]


class InferenceMetrics:
    def __init__(
        self, registry: CollectorRegistry, engine: InferenceEngine, provider: str, requested: str
    ) -> None:
        cache = engine.cache
        self.requests = Counter(
            "lockstep_inference_requests",
            "Inference requests by model and method (an agent batch counts each of its requests)",
            ["model", "method"],
            registry=registry,
        )
        Gauge(
            "lockstep_inference_cache_bytes", "Bytes charged by loaded models", registry=registry
        ).set_function(lambda: float(cache.used))
        Gauge(
            "lockstep_inference_cache_budget_bytes",
            "The model cache's byte budget",
            registry=registry,
        ).set_function(lambda: float(cache.budget))
        Gauge(
            "lockstep_inference_models_loaded", "Models in the cache", registry=registry
        ).set_function(lambda: float(len(cache.entries())))
        info = Gauge(
            "lockstep_inference_provider",
            "The execution provider sessions get (1 for the one in use)",
            ["provider", "requested"],
            registry=registry,
        )
        info.labels(provider=provider, requested=requested).set(1)

    def count(self, model: str, method: str, n: int = 1) -> None:
        self.requests.labels(model=model or "-", method=method).inc(n)
