"""`python -m lockstep_inference` as its own process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lockstep.auth import Role, TokenStore
from lockstep.pb.inference.v1 import inference_pb2 as pb
from lockstep.pb.inference.v1 import inference_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration


def test_process_serves_and_reports_cpu(
    service_factory: Any, auth: tuple[Path, TokenStore], model_repo: Path
) -> None:
    svc = service_factory(
        "lockstep_inference", auth[0], "--model-repo", str(model_repo), "--provider", "cuda"
    )
    stub = pb_grpc.InferenceServiceStub(svc.channel(auth[1], Role.VIEWER))
    info = stub.GetServerInfo(pb.GetServerInfoRequest())
    assert info.requested_provider == "cuda"
    assert info.model_repository == str(model_repo)
    names = [m.name for m in stub.ListModels(pb.ListModelsRequest()).models]
    assert {"tiny_add", "tiny_lm", "corrupt"} <= set(names)
    assert names == sorted(names)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--provider", "gpu"], "provider must be one of"),
        (["--cache-bytes", "0"], "cache_budget_bytes must be >= 1"),
        (["--intra-op-threads", "x"], "bad value 'x' for intra_op_threads (--intra-op-threads)"),
        (["--graph-optimization", "max"], "graph_optimization must be one of"),
    ],
)
def test_bad_configuration_exits_2(args: list[str], message: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lockstep_inference",
            "--insecure-no-auth",
            "--address",
            "127.0.0.1:0",
            "--model-repo",
            str(tmp_path),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert message in proc.stderr


def test_require_cuda_without_cuda_exits_2(tmp_path: Path) -> None:
    from tests.inference.test_engine import has_cuda

    if has_cuda():
        pytest.skip("this machine has a usable CUDA provider")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lockstep_inference",
            "--insecure-no-auth",
            "--address",
            "127.0.0.1:0",
            "--model-repo",
            str(tmp_path),
            "--provider",
            "require-cuda",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "CUDA required" in proc.stderr
