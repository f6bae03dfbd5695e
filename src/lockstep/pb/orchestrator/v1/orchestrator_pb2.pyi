from lockstep.pb.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AgentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_STATE_UNSPECIFIED: _ClassVar[AgentState]
    AGENT_STATE_PENDING: _ClassVar[AgentState]
    AGENT_STATE_RUNNING: _ClassVar[AgentState]
    AGENT_STATE_IDLE: _ClassVar[AgentState]
    AGENT_STATE_PAUSED: _ClassVar[AgentState]
    AGENT_STATE_FAULTED: _ClassVar[AgentState]
    AGENT_STATE_TERMINATED: _ClassVar[AgentState]
AGENT_STATE_UNSPECIFIED: AgentState
AGENT_STATE_PENDING: AgentState
AGENT_STATE_RUNNING: AgentState
AGENT_STATE_IDLE: AgentState
AGENT_STATE_PAUSED: AgentState
AGENT_STATE_FAULTED: AgentState
AGENT_STATE_TERMINATED: AgentState

class RegisterModuleRequest(_message.Message):
    __slots__ = ("wasm", "name")
    WASM_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    wasm: bytes
    name: str
    def __init__(self, wasm: _Optional[bytes] = ..., name: _Optional[str] = ...) -> None: ...

class ModuleInfo(_message.Message):
    __slots__ = ("module_hash", "name", "version", "abi_version", "capabilities", "signer", "verdict", "size")
    MODULE_HASH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ABI_VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    SIGNER_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    module_hash: str
    name: str
    version: str
    abi_version: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    signer: str
    verdict: str
    size: int
    def __init__(self, module_hash: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ..., abi_version: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., signer: _Optional[str] = ..., verdict: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class RegisterModuleResponse(_message.Message):
    __slots__ = ("module",)
    MODULE_FIELD_NUMBER: _ClassVar[int]
    module: ModuleInfo
    def __init__(self, module: _Optional[_Union[ModuleInfo, _Mapping]] = ...) -> None: ...

class ListModulesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModulesResponse(_message.Message):
    __slots__ = ("modules",)
    MODULES_FIELD_NUMBER: _ClassVar[int]
    modules: _containers.RepeatedCompositeFieldContainer[ModuleInfo]
    def __init__(self, modules: _Optional[_Iterable[_Union[ModuleInfo, _Mapping]]] = ...) -> None: ...

class RunConfig(_message.Message):
    __slots__ = ("seed", "max_steps_per_tick", "inference_latency", "default_limits", "label")
    SEED_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_PER_TICK_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_LATENCY_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_LIMITS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    seed: int
    max_steps_per_tick: int
    inference_latency: int
    default_limits: _common_pb2.Limits
    label: str
    def __init__(self, seed: _Optional[int] = ..., max_steps_per_tick: _Optional[int] = ..., inference_latency: _Optional[int] = ..., default_limits: _Optional[_Union[_common_pb2.Limits, _Mapping]] = ..., label: _Optional[str] = ...) -> None: ...

class StartRunRequest(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: RunConfig
    def __init__(self, config: _Optional[_Union[RunConfig, _Mapping]] = ...) -> None: ...

class RestartPolicy(_message.Message):
    __slots__ = ("max_restarts", "backoff_ticks", "backoff_multiplier", "max_backoff_ticks")
    MAX_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_TICKS_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    MAX_BACKOFF_TICKS_FIELD_NUMBER: _ClassVar[int]
    max_restarts: int
    backoff_ticks: int
    backoff_multiplier: int
    max_backoff_ticks: int
    def __init__(self, max_restarts: _Optional[int] = ..., backoff_ticks: _Optional[int] = ..., backoff_multiplier: _Optional[int] = ..., max_backoff_ticks: _Optional[int] = ...) -> None: ...

class AgentSpawn(_message.Message):
    __slots__ = ("name", "module", "priority", "limits", "args", "restart", "topics")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    RESTART_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    name: str
    module: str
    priority: int
    limits: _common_pb2.Limits
    args: bytes
    restart: RestartPolicy
    topics: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., module: _Optional[str] = ..., priority: _Optional[int] = ..., limits: _Optional[_Union[_common_pb2.Limits, _Mapping]] = ..., args: _Optional[bytes] = ..., restart: _Optional[_Union[RestartPolicy, _Mapping]] = ..., topics: _Optional[_Iterable[str]] = ...) -> None: ...

class SpawnAgentsRequest(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[AgentSpawn]
    def __init__(self, agents: _Optional[_Iterable[_Union[AgentSpawn, _Mapping]]] = ...) -> None: ...

class AgentSelector(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class ExternalMessage(_message.Message):
    __slots__ = ("to", "payload")
    TO_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    to: str
    payload: bytes
    def __init__(self, to: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class SendMessagesRequest(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ExternalMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[ExternalMessage, _Mapping]]] = ...) -> None: ...

class ControlResponse(_message.Message):
    __slots__ = ("effective_tick", "sequences")
    EFFECTIVE_TICK_FIELD_NUMBER: _ClassVar[int]
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    effective_tick: int
    sequences: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, effective_tick: _Optional[int] = ..., sequences: _Optional[_Iterable[int]] = ...) -> None: ...

class AgentInfo(_message.Message):
    __slots__ = ("name", "sequence", "module_hash", "priority", "state", "pool", "steps", "messages_sent", "messages_received", "fuel_used", "restarts", "last_fault", "spawn_tick", "inbox", "topics")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    MODULE_HASH_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_SENT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    FUEL_USED_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    LAST_FAULT_FIELD_NUMBER: _ClassVar[int]
    SPAWN_TICK_FIELD_NUMBER: _ClassVar[int]
    INBOX_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    name: str
    sequence: int
    module_hash: str
    priority: int
    state: AgentState
    pool: int
    steps: int
    messages_sent: int
    messages_received: int
    fuel_used: int
    restarts: int
    last_fault: _common_pb2.Fault
    spawn_tick: int
    inbox: int
    topics: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., sequence: _Optional[int] = ..., module_hash: _Optional[str] = ..., priority: _Optional[int] = ..., state: _Optional[_Union[AgentState, str]] = ..., pool: _Optional[int] = ..., steps: _Optional[int] = ..., messages_sent: _Optional[int] = ..., messages_received: _Optional[int] = ..., fuel_used: _Optional[int] = ..., restarts: _Optional[int] = ..., last_fault: _Optional[_Union[_common_pb2.Fault, _Mapping]] = ..., spawn_tick: _Optional[int] = ..., inbox: _Optional[int] = ..., topics: _Optional[_Iterable[str]] = ...) -> None: ...

