"""Building the inference server: engine, both APIs, the shared frame."""

from __future__ import annotations

import logging

from onnx import TensorProto, helper

from lockstep.auth import TokenStore
from lockstep.errors import ConfigError
from lockstep.metrics import service_registry
from lockstep.pb.inference.v1 import inference_pb2_grpc as pb_grpc
from lockstep.pb.kserve.v2 import grpc_predict_v2_pb2_grpc as kpb_grpc
from lockstep.server import BoundServer, ServiceBinding, build_server
from lockstep_inference._config import InferenceConfig
from lockstep_inference._engine import InferenceEngine
from lockstep_inference._errors import InferenceError
from lockstep_inference._kserve import KSERVE_ROLE_TABLE, KSERVE_SERVICE_NAME, KServeServicer
from lockstep_inference._metrics import InferenceMetrics
from lockstep_inference._service import ROLE_TABLE, SERVICE_NAME, InferenceServicer
from lockstep_inference._session import OrtSession

__all__ = ["create_server", "probe_provider"]

log = logging.getLogger("lockstep.inference")


def _probe_model() -> bytes:
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def probe_provider(config: InferenceConfig) -> tuple[str, str]:
    """Open a tiny session with the configured policy: (provider got, fallback reason).

    Raises ConfigError under "require-cuda" when CUDA is not really usable, so the process
    fails at start-up instead of at the first request.
    """
    try:
        with OrtSession(_probe_model(), config, "<probe>") as s:
            return s.provider, s.fallback_reason
    except InferenceError as exc:
        raise ConfigError(str(exc)) from None


def create_server(
    address: str, *, auth: TokenStore | None, config: InferenceConfig | None = None
) -> BoundServer:
    """Start the inference server (own API + KServe v2) on `address`."""
    cfg = config or InferenceConfig()
    provider, reason = probe_provider(cfg)
    log.info(
        "provider policy %s: sessions get %s%s",
        cfg.provider,
        provider,
        f" ({reason})" if reason else "",
    )
    if not cfg.model_repository.is_dir():
        log.warning(
            "model repository %s does not exist (yet); run `lockstep models prepare`",
            cfg.model_repository,
        )
    engine = InferenceEngine(cfg)
    registry = service_registry()
    own = InferenceServicer(engine, InferenceMetrics(registry, engine, provider, cfg.provider))
    kserve = KServeServicer(engine)
    bound = build_server(
        address,
        [
            ServiceBinding(
                lambda s: pb_grpc.add_InferenceServiceServicer_to_server(  # type: ignore[no-untyped-call,unused-ignore]
                    own, s
                ),
                SERVICE_NAME,
                ROLE_TABLE,
                own,
            ),
            ServiceBinding(
                lambda s: kpb_grpc.add_GRPCInferenceServiceServicer_to_server(  # type: ignore[no-untyped-call,unused-ignore]
                    kserve, s
                ),
                KSERVE_SERVICE_NAME,
                KSERVE_ROLE_TABLE,
                kserve,
            ),
        ],
        auth=auth,
        registry=registry,
    )
    bound.on_stop.append(engine.close)
    return bound
