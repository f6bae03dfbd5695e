"""Lockstep's own gRPC API (lockstep.inference.v1.InferenceService)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import onnxruntime as ort

from lockstep.auth import ADMIN_ONLY, OPERATOR, SERVICE, VIEWER, Role
from lockstep.pb.inference.v1 import inference_pb2 as pb
from lockstep.pb.inference.v1 import inference_pb2_grpc as pb_grpc
from lockstep.server import role_table
from lockstep_inference._cache import CacheEntry
from lockstep_inference._dtypes import kserve_of_numpy
from lockstep_inference._engine import InferenceEngine, TensorIn
from lockstep_inference._grpc import grpc_errors, grpc_errors_stream
from lockstep_inference._metrics import InferenceMetrics
from lockstep_inference._session import TensorSpecInfo

__all__ = ["ROLE_TABLE", "SERVICE_NAME", "InferenceServicer"]

_SERVICE = pb.DESCRIPTOR.services_by_name["InferenceService"]
SERVICE_NAME = _SERVICE.full_name
_RUN = OPERATOR | SERVICE
_METHOD_ROLES: dict[str, frozenset[Role]] = {
    "LoadModel": ADMIN_ONLY,
    "UnloadModel": ADMIN_ONLY,
    "ListModels": VIEWER,
    "GetModelMetadata": VIEWER,
    "GetServerInfo": VIEWER,
    "Infer": _RUN,
    "Generate": _RUN,
    "GenerateStream": _RUN,
    "ReplayGeneration": _RUN,
    "AgentInferBatch": _RUN,
}
ROLE_TABLE = role_table(_SERVICE, _METHOD_ROLES)


def model_info(engine: InferenceEngine, name: str, entry: CacheEntry | None) -> pb.ModelInfo:
    """ModelInfo of one model, loaded or not."""
    if entry is None:
        return pb.ModelInfo(name=name, loaded=False, reason=engine.cache.load_errors.get(name, ""))
    return pb.ModelInfo(
        name=name,
        version=entry.version,
        kind=entry.files.kind,
        loaded=True,
        charged_bytes=entry.charged,
        provider=entry.session.provider,
        requests=entry.requests,
        errors=entry.errors,
        in_flight=entry.in_flight,
    )


def _specs(specs: list[TensorSpecInfo]) -> list[pb.TensorSpec]:
    return [pb.TensorSpec(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in specs]


class InferenceServicer(pb_grpc.InferenceServiceServicer):
    """Thin gRPC layer over InferenceEngine."""

    def __init__(self, engine: InferenceEngine, metrics: InferenceMetrics | None = None) -> None:
        self.engine = engine
        self.metrics = metrics

    def _count(self, model: str, method: str) -> None:
        if self.metrics is not None:
            self.metrics.count(model, method)

    @grpc_errors
    def LoadModel(
        self,
        request: pb.LoadModelRequest,
        context: grpc.ServicerContext,
    ) -> pb.ModelInfo:
        entry = self.engine.load(request.name)
        return model_info(self.engine, entry.name, entry)

    @grpc_errors
    def UnloadModel(
        self,
        request: pb.UnloadModelRequest,
        context: grpc.ServicerContext,
    ) -> pb.UnloadModelResponse:
        was, released = self.engine.unload(request.name)
        return pb.UnloadModelResponse(was_loaded=was, released_bytes=released)

    @grpc_errors
    def ListModels(
        self,
        request: pb.ListModelsRequest,
        context: grpc.ServicerContext,
    ) -> pb.ListModelsResponse:
        cache = self.engine.cache
        return pb.ListModelsResponse(
            models=[model_info(self.engine, n, cache.get(n)) for n in self.engine.model_names()],
            cache_budget_bytes=cache.budget,
            cache_used_bytes=cache.used,
        )

    @grpc_errors
    def GetModelMetadata(
        self,
        request: pb.GetModelMetadataRequest,
        context: grpc.ServicerContext,
    ) -> pb.ModelMetadata:
        with self.engine.use(request.name) as entry:
            return pb.ModelMetadata(
                info=model_info(self.engine, entry.name, entry),
                inputs=_specs(entry.session.inputs),
                outputs=_specs(entry.session.outputs),
                run_info=self.engine.run_info(entry),
            )

    @grpc_errors
    def GetServerInfo(
        self,
        request: pb.GetServerInfoRequest,
        context: grpc.ServicerContext,
    ) -> pb.ServerInfo:
        cfg = self.engine.config
        return pb.ServerInfo(
            onnxruntime_version=ort.__version__,
            available_providers=list(ort.get_available_providers()),
            requested_provider=cfg.provider,
            settings=cfg.settings_text,
            model_repository=str(cfg.model_repository),
            cache_budget_bytes=self.engine.cache.budget,
            cache_used_bytes=self.engine.cache.used,
            max_tensor_bytes=cfg.max_tensor_bytes,
        )

    @grpc_errors
    def Infer(
        self,
        request: pb.InferRequest,
        context: grpc.ServicerContext,
    ) -> pb.InferResponse:
        self._count(request.model, "Infer")
        tensors = [TensorIn(t.name, t.datatype, tuple(t.shape), t.data) for t in request.inputs]
        entry, outs = self.engine.infer(
            request.model, tensors, list(request.output_names), request.expected_version
        )
        return pb.InferResponse(
            model=request.model,
            model_version=entry.version,
            outputs=[_tensor(n, a) for n, a in outs],
            run_info=self.engine.run_info(entry),
        )

    @grpc_errors
    def Generate(
        self,
        request: pb.GenerateRequest,
        context: grpc.ServicerContext,
    ) -> pb.GenerateResponse:
        self._count(request.model, "Generate")
        params = request.params if request.HasField("params") else None
        return self.engine.generate(
            request.model,
            request.prompt,
            params,
            [(m.role, m.content) for m in request.messages],
            request.chat,
        )

    @grpc_errors_stream
    def GenerateStream(
        self,
        request: pb.GenerateRequest,
        context: grpc.ServicerContext,
    ) -> Iterator[pb.GenerateEvent]:
        self._count(request.model, "GenerateStream")
        params = request.params if request.HasField("params") else None
        for item in self.engine.generate_iter(
            request.model,
            request.prompt,
            params,
            [(m.role, m.content) for m in request.messages],
            request.chat,
        ):
            if isinstance(item, pb.GenerationStep):
                yield pb.GenerateEvent(step=item)
            else:
                yield pb.GenerateEvent(done=item)

    @grpc_errors
    def ReplayGeneration(
        self,
        request: pb.ReplayGenerationRequest,
        context: grpc.ServicerContext,
    ) -> pb.GenerateResponse:
        return self.engine.replay(request.log, request.verify)

    @grpc_errors
    def AgentInferBatch(
        self,
        request: pb.AgentInferBatchRequest,
        context: grpc.ServicerContext,
    ) -> pb.AgentInferBatchResponse:
        if self.metrics is not None:
            for r in request.requests:
                self.metrics.count(r.model, "AgentInferBatch")
        results = self.engine.agent_batch(list(request.requests))
        return pb.AgentInferBatchResponse(results=results, run_info=self.engine.run_info(None))


def _tensor(name: str, arr: np.ndarray) -> pb.Tensor:
    data = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
    return pb.Tensor(
        name=name, datatype=kserve_of_numpy(arr.dtype), shape=list(arr.shape), data=data
    )
