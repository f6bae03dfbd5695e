from lockstep.pb.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LoadModuleRequest(_message.Message):
    __slots__ = ("wasm",)
    WASM_FIELD_NUMBER: _ClassVar[int]
    wasm: bytes
    def __init__(self, wasm: _Optional[bytes] = ...) -> None: ...

class LoadModuleResponse(_message.Message):
    __slots__ = ("module_hash", "imports", "exports", "has_receive_batch")
    MODULE_HASH_FIELD_NUMBER: _ClassVar[int]
    IMPORTS_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_FIELD_NUMBER: _ClassVar[int]
    HAS_RECEIVE_BATCH_FIELD_NUMBER: _ClassVar[int]
    module_hash: str
    imports: _containers.RepeatedScalarFieldContainer[str]
    exports: _containers.RepeatedScalarFieldContainer[str]
    has_receive_batch: bool
    def __init__(self, module_hash: _Optional[str] = ..., imports: _Optional[_Iterable[str]] = ..., exports: _Optional[_Iterable[str]] = ..., has_receive_batch: _Optional[bool] = ...) -> None: ...

class AgentSpec(_message.Message):
    __slots__ = ("sequence", "name", "module_hash", "limits", "args")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODULE_HASH_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    name: str
    module_hash: str
    limits: _common_pb2.Limits
    args: bytes
    def __init__(self, sequence: _Optional[int] = ..., name: _Optional[str] = ..., module_hash: _Optional[str] = ..., limits: _Optional[_Union[_common_pb2.Limits, _Mapping]] = ..., args: _Optional[bytes] = ...) -> None: ...

class CreateAgentsRequest(_message.Message):
    __slots__ = ("tick", "seed", "agents", "batch")
    TICK_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    tick: int
    seed: int
    agents: _containers.RepeatedCompositeFieldContainer[AgentSpec]
    batch: bytes
    def __init__(self, tick: _Optional[int] = ..., seed: _Optional[int] = ..., agents: _Optional[_Iterable[_Union[AgentSpec, _Mapping]]] = ..., batch: _Optional[bytes] = ...) -> None: ...

class CreateAgentsResponse(_message.Message):
    __slots__ = ("results", "batch")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AgentStepResult]
    batch: bytes
    def __init__(self, results: _Optional[_Iterable[_Union[AgentStepResult, _Mapping]]] = ..., batch: _Optional[bytes] = ...) -> None: ...

class AgentStep(_message.Message):
    __slots__ = ("sequence", "inbox", "inbox_count")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    INBOX_FIELD_NUMBER: _ClassVar[int]
    INBOX_COUNT_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    inbox: bytes
    inbox_count: int
    def __init__(self, sequence: _Optional[int] = ..., inbox: _Optional[bytes] = ..., inbox_count: _Optional[int] = ...) -> None: ...

class StepBatchRequest(_message.Message):
    __slots__ = ("tick", "steps", "batch")
    TICK_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    tick: int
    steps: _containers.RepeatedCompositeFieldContainer[AgentStep]
    batch: bytes
    def __init__(self, tick: _Optional[int] = ..., steps: _Optional[_Iterable[_Union[AgentStep, _Mapping]]] = ..., batch: _Optional[bytes] = ...) -> None: ...

class AgentStepResult(_message.Message):
    __slots__ = ("sequence", "code", "fault", "fuel_used", "sends", "send_count", "logs", "infers", "refused_calls")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    FAULT_FIELD_NUMBER: _ClassVar[int]
    FUEL_USED_FIELD_NUMBER: _ClassVar[int]
    SENDS_FIELD_NUMBER: _ClassVar[int]
    SEND_COUNT_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    INFERS_FIELD_NUMBER: _ClassVar[int]
    REFUSED_CALLS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    code: int
    fault: _common_pb2.Fault
    fuel_used: int
    sends: bytes
    send_count: int
    logs: _containers.RepeatedCompositeFieldContainer[_common_pb2.LogRecord]
    infers: _containers.RepeatedCompositeFieldContainer[_common_pb2.InferCall]
    refused_calls: int
    def __init__(self, sequence: _Optional[int] = ..., code: _Optional[int] = ..., fault: _Optional[_Union[_common_pb2.Fault, _Mapping]] = ..., fuel_used: _Optional[int] = ..., sends: _Optional[bytes] = ..., send_count: _Optional[int] = ..., logs: _Optional[_Iterable[_Union[_common_pb2.LogRecord, _Mapping]]] = ..., infers: _Optional[_Iterable[_Union[_common_pb2.InferCall, _Mapping]]] = ..., refused_calls: _Optional[int] = ...) -> None: ...

