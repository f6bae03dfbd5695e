"""Every service follows one template: a config class whose every field is a documented
setting (lockstep.config), ``create_server(address, *, auth, config)`` returning the
shared BoundServer, ``__main__.main(argv)``, a ROLE_TABLE derived from the service's
descriptor, and port 0 by default."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any

import pytest

from lockstep.config import options
from lockstep.server import DEFAULT_ADDRESS, ServeConfig, service_parser

pytestmark = pytest.mark.unit

# package, config class, _service modules with (SERVICE_NAME, ROLE_TABLE) pairs
SERVICES = [
    ("lockstep_orchestrator", "OrchestratorConfig", [("_service", "")]),
    ("lockstep_wasm_pool", "WasmPoolConfig", [("_service", "")]),
    ("lockstep_inference", "InferenceConfig", [("_service", ""), ("_kserve", "KSERVE_")]),
    ("lockstep_telemetry", "TelemetryConfig", [("_service", "")]),
]


@pytest.mark.parametrize(("package", "config_name", "tables"), SERVICES)
def test_service_follows_the_template(
    package: str, config_name: str, tables: list[tuple[str, str]]
) -> None:
    pkg = importlib.import_module(package)
    config: Any = getattr(pkg, config_name)
    assert config_name in pkg.__all__ and "create_server" in pkg.__all__
    # Config: frozen, every field a documented setting with a flag and a variable.
    assert isinstance(config, type) and dataclasses.is_dataclass(config)
    assert config.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert [o.name for o in options(config)] == [f.name for f in dataclasses.fields(config)]
    assert all(o.help and o.env for o in options(config))
    # The server factory's one shape.
    params = inspect.signature(pkg.create_server).parameters
    assert list(params) == ["address", "auth", "config"]
    assert params["auth"].kind is params["config"].kind is inspect.Parameter.KEYWORD_ONLY
    # main(argv), and --help naming every setting of both groups.
    main = importlib.import_module(f"{package}.__main__").main
    assert list(inspect.signature(main).parameters) == ["argv"]
    help_text = service_parser(package.removeprefix("lockstep_"), config).format_help()
    for opt in [*options(ServeConfig), *options(config)]:
        assert opt.flag in help_text and (not opt.env or opt.env in help_text)
    # Role tables keyed by full method path, derived from the service descriptor.
    for module_name, prefix in tables:
        module = importlib.import_module(f"{package}.{module_name}")
        name, table = (
            getattr(module, prefix + "SERVICE_NAME"),
            getattr(module, prefix + "ROLE_TABLE"),
        )
        descriptor = module._SERVICE
        assert descriptor.full_name == name
        assert set(table) == {f"/{name}/{m.name}" for m in descriptor.methods}


def test_every_service_listens_on_port_0_by_default() -> None:
    assert DEFAULT_ADDRESS == "127.0.0.1:0" == ServeConfig().address
    assert dict((o.name, o.env) for o in options(ServeConfig))["address"] == "LOCKSTEP_LISTEN"


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    main = importlib.import_module("lockstep_wasm_pool.__main__").main
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    assert "--fuel-per-step" in capsys.readouterr().out
