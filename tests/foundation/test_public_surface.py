"""Each package's public surface, pinned (as httpx's test_exported_members does): a name
added to or dropped from an `__all__` fails here until the change is deliberate (and its
docs updated); every exported name exists and is documented."""

from __future__ import annotations

import importlib

import pytest

pytestmark = pytest.mark.unit

SURFACE = {'lockstep': ['Action', 'AgentGroup', 'AuthError', 'Checkpoint', 'Collector', 'ConfigError',
              'Deployment', 'DeterminismError', 'LockstepError', 'ModuleError', 'ReplayResult',
              'Run', 'RunDiff', 'RunStatus', 'Scenario', 'ServiceError', '__version__', 'diff',
              'export_run', 'gini', 'load_scenario', 'model_reporters', 'read_table',
              'scenario_from_dict', 'sweep'],
 'lockstep.abi': ['ABI_MAJOR', 'ABI_VERSION', 'BATCH_HEADER', 'CONTEXT_HEADER', 'EXPORTS',
                  'IMPORTS', 'IMPORT_MODULE', 'KIND_AGENT', 'KIND_EXTERNAL',
                  'KIND_INFER_ERROR', 'KIND_INFER_RESULT', 'KIND_UNDELIVERABLE',
                  'LS_ERR_BAD_ARG', 'LS_ERR_BAD_NAME', 'LS_ERR_QUOTA', 'LS_ERR_TOO_LARGE',
                  'OPTIONAL_EXPORTS', 'Problem', 'RANDOM_STREAM_BYTES', 'RECORD_HEADER',
                  'RandomStream', 'SEND_HEADER', 'batch_buffer', 'build_context',
                  'capabilities_for', 'capability_for', 'chacha20_keystream', 'check_abi',
                  'check_destination', 'covers', 'describe', 'hint_for', 'is_valid_model_name',
                  'is_valid_name', 'message_record', 'pack_send', 'problems', 'random_key',
                  'split_inbox', 'unpack_sends', 'valid_name'],
 'lockstep.api': ['AGENT_COLUMNS', 'Action', 'AgentGroup', 'Checkpoint', 'Collector',
                  'Deployment', 'JournalRecord', 'MESSAGE_COLUMNS', 'OBSERVE_LEVEL',
                  'ReplayResult', 'Run', 'RunDiff', 'RunStatus', 'Scenario', 'agent_digests',
                  'chrome_trace', 'decode_observation', 'diff', 'diff_records',
                  'encode_observation', 'export_run', 'gini', 'load_scenario',
                  'model_reporters', 'parse_seeds', 'read_table', 'scenario_from_dict',
                  'split_values', 'sweep', 'write_table'],
 'lockstep.batch': ['AgentSpec', 'BatchError', 'CREATE_ROW', 'CreateBatch', 'DestroyBatch',
                    'Fault', 'InferCall', 'LogLine', 'RESULT_ROW', 'Result', 'Results',
                    'STEP_ROW', 'StepBatch', 'VERSION', 'check_records', 'pack_create',
                    'pack_destroy', 'pack_results', 'pack_step', 'parse_create',
                    'parse_destroy', 'parse_results', 'parse_step', 'sends_of'],
 'lockstep.checkout': ['checkout_root', 'require_checkout'],
 'lockstep.client': ['AuthedChannel', 'health_status', 'open_channel', 'wait_serving'],
 'lockstep.errors': ['AbortedError', 'AlreadyExistsError', 'AuthError', 'CapacityError',
                     'ConfigError', 'DeterminismError', 'InvalidRequestError', 'LockstepError',
                     'ModuleError', 'NotFoundError', 'PreconditionError', 'ServiceError'],
 'lockstep.metrics': ['LATENCY_BUCKETS', 'MetricsEndpoint', 'RpcMetrics', 'service_registry'],
 'lockstep.otel': ['configure_otel', 'otel_requested', 'shutdown_otel'],
 'lockstep.server': ['BoundServer', 'ServiceBinding', 'build_server', 'parse_address',
                     'role_table', 'run_service'],
 'lockstep.status': ['ERRORS', 'abort', 'error_for', 'error_from', 'status_of'],
 'lockstep.telemetry_client': ['ChainHead', 'RecordBuffer', 'TelemetryClient',
                               'TelemetryRefusedError', 'TelemetryUnavailableError',
                               'make_record'],
 'lockstep.tick_channel': ['ChannelClient', 'ChannelClosedError', 'ChannelRefusedError',
                           'ChannelServer', 'METHODS', 'host_identity', 'supported'],
 'lockstep.tls': ['CLIENT_AUTH_MODES', 'DEFAULT_NAMES', 'TLSConfig', 'issue', 'make_ca',
                  'process_tls', 'set_process_tls'],
 'lockstep_dashboard': ['DashboardConfig', 'Source', 'SourceError', 'bind', 'create_app',
                        'read_viewer_token', 'serve'],
 'lockstep_inference': ['CacheFullError', 'InferenceConfig', 'InferenceEngine',
                        'InferenceError', 'InvalidInputError', 'ModelBusyError',
                        'ModelLoadError', 'ModelNotFoundError', 'OrtSession', 'PreparedModel',
                        'ProviderUnavailableError', 'ReplayMismatchError', 'TensorIn',
                        'TensorTooLargeError', 'VersionMismatchError', '__version__',
                        'create_server', 'default_repository', 'draw', 'prepare_models',
                        'seed_from_key'],
 'lockstep_orchestrator': ['OrchestratorConfig', 'OrchestratorServicer', 'create_server'],
 'lockstep_telemetry': ['GENESIS', 'RECORD_FORMAT', 'ROLES', 'SERVICE_NAME', 'Store',
                        'StoreError', 'TelemetryConfig', 'TelemetryServer', 'VerifyResult',
                        'chain_hash', 'create_server', 'encode_record', 'start_telemetry'],
 'lockstep_wasm_pool': ['AlreadyExistsError', 'InvalidRequestError', 'LimitReachedError',
                        'ModuleInfo', 'ModuleRejectedError', 'NotFoundError', 'PoolError',
                        'SERVICE_NAME', 'WasmPool', 'WasmPoolConfig', 'WasmPoolServicer',
                        'create_server', 'make_engine', 'open_pool', 'state_hash']}


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_public_surface_is_pinned(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == SURFACE[module]
    for name in mod.__all__:
        obj = getattr(mod, name)  # every exported name exists
        if callable(obj) and not name.isupper():
            assert (getattr(obj, "__doc__", None) or "").strip(), f"{module}.{name}"
