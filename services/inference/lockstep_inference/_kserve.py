"""The KServe v2 / Open Inference Protocol API (inference.GRPCInferenceService).

Responses carry the provider, ONNX Runtime version and session settings as response
parameters ("lockstep_provider", "lockstep_onnxruntime_version", "lockstep_settings"), and
the model version is always "sha256:<hex>".
"""

from __future__ import annotations

import grpc
import numpy as np

from lockstep.auth import ADMIN_ONLY, OPERATOR, SERVICE, VIEWER, Role
from lockstep.pb.kserve.v2 import grpc_predict_v2_pb2 as kpb
from lockstep.pb.kserve.v2 import grpc_predict_v2_pb2_grpc as kpb_grpc
from lockstep.server import role_table
from lockstep_inference import __version__
from lockstep_inference._dtypes import kserve_of_numpy, numpy_of_kserve
from lockstep_inference._engine import InferenceEngine, TensorIn
from lockstep_inference._errors import InvalidInputError, ModelNotFoundError
from lockstep_inference._grpc import grpc_errors

__all__ = ["KSERVE_ROLE_TABLE", "KSERVE_SERVICE_NAME", "KServeServicer"]

_SERVICE = kpb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
KSERVE_SERVICE_NAME = _SERVICE.full_name
_METHOD_ROLES: dict[str, frozenset[Role]] = {
    "ServerLive": VIEWER,
    "ServerReady": VIEWER,
    "ModelReady": VIEWER,
    "ServerMetadata": VIEWER,
    "ModelMetadata": VIEWER,
    "ModelInfer": OPERATOR | SERVICE,
    "RepositoryIndex": VIEWER,
    "RepositoryModelLoad": ADMIN_ONLY,
    "RepositoryModelUnload": ADMIN_ONLY,
}
KSERVE_ROLE_TABLE = role_table(_SERVICE, _METHOD_ROLES)

# Typed `contents` field of each datatype (FP16 has none: raw only, as upstream says).
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def _check_version(engine: InferenceEngine, name: str, version: str) -> None:
    if not version:
        return
    entry = engine.cache.get(name)
    if entry is None or entry.version != version:
        raise ModelNotFoundError(
            f"model {name!r} version {version!r} is not available "
            "(versions are 'sha256:<hex>' of the loaded model)"
        )