class StepBatchResponse(_message.Message):
    __slots__ = ("results", "batch")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AgentStepResult]
    batch: bytes
    def __init__(self, results: _Optional[_Iterable[_Union[AgentStepResult, _Mapping]]] = ..., batch: _Optional[bytes] = ...) -> None: ...

class DestroyAgentsRequest(_message.Message):
    __slots__ = ("tick", "sequences", "call_shutdown", "batch")
    TICK_FIELD_NUMBER: _ClassVar[int]
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    CALL_SHUTDOWN_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    tick: int
    sequences: _containers.RepeatedScalarFieldContainer[int]
    call_shutdown: bool
    batch: bytes
    def __init__(self, tick: _Optional[int] = ..., sequences: _Optional[_Iterable[int]] = ..., call_shutdown: _Optional[bool] = ..., batch: _Optional[bytes] = ...) -> None: ...

class DestroyAgentsResponse(_message.Message):
    __slots__ = ("results", "batch")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AgentStepResult]
    batch: bytes
    def __init__(self, results: _Optional[_Iterable[_Union[AgentStepResult, _Mapping]]] = ..., batch: _Optional[bytes] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("sequences",)
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    sequences: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, sequences: _Optional[_Iterable[int]] = ...) -> None: ...

class GlobalValue(_message.Message):
    __slots__ = ("index", "type", "bits")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    index: int
    type: str
    bits: bytes
    def __init__(self, index: _Optional[int] = ..., type: _Optional[str] = ..., bits: _Optional[bytes] = ...) -> None: ...

class AgentSnapshot(_message.Message):
    __slots__ = ("spec", "seed", "memory", "globals", "random_position", "next_request_id", "state_hash", "idle")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    GLOBALS_FIELD_NUMBER: _ClassVar[int]
    RANDOM_POSITION_FIELD_NUMBER: _ClassVar[int]
    NEXT_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_HASH_FIELD_NUMBER: _ClassVar[int]
    IDLE_FIELD_NUMBER: _ClassVar[int]
    spec: AgentSpec
    seed: int
    memory: bytes
    globals: _containers.RepeatedCompositeFieldContainer[GlobalValue]
    random_position: int
    next_request_id: int
    state_hash: bytes
    idle: bool
    def __init__(self, spec: _Optional[_Union[AgentSpec, _Mapping]] = ..., seed: _Optional[int] = ..., memory: _Optional[bytes] = ..., globals: _Optional[_Iterable[_Union[GlobalValue, _Mapping]]] = ..., random_position: _Optional[int] = ..., next_request_id: _Optional[int] = ..., state_hash: _Optional[bytes] = ..., idle: _Optional[bool] = ...) -> None: ...

class RestoreResponse(_message.Message):
    __slots__ = ("sequences",)
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    sequences: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, sequences: _Optional[_Iterable[int]] = ...) -> None: ...

class ResetRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResetResponse(_message.Message):
    __slots__ = ("dropped",)
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    dropped: int
    def __init__(self, dropped: _Optional[int] = ...) -> None: ...

class GetPoolInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetPoolInfoResponse(_message.Message):
    __slots__ = ("agents", "modules", "wasmtime_version", "default_limits")
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    MODULES_FIELD_NUMBER: _ClassVar[int]
    WASMTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_LIMITS_FIELD_NUMBER: _ClassVar[int]
    agents: int
    modules: _containers.RepeatedScalarFieldContainer[str]
    wasmtime_version: str
    default_limits: _common_pb2.Limits
    def __init__(self, agents: _Optional[int] = ..., modules: _Optional[_Iterable[str]] = ..., wasmtime_version: _Optional[str] = ..., default_limits: _Optional[_Union[_common_pb2.Limits, _Mapping]] = ...) -> None: ...

class OpenTickChannelRequest(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, versions: _Optional[_Iterable[int]] = ...) -> None: ...

class OpenTickChannelResponse(_message.Message):
    __slots__ = ("version", "socket", "secret", "host")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SOCKET_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    version: int
    socket: str
    secret: bytes
    host: str
    def __init__(self, version: _Optional[int] = ..., socket: _Optional[str] = ..., secret: _Optional[bytes] = ..., host: _Optional[str] = ...) -> None: ...
