"""docs/services.md shows every service's settings exactly as their fields define them."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def settings_doc() -> ModuleType:
    spec = importlib.util.spec_from_file_location("settings_doc", ROOT / "tools/settings_doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_settings_tables_match_the_fields() -> None:
    tool = settings_doc()
    text = tool.DOC.read_text()
    assert tool.blocks(text) == [
        "lockstep.server.ServeConfig",
        "lockstep_orchestrator.OrchestratorConfig",
        "lockstep_wasm_pool.WasmPoolConfig",
        "lockstep_inference.InferenceConfig",
        "lockstep_telemetry.TelemetryConfig",
        "lockstep_dashboard.DashboardServeConfig",
        "lockstep_dashboard.DashboardConfig",
    ]
    assert tool.render(text) == text, "docs/services.md is stale: run tools/settings_doc.py"