class KServeServicer(kpb_grpc.GRPCInferenceServiceServicer):
    """KServe v2 on top of the same engine as Lockstep's own API."""

    def __init__(self, engine: InferenceEngine) -> None:
        self.engine = engine

    @grpc_errors
    def ServerLive(
        self,
        request: kpb.ServerLiveRequest,
        context: grpc.ServicerContext,
    ) -> kpb.ServerLiveResponse:
        return kpb.ServerLiveResponse(live=True)

    @grpc_errors
    def ServerReady(
        self,
        request: kpb.ServerReadyRequest,
        context: grpc.ServicerContext,
    ) -> kpb.ServerReadyResponse:
        return kpb.ServerReadyResponse(ready=True)

    @grpc_errors
    def ModelReady(
        self,
        request: kpb.ModelReadyRequest,
        context: grpc.ServicerContext,
    ) -> kpb.ModelReadyResponse:
        entry = self.engine.cache.get(request.name)
        if (
            entry is None
            and self.engine.config.autoload
            and request.name in self.engine.model_names()
        ):
            # A model that inference loads on first use is ready for it: load it now, so
            # that the answer (and a pinned version) is the one a call would see.
            entry = self.engine.load(request.name)
        ready = entry is not None and (not request.version or request.version == entry.version)
        return kpb.ModelReadyResponse(ready=ready)

    @grpc_errors
    def ServerMetadata(
        self,
        request: kpb.ServerMetadataRequest,
        context: grpc.ServicerContext,
    ) -> kpb.ServerMetadataResponse:
        return kpb.ServerMetadataResponse(
            name="lockstep-inference", version=__version__, extensions=["model_repository"]
        )

    @grpc_errors
    def ModelMetadata(
        self,
        request: kpb.ModelMetadataRequest,
        context: grpc.ServicerContext,
    ) -> kpb.ModelMetadataResponse:
        with self.engine.use(request.name) as entry:
            _check_version(self.engine, request.name, request.version)
            meta = kpb.ModelMetadataResponse.TensorMetadata
            return kpb.ModelMetadataResponse(
                name=entry.name,
                versions=[entry.version],
                platform="onnxruntime_onnx",
                inputs=[
                    meta(name=s.name, datatype=s.datatype, shape=list(s.shape))
                    for s in entry.session.inputs
                ],
                outputs=[
                    meta(name=s.name, datatype=s.datatype, shape=list(s.shape))
                    for s in entry.session.outputs
                ],
            )

    @grpc_errors
    def ModelInfer(
        self,
        request: kpb.ModelInferRequest,
        context: grpc.ServicerContext,
    ) -> kpb.ModelInferResponse:
        raw = list(request.raw_input_contents)
        if raw and len(raw) != len(request.inputs):
            raise InvalidInputError(
                f"{len(raw)} raw_input_contents for {len(request.inputs)} "
                "inputs: give one per input, in the same order"
            )
        tensors: list[TensorIn] = []
        for i, t in enumerate(request.inputs):
            shape = tuple(t.shape)
            if raw:
                if t.HasField("contents"):
                    raise InvalidInputError(
                        f"input {t.name!r}: contents and raw_input_contents are both given"
                    )
                tensors.append(TensorIn(t.name, t.datatype, shape, raw[i]))
                continue
            field = _CONTENTS_FIELD.get(t.datatype)
            if field is None:
                numpy_of_kserve(t.datatype)  # unsupported datatype -> INVALID_ARGUMENT
                raise InvalidInputError(
                    f"input {t.name!r}: {t.datatype} must be sent as raw_input_contents"
                )
            values = getattr(t.contents, field)
            arr = np.asarray(values, dtype=numpy_of_kserve(t.datatype))
            tensors.append(TensorIn(t.name, t.datatype, shape, arr))
        _check_version(self.engine, request.model_name, request.model_version)
        entry, outs = self.engine.infer(
            request.model_name, tensors, [o.name for o in request.outputs]
        )
        resp = kpb.ModelInferResponse(
            model_name=request.model_name, model_version=entry.version, id=request.id
        )
        resp.parameters["lockstep_provider"].string_param = entry.session.provider
        info = self.engine.run_info(entry)
        resp.parameters["lockstep_onnxruntime_version"].string_param = info.onnxruntime_version
        resp.parameters["lockstep_settings"].string_param = info.settings
        if info.fallback_reason:
            resp.parameters["lockstep_fallback_reason"].string_param = info.fallback_reason
        for name, arr in outs:
            resp.outputs.add(name=name, datatype=kserve_of_numpy(arr.dtype), shape=list(arr.shape))
            resp.raw_output_contents.append(
                np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            )
        return resp

    @grpc_errors
    def RepositoryIndex(
        self,
        request: kpb.RepositoryIndexRequest,
        context: grpc.ServicerContext,
    ) -> kpb.RepositoryIndexResponse:
        resp = kpb.RepositoryIndexResponse()
        for name in self.engine.model_names():
            entry = self.engine.cache.get(name)
            if entry is not None:
                resp.models.add(name=name, version=entry.version, state="READY")
            elif not request.ready:
                reason = self.engine.cache.load_errors.get(name, "unloaded")
                resp.models.add(name=name, state="UNAVAILABLE", reason=reason)
        return resp

    @grpc_errors
    def RepositoryModelLoad(
        self,
        request: kpb.RepositoryModelLoadRequest,
        context: grpc.ServicerContext,
    ) -> kpb.RepositoryModelLoadResponse:
        if request.parameters:
            raise InvalidInputError(
                "load parameters (config/file overrides) are not supported: "
                "models come from the repository directory only"
            )
        self.engine.load(request.model_name)
        return kpb.RepositoryModelLoadResponse()

    @grpc_errors
    def RepositoryModelUnload(
        self,
        request: kpb.RepositoryModelUnloadRequest,
        context: grpc.ServicerContext,
    ) -> kpb.RepositoryModelUnloadResponse:
        self.engine.unload(request.model_name)
        return kpb.RepositoryModelUnloadResponse()
