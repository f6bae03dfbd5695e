from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FaultKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAULT_KIND_UNSPECIFIED: _ClassVar[FaultKind]
    FAULT_KIND_TRAP: _ClassVar[FaultKind]
    FAULT_KIND_FUEL_EXHAUSTED: _ClassVar[FaultKind]
    FAULT_KIND_MEMORY_LIMIT: _ClassVar[FaultKind]
    FAULT_KIND_STACK_OVERFLOW: _ClassVar[FaultKind]
    FAULT_KIND_BAD_POINTER: _ClassVar[FaultKind]
    FAULT_KIND_ABI_VIOLATION: _ClassVar[FaultKind]
    FAULT_KIND_ERROR_CODE: _ClassVar[FaultKind]
    FAULT_KIND_MALFORMED_MODULE: _ClassVar[FaultKind]
    FAULT_KIND_POOL_LOST: _ClassVar[FaultKind]
FAULT_KIND_UNSPECIFIED: FaultKind
FAULT_KIND_TRAP: FaultKind
FAULT_KIND_FUEL_EXHAUSTED: FaultKind
FAULT_KIND_MEMORY_LIMIT: FaultKind
FAULT_KIND_STACK_OVERFLOW: FaultKind
FAULT_KIND_BAD_POINTER: FaultKind
FAULT_KIND_ABI_VIOLATION: FaultKind
FAULT_KIND_ERROR_CODE: FaultKind
FAULT_KIND_MALFORMED_MODULE: FaultKind
FAULT_KIND_POOL_LOST: FaultKind

class Limits(_message.Message):
    __slots__ = ("fuel_per_step", "max_memory_pages", "max_messages_per_step", "max_message_bytes", "max_logs_per_step")
    FUEL_PER_STEP_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMORY_PAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGES_PER_STEP_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_LOGS_PER_STEP_FIELD_NUMBER: _ClassVar[int]
    fuel_per_step: int
    max_memory_pages: int
    max_messages_per_step: int
    max_message_bytes: int
    max_logs_per_step: int
    def __init__(self, fuel_per_step: _Optional[int] = ..., max_memory_pages: _Optional[int] = ..., max_messages_per_step: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_logs_per_step: _Optional[int] = ...) -> None: ...

class Fault(_message.Message):
    __slots__ = ("kind", "detail", "entry_point")
    KIND_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ENTRY_POINT_FIELD_NUMBER: _ClassVar[int]
    kind: FaultKind
    detail: str
    entry_point: str
    def __init__(self, kind: _Optional[_Union[FaultKind, str]] = ..., detail: _Optional[str] = ..., entry_point: _Optional[str] = ...) -> None: ...

class LogRecord(_message.Message):
    __slots__ = ("level", "text")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    level: int
    text: str
    def __init__(self, level: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class TickDigest(_message.Message):
    __slots__ = ("tick", "digest")
    TICK_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    tick: int
    digest: bytes
    def __init__(self, tick: _Optional[int] = ..., digest: _Optional[bytes] = ...) -> None: ...

class InferCall(_message.Message):
    __slots__ = ("request_id", "model", "input")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    model: str
    input: bytes
    def __init__(self, request_id: _Optional[int] = ..., model: _Optional[str] = ..., input: _Optional[bytes] = ...) -> None: ...
