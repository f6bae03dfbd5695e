from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunInfo(_message.Message):
    __slots__ = ("provider", "requested_provider", "fallback_reason", "onnxruntime_version", "settings")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    ONNXRUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    provider: str
    requested_provider: str
    fallback_reason: str
    onnxruntime_version: str
    settings: str
    def __init__(self, provider: _Optional[str] = ..., requested_provider: _Optional[str] = ..., fallback_reason: _Optional[str] = ..., onnxruntime_version: _Optional[str] = ..., settings: _Optional[str] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("name", "datatype", "shape", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATATYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    datatype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, name: _Optional[str] = ..., datatype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class TensorSpec(_message.Message):
    __slots__ = ("name", "datatype", "shape")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATATYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    datatype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., datatype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class LoadModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UnloadModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UnloadModelResponse(_message.Message):
    __slots__ = ("was_loaded", "released_bytes")
    WAS_LOADED_FIELD_NUMBER: _ClassVar[int]
    RELEASED_BYTES_FIELD_NUMBER: _ClassVar[int]
    was_loaded: bool
    released_bytes: int
    def __init__(self, was_loaded: _Optional[bool] = ..., released_bytes: _Optional[int] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "kind", "loaded", "charged_bytes", "provider", "requests", "errors", "in_flight", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    CHARGED_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    kind: str
    loaded: bool
    charged_bytes: int
    provider: str
    requests: int
    errors: int
    in_flight: int
    reason: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., kind: _Optional[str] = ..., loaded: _Optional[bool] = ..., charged_bytes: _Optional[int] = ..., provider: _Optional[str] = ..., requests: _Optional[int] = ..., errors: _Optional[int] = ..., in_flight: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "cache_budget_bytes", "cache_used_bytes")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    CACHE_BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHE_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    cache_budget_bytes: int
    cache_used_bytes: int
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., cache_budget_bytes: _Optional[int] = ..., cache_used_bytes: _Optional[int] = ...) -> None: ...

class GetModelMetadataRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ModelMetadata(_message.Message):
    __slots__ = ("info", "inputs", "outputs", "run_info")
    INFO_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    RUN_INFO_FIELD_NUMBER: _ClassVar[int]
    info: ModelInfo
    inputs: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    outputs: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    run_info: RunInfo
    def __init__(self, info: _Optional[_Union[ModelInfo, _Mapping]] = ..., inputs: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ..., run_info: _Optional[_Union[RunInfo, _Mapping]] = ...) -> None: ...

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("onnxruntime_version", "available_providers", "requested_provider", "settings", "model_repository", "cache_budget_bytes", "cache_used_bytes", "max_tensor_bytes")
    ONNXRUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    CACHE_BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHE_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_TENSOR_BYTES_FIELD_NUMBER: _ClassVar[int]
    onnxruntime_version: str
    available_providers: _containers.RepeatedScalarFieldContainer[str]
    requested_provider: str
    settings: str
    model_repository: str
    cache_budget_bytes: int
    cache_used_bytes: int
    max_tensor_bytes: int
    def __init__(self, onnxruntime_version: _Optional[str] = ..., available_providers: _Optional[_Iterable[str]] = ..., requested_provider: _Optional[str] = ..., settings: _Optional[str] = ..., model_repository: _Optional[str] = ..., cache_budget_bytes: _Optional[int] = ..., cache_used_bytes: _Optional[int] = ..., max_tensor_bytes: _Optional[int] = ...) -> None: ...

class InferRequest(_message.Message):
    __slots__ = ("model", "expected_version", "inputs", "output_names")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_NAMES_FIELD_NUMBER: _ClassVar[int]
    model: str
    expected_version: str
    inputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    output_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., expected_version: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., output_names: _Optional[_Iterable[str]] = ...) -> None: ...

class InferResponse(_message.Message):
    __slots__ = ("model", "model_version", "outputs", "run_info")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    RUN_INFO_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    outputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    run_info: RunInfo
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., outputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., run_info: _Optional[_Union[RunInfo, _Mapping]] = ...) -> None: ...

class SamplingParams(_message.Message):
    __slots__ = ("max_tokens", "temperature", "top_k", "top_p", "seed", "stop")
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    max_tokens: int
    temperature: float
    top_k: int
    top_p: float
    seed: int
    stop: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, max_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., top_k: _Optional[int] = ..., top_p: _Optional[float] = ..., seed: _Optional[int] = ..., stop: _Optional[_Iterable[str]] = ...) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("model", "prompt", "params", "messages", "chat")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    CHAT_FIELD_NUMBER: _ClassVar[int]
    model: str
    prompt: str
    params: SamplingParams
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    chat: bool
    def __init__(self, model: _Optional[str] = ..., prompt: _Optional[str] = ..., params: _Optional[_Union[SamplingParams, _Mapping]] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., chat: _Optional[bool] = ...) -> None: ...

