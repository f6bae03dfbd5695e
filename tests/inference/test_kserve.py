"""KServe v2 API: with our own generated stubs, and with the real upstream client.

tritonclient[grpc] pins protobuf < 7 while Lockstep uses protobuf 7, so the upstream
client runs in its own virtual environment, created once under a cache directory
($LOCKSTEP_TEST_CACHE or ~/.cache/lockstep/test-venvs). Without registry access the test
is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from lockstep.auth import Role
from lockstep.dial import AuthedChannel
from lockstep.pb.kserve.v2 import grpc_predict_v2_pb2 as kpb
from lockstep.pb.kserve.v2 import grpc_predict_v2_pb2_grpc as kpb_grpc
from tests.inference.conftest import Server

pytestmark = pytest.mark.integration

TRITONCLIENT = "tritonclient[grpc]==2.73.0"


def kstub(server: Server, role: Role) -> kpb_grpc.GRPCInferenceServiceStub:
    return kpb_grpc.GRPCInferenceServiceStub(
        AuthedChannel(server.address, server.store.token(role))
    )


def test_kserve_with_generated_stubs(server: Server) -> None:
    viewer, op, admin = (kstub(server, r) for r in (Role.VIEWER, Role.OPERATOR, Role.ADMIN))
    assert viewer.ServerLive(kpb.ServerLiveRequest()).live
    # Probes need no credential.
    anonymous = kpb_grpc.GRPCInferenceServiceStub(AuthedChannel(server.address, None))
    assert anonymous.ServerLive(kpb.ServerLiveRequest()).live
    assert anonymous.ServerReady(kpb.ServerReadyRequest()).ready
    with pytest.raises(grpc.RpcError) as err:
        anonymous.ModelReady(kpb.ModelReadyRequest(name="tiny_add"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Auto-load is on: a model in the repository is ready (readiness loads it).
    assert viewer.ModelReady(kpb.ModelReadyRequest(name="tiny_add")).ready
    assert not viewer.ModelReady(kpb.ModelReadyRequest(name="no_such_model")).ready
    admin.RepositoryModelLoad(kpb.RepositoryModelLoadRequest(model_name="tiny_add"))
    assert viewer.ModelReady(kpb.ModelReadyRequest(name="tiny_add")).ready
    x = np.arange(8, dtype=np.float32)
    # Typed contents instead of raw bytes.
    req = kpb.ModelInferRequest(model_name="tiny_add", id="r1")
    req.inputs.add(name="x", datatype="FP32", shape=[2, 4]).contents.fp32_contents.extend(x)
    resp = op.ModelInfer(req)
    assert resp.id == "r1" and resp.outputs[0].name == "y"
    got = np.frombuffer(resp.raw_output_contents[0], "<f4")
    np.testing.assert_array_equal(got, x * 2 + 1)
    assert resp.parameters["lockstep_provider"].string_param == "CPUExecutionProvider"
    # Pinning another version is NOT_FOUND, pinning the real one works.
    req.model_version = "sha256:" + "0" * 64
    with pytest.raises(grpc.RpcError) as err:
        op.ModelInfer(req)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    req.model_version = resp.model_version
    op.ModelInfer(req)
    index = viewer.RepositoryIndex(kpb.RepositoryIndexRequest())
    states = {m.name: (m.state, m.reason) for m in index.models}
    assert states["tiny_add"][0] == "READY" and states["tiny_lm"] == ("UNAVAILABLE", "unloaded")
    ready_only = viewer.RepositoryIndex(kpb.RepositoryIndexRequest(ready=True))
    assert [m.name for m in ready_only.models] == ["tiny_add"]
    with pytest.raises(grpc.RpcError) as err:
        op.RepositoryModelUnload(kpb.RepositoryModelUnloadRequest(model_name="tiny_add"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    admin.RepositoryModelUnload(kpb.RepositoryModelUnloadRequest(model_name="tiny_add"))
    assert "tiny_add" not in {
        m.name for m in viewer.RepositoryIndex(kpb.RepositoryIndexRequest(ready=True)).models
    }
    # Still auto-loadable, so still ready for a call (readiness loads it again).
    assert viewer.ModelReady(kpb.ModelReadyRequest(name="tiny_add")).ready


def _triton_venv() -> Path:
    base = Path(os.environ.get("LOCKSTEP_TEST_CACHE", Path.home() / ".cache" / "lockstep"))
    venv = base / "test-venvs" / "tritonclient-2.73.0"
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    done = venv / ".complete"
    if done.exists() and py.exists():
        return py
    try:
        if not py.exists():
            subprocess.run(
                [sys.executable, "-m", "venv", str(venv)],
                check=True,
                capture_output=True,
                timeout=120,
            )
        proc = subprocess.run(
            [str(py), "-m", "pip", "install", "--quiet", TRITONCLIENT],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"cannot create the tritonclient venv in {venv}: {exc}")
    if proc.returncode != 0:
        pytest.skip(f"cannot install {TRITONCLIENT} (offline?): {proc.stderr.strip()[-300:]}")
    done.write_text(TRITONCLIENT)
    return py


def test_kserve_with_upstream_tritonclient(server: Server) -> None:
    py = _triton_venv()
    script = Path(__file__).with_name("triton_client_script.py")
    tokens = [server.store.token(r) for r in (Role.ADMIN, Role.OPERATOR, Role.VIEWER)]
    proc = subprocess.run(
        [str(py), str(script), server.address, *tokens], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["live"] and out["ready"] and out["model_ready"] and out["live_no_token"]
    assert out["server_name"] == "lockstep-inference"
    assert "model_repository" in out["extensions"]
    assert out["metadata"]["platform"] == "onnxruntime_onnx"
    assert out["metadata"]["versions"][0].startswith("sha256:")
    assert out["metadata"]["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "4"]}]
    assert out["y"] == (np.arange(8, dtype=np.float32).reshape(2, 4) * 2 + 1).tolist()
    assert out["model_version"] == out["metadata"]["versions"][0]
    assert out["provider"] == "CPUExecutionProvider"
    assert {m["name"] for m in out["index"]} >= {"tiny_add", "tiny_lm", "corrupt"}
    assert out["errors"] == {
        "viewer_infer": "StatusCode.PERMISSION_DENIED",
        "no_token": "StatusCode.UNAUTHENTICATED",
        "unknown_model": "StatusCode.NOT_FOUND",
        "operator_load": "StatusCode.PERMISSION_DENIED",
        "wrong_dtype": "StatusCode.INVALID_ARGUMENT",
    }
    assert out["ready_after_unload"] is True  # auto-load: still ready for a call