class ListAgentsRequest(_message.Message):
    __slots__ = ("states",)
    STATES_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[AgentState]
    def __init__(self, states: _Optional[_Iterable[_Union[AgentState, str]]] = ...) -> None: ...

class ListAgentsResponse(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[AgentInfo]
    def __init__(self, agents: _Optional[_Iterable[_Union[AgentInfo, _Mapping]]] = ...) -> None: ...

class GetAgentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class StepRequest(_message.Message):
    __slots__ = ("ticks",)
    TICKS_FIELD_NUMBER: _ClassVar[int]
    ticks: int
    def __init__(self, ticks: _Optional[int] = ...) -> None: ...

class RunUntilRequest(_message.Message):
    __slots__ = ("until_tick", "until_idle", "max_ticks", "progress_every")
    UNTIL_TICK_FIELD_NUMBER: _ClassVar[int]
    UNTIL_IDLE_FIELD_NUMBER: _ClassVar[int]
    MAX_TICKS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_EVERY_FIELD_NUMBER: _ClassVar[int]
    until_tick: int
    until_idle: bool
    max_ticks: int
    progress_every: int
    def __init__(self, until_tick: _Optional[int] = ..., until_idle: _Optional[bool] = ..., max_ticks: _Optional[int] = ..., progress_every: _Optional[int] = ...) -> None: ...

class RunCounters(_message.Message):
    __slots__ = ("steps", "messages", "undeliverable", "faults", "restarts", "inferences", "fuel_used")
    STEPS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    UNDELIVERABLE_FIELD_NUMBER: _ClassVar[int]
    FAULTS_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    INFERENCES_FIELD_NUMBER: _ClassVar[int]
    FUEL_USED_FIELD_NUMBER: _ClassVar[int]
    steps: int
    messages: int
    undeliverable: int
    faults: int
    restarts: int
    inferences: int
    fuel_used: int
    def __init__(self, steps: _Optional[int] = ..., messages: _Optional[int] = ..., undeliverable: _Optional[int] = ..., faults: _Optional[int] = ..., restarts: _Optional[int] = ..., inferences: _Optional[int] = ..., fuel_used: _Optional[int] = ...) -> None: ...

class RunStatus(_message.Message):
    __slots__ = ("run_id", "tick", "digest", "agents_by_state", "counters", "config", "pools", "idle")
    class AgentsByStateEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TICK_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    AGENTS_BY_STATE_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    IDLE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    tick: int
    digest: bytes
    agents_by_state: _containers.ScalarMap[str, int]
    counters: RunCounters
    config: RunConfig
    pools: _containers.RepeatedScalarFieldContainer[str]
    idle: bool
    def __init__(self, run_id: _Optional[str] = ..., tick: _Optional[int] = ..., digest: _Optional[bytes] = ..., agents_by_state: _Optional[_Mapping[str, int]] = ..., counters: _Optional[_Union[RunCounters, _Mapping]] = ..., config: _Optional[_Union[RunConfig, _Mapping]] = ..., pools: _Optional[_Iterable[str]] = ..., idle: _Optional[bool] = ...) -> None: ...

class RunProgress(_message.Message):
    __slots__ = ("status", "done", "reason")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    status: RunStatus
    done: bool
    reason: str
    def __init__(self, status: _Optional[_Union[RunStatus, _Mapping]] = ..., done: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetDigestsRequest(_message.Message):
    __slots__ = ("from_tick", "to_tick")
    FROM_TICK_FIELD_NUMBER: _ClassVar[int]
    TO_TICK_FIELD_NUMBER: _ClassVar[int]
    from_tick: int
    to_tick: int
    def __init__(self, from_tick: _Optional[int] = ..., to_tick: _Optional[int] = ...) -> None: ...

class GetDigestsResponse(_message.Message):
    __slots__ = ("digests",)
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    digests: _containers.RepeatedCompositeFieldContainer[_common_pb2.TickDigest]
    def __init__(self, digests: _Optional[_Iterable[_Union[_common_pb2.TickDigest, _Mapping]]] = ...) -> None: ...

class CreateCheckpointRequest(_message.Message):
    __slots__ = ("label",)
    LABEL_FIELD_NUMBER: _ClassVar[int]
    label: str
    def __init__(self, label: _Optional[str] = ...) -> None: ...

class CheckpointInfo(_message.Message):
    __slots__ = ("id", "tick", "digest", "size")
    ID_FIELD_NUMBER: _ClassVar[int]
    TICK_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    id: str
    tick: int
    digest: bytes
    size: int
    def __init__(self, id: _Optional[str] = ..., tick: _Optional[int] = ..., digest: _Optional[bytes] = ..., size: _Optional[int] = ...) -> None: ...

class RestoreCheckpointRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class JournalEntry(_message.Message):
    __slots__ = ("tick", "kind", "payload")
    TICK_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    tick: int
    kind: str
    payload: bytes
    def __init__(self, tick: _Optional[int] = ..., kind: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class ReplayRequest(_message.Message):
    __slots__ = ("run_id", "entries", "verify_inference", "progress_every", "trace_messages", "trace_from_tick", "trace_to_tick")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    VERIFY_INFERENCE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_EVERY_FIELD_NUMBER: _ClassVar[int]
    TRACE_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TRACE_FROM_TICK_FIELD_NUMBER: _ClassVar[int]
    TRACE_TO_TICK_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    entries: _containers.RepeatedCompositeFieldContainer[JournalEntry]
    verify_inference: bool
    progress_every: int
    trace_messages: bool
    trace_from_tick: int
    trace_to_tick: int
    def __init__(self, run_id: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[JournalEntry, _Mapping]]] = ..., verify_inference: _Optional[bool] = ..., progress_every: _Optional[int] = ..., trace_messages: _Optional[bool] = ..., trace_from_tick: _Optional[int] = ..., trace_to_tick: _Optional[int] = ...) -> None: ...

class DeliveredMessage(_message.Message):
    __slots__ = ("tick", "receiver", "sender", "kind", "send_tick", "destination", "correlation", "payload")
    TICK_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SEND_TICK_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    tick: int
    receiver: str
    sender: str
    kind: int
    send_tick: int
    destination: str
    correlation: int
    payload: bytes
    def __init__(self, tick: _Optional[int] = ..., receiver: _Optional[str] = ..., sender: _Optional[str] = ..., kind: _Optional[int] = ..., send_tick: _Optional[int] = ..., destination: _Optional[str] = ..., correlation: _Optional[int] = ..., payload: _Optional[bytes] = ...) -> None: ...

class ReplayProgress(_message.Message):
    __slots__ = ("tick", "total_ticks", "done", "ok", "divergent_tick", "divergent_agent", "detail", "replay_run_id", "messages")
    TICK_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TICKS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    DIVERGENT_TICK_FIELD_NUMBER: _ClassVar[int]
    DIVERGENT_AGENT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    REPLAY_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    tick: int
    total_ticks: int
    done: bool
    ok: bool
    divergent_tick: int
    divergent_agent: str
    detail: str
    replay_run_id: str
    messages: _containers.RepeatedCompositeFieldContainer[DeliveredMessage]
    def __init__(self, tick: _Optional[int] = ..., total_ticks: _Optional[int] = ..., done: _Optional[bool] = ..., ok: _Optional[bool] = ..., divergent_tick: _Optional[int] = ..., divergent_agent: _Optional[str] = ..., detail: _Optional[str] = ..., replay_run_id: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[DeliveredMessage, _Mapping]]] = ...) -> None: ...
