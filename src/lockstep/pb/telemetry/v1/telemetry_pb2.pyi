from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChainFault(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHAIN_FAULT_UNSPECIFIED: _ClassVar[ChainFault]
    CHAIN_FAULT_HASH_MISMATCH: _ClassVar[ChainFault]
    CHAIN_FAULT_SEQUENCE_GAP: _ClassVar[ChainFault]
    CHAIN_FAULT_ANCHOR_MISMATCH: _ClassVar[ChainFault]
    CHAIN_FAULT_TRUNCATED: _ClassVar[ChainFault]
    CHAIN_FAULT_MALFORMED: _ClassVar[ChainFault]
CHAIN_FAULT_UNSPECIFIED: ChainFault
CHAIN_FAULT_HASH_MISMATCH: ChainFault
CHAIN_FAULT_SEQUENCE_GAP: ChainFault
CHAIN_FAULT_ANCHOR_MISMATCH: ChainFault
CHAIN_FAULT_TRUNCATED: ChainFault
CHAIN_FAULT_MALFORMED: ChainFault

class Record(_message.Message):
    __slots__ = ("tick", "kind", "payload", "content_type")
    TICK_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    tick: int
    kind: str
    payload: bytes
    content_type: str
    def __init__(self, tick: _Optional[int] = ..., kind: _Optional[str] = ..., payload: _Optional[bytes] = ..., content_type: _Optional[str] = ...) -> None: ...

class AppendRecordsRequest(_message.Message):
    __slots__ = ("run_id", "records", "batch_id", "expected_next_sequence")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_NEXT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    records: _containers.RepeatedCompositeFieldContainer[Record]
    batch_id: str
    expected_next_sequence: int
    def __init__(self, run_id: _Optional[str] = ..., records: _Optional[_Iterable[_Union[Record, _Mapping]]] = ..., batch_id: _Optional[str] = ..., expected_next_sequence: _Optional[int] = ...) -> None: ...

class ChainHead(_message.Message):
    __slots__ = ("sequence", "hash")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    hash: bytes
    def __init__(self, sequence: _Optional[int] = ..., hash: _Optional[bytes] = ...) -> None: ...

class AppendRecordsResponse(_message.Message):
    __slots__ = ("first_sequence", "count", "head", "duplicate")
    FIRST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    first_sequence: int
    count: int
    head: ChainHead
    duplicate: bool
    def __init__(self, first_sequence: _Optional[int] = ..., count: _Optional[int] = ..., head: _Optional[_Union[ChainHead, _Mapping]] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class GetHeadRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetHeadResponse(_message.Message):
    __slots__ = ("head", "record_format")
    HEAD_FIELD_NUMBER: _ClassVar[int]
    RECORD_FORMAT_FIELD_NUMBER: _ClassVar[int]
    head: ChainHead
    record_format: int
    def __init__(self, head: _Optional[_Union[ChainHead, _Mapping]] = ..., record_format: _Optional[int] = ...) -> None: ...

class StoredRecord(_message.Message):
    __slots__ = ("sequence", "run_id", "tick", "kind", "content_type", "payload", "hash")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TICK_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    run_id: str
    tick: int
    kind: str
    content_type: str
    payload: bytes
    hash: bytes
    def __init__(self, sequence: _Optional[int] = ..., run_id: _Optional[str] = ..., tick: _Optional[int] = ..., kind: _Optional[str] = ..., content_type: _Optional[str] = ..., payload: _Optional[bytes] = ..., hash: _Optional[bytes] = ...) -> None: ...

class RecordBatch(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[StoredRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[StoredRecord, _Mapping]]] = ...) -> None: ...

class QueryRecordsRequest(_message.Message):
    __slots__ = ("run_id", "kinds", "from_tick", "to_tick", "from_sequence", "to_sequence", "limit")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    FROM_TICK_FIELD_NUMBER: _ClassVar[int]
    TO_TICK_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TO_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    kinds: _containers.RepeatedScalarFieldContainer[str]
    from_tick: int
    to_tick: int
    from_sequence: int
    to_sequence: int
    limit: int
    def __init__(self, run_id: _Optional[str] = ..., kinds: _Optional[_Iterable[str]] = ..., from_tick: _Optional[int] = ..., to_tick: _Optional[int] = ..., from_sequence: _Optional[int] = ..., to_sequence: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class FollowRecordsRequest(_message.Message):
    __slots__ = ("from_sequence", "run_id", "kinds")
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    from_sequence: int
    run_id: str
    kinds: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, from_sequence: _Optional[int] = ..., run_id: _Optional[str] = ..., kinds: _Optional[_Iterable[str]] = ...) -> None: ...

class VerifyChainRequest(_message.Message):
    __slots__ = ("from_sequence", "to_sequence", "expected_hash")
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TO_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_HASH_FIELD_NUMBER: _ClassVar[int]
    from_sequence: int
    to_sequence: int
    expected_hash: bytes
    def __init__(self, from_sequence: _Optional[int] = ..., to_sequence: _Optional[int] = ..., expected_hash: _Optional[bytes] = ...) -> None: ...

class VerifyChainResponse(_message.Message):
    __slots__ = ("ok", "from_sequence", "to_sequence", "records_checked", "hash", "first_bad_sequence", "fault", "reason")
    OK_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TO_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RECORDS_CHECKED_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    FIRST_BAD_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    FAULT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    from_sequence: int
    to_sequence: int
    records_checked: int
    hash: bytes
    first_bad_sequence: int
    fault: ChainFault
    reason: str
    def __init__(self, ok: _Optional[bool] = ..., from_sequence: _Optional[int] = ..., to_sequence: _Optional[int] = ..., records_checked: _Optional[int] = ..., hash: _Optional[bytes] = ..., first_bad_sequence: _Optional[int] = ..., fault: _Optional[_Union[ChainFault, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class RunSummary(_message.Message):
    __slots__ = ("run_id", "first_sequence", "last_sequence", "record_count", "min_tick", "max_tick")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    MIN_TICK_FIELD_NUMBER: _ClassVar[int]
    MAX_TICK_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    first_sequence: int
    last_sequence: int
    record_count: int
    min_tick: int
    max_tick: int
    def __init__(self, run_id: _Optional[str] = ..., first_sequence: _Optional[int] = ..., last_sequence: _Optional[int] = ..., record_count: _Optional[int] = ..., min_tick: _Optional[int] = ..., max_tick: _Optional[int] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[RunSummary]
    def __init__(self, runs: _Optional[_Iterable[_Union[RunSummary, _Mapping]]] = ...) -> None: ...
