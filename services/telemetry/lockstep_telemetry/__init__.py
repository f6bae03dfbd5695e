"""The Lockstep telemetry service: a durable, append-only, hash-chained journal store.

Records (run journal entries and events) are kept in SQLite (WAL) with a global sequence
number and a hash chain ``h_n = SHA-256(h_{n-1} || record_n)``; see docs/telemetry.md for
the record encoding, the API and the metrics. Clients use ``lockstep.telemetry_client``.
"""

from lockstep_telemetry._chain import GENESIS, RECORD_FORMAT, chain_hash, encode_record
from lockstep_telemetry._config import TelemetryConfig
from lockstep_telemetry._service import ROLE_TABLE, SERVICE_NAME, TelemetryServicer, create_server
from lockstep_telemetry._store import Store, StoreError, VerifyResult

__all__ = [
    "GENESIS",
    "RECORD_FORMAT",
    "ROLE_TABLE",
    "SERVICE_NAME",
    "Store",
    "StoreError",
    "TelemetryConfig",
    "TelemetryServicer",
    "VerifyResult",
    "chain_hash",
    "create_server",
    "encode_record",
]