class GenerationStep(_message.Message):
    __slots__ = ("index", "token", "text", "draw", "logits_sha256", "logit", "logprob", "cumulative_logprob")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DRAW_FIELD_NUMBER: _ClassVar[int]
    LOGITS_SHA256_FIELD_NUMBER: _ClassVar[int]
    LOGIT_FIELD_NUMBER: _ClassVar[int]
    LOGPROB_FIELD_NUMBER: _ClassVar[int]
    CUMULATIVE_LOGPROB_FIELD_NUMBER: _ClassVar[int]
    index: int
    token: int
    text: str
    draw: float
    logits_sha256: bytes
    logit: float
    logprob: float
    cumulative_logprob: float
    def __init__(self, index: _Optional[int] = ..., token: _Optional[int] = ..., text: _Optional[str] = ..., draw: _Optional[float] = ..., logits_sha256: _Optional[bytes] = ..., logit: _Optional[float] = ..., logprob: _Optional[float] = ..., cumulative_logprob: _Optional[float] = ...) -> None: ...

class GenerationLog(_message.Message):
    __slots__ = ("model", "model_version", "prompt", "params", "steps", "finish_reason", "run_info", "messages", "prompt_tokens", "batch_size")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    RUN_INFO_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    prompt: str
    params: SamplingParams
    steps: _containers.RepeatedCompositeFieldContainer[GenerationStep]
    finish_reason: str
    run_info: RunInfo
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    prompt_tokens: int
    batch_size: int
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., prompt: _Optional[str] = ..., params: _Optional[_Union[SamplingParams, _Mapping]] = ..., steps: _Optional[_Iterable[_Union[GenerationStep, _Mapping]]] = ..., finish_reason: _Optional[str] = ..., run_info: _Optional[_Union[RunInfo, _Mapping]] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., prompt_tokens: _Optional[int] = ..., batch_size: _Optional[int] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("text", "tokens", "log", "replayed")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    text: str
    tokens: _containers.RepeatedScalarFieldContainer[int]
    log: GenerationLog
    replayed: bool
    def __init__(self, text: _Optional[str] = ..., tokens: _Optional[_Iterable[int]] = ..., log: _Optional[_Union[GenerationLog, _Mapping]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class GenerateEvent(_message.Message):
    __slots__ = ("step", "done")
    STEP_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    step: GenerationStep
    done: GenerateResponse
    def __init__(self, step: _Optional[_Union[GenerationStep, _Mapping]] = ..., done: _Optional[_Union[GenerateResponse, _Mapping]] = ...) -> None: ...

class ReplayGenerationRequest(_message.Message):
    __slots__ = ("log", "verify")
    LOG_FIELD_NUMBER: _ClassVar[int]
    VERIFY_FIELD_NUMBER: _ClassVar[int]
    log: GenerationLog
    verify: bool
    def __init__(self, log: _Optional[_Union[GenerationLog, _Mapping]] = ..., verify: _Optional[bool] = ...) -> None: ...

class AgentInferRequest(_message.Message):
    __slots__ = ("key", "model", "input")
    KEY_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    key: str
    model: str
    input: bytes
    def __init__(self, key: _Optional[str] = ..., model: _Optional[str] = ..., input: _Optional[bytes] = ...) -> None: ...

class AgentInferBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[AgentInferRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[AgentInferRequest, _Mapping]]] = ...) -> None: ...

class AgentInferResult(_message.Message):
    __slots__ = ("key", "output", "error", "provider", "model_version", "error_code", "generation")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    key: str
    output: bytes
    error: str
    provider: str
    model_version: str
    error_code: str
    generation: GenerationLog
    def __init__(self, key: _Optional[str] = ..., output: _Optional[bytes] = ..., error: _Optional[str] = ..., provider: _Optional[str] = ..., model_version: _Optional[str] = ..., error_code: _Optional[str] = ..., generation: _Optional[_Union[GenerationLog, _Mapping]] = ...) -> None: ...

class AgentInferBatchResponse(_message.Message):
    __slots__ = ("results", "run_info")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    RUN_INFO_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AgentInferResult]
    run_info: RunInfo
    def __init__(self, results: _Optional[_Iterable[_Union[AgentInferResult, _Mapping]]] = ..., run_info: _Optional[_Union[RunInfo, _Mapping]] = ...) -> None: ...
