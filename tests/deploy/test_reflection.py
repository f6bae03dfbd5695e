"""Server reflection as grpcurl and other-language clients see it: v1 and v1alpha, the
protos with their comments, the language package options in every proto."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from lockstep.auth import TokenStore
from lockstep.dial import open_channel
from lockstep.reflection import V1_SERVICE_NAME, commented_files
from lockstep_wasm_pool import create_server

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
POOL_SERVICE = "lockstep.wasm_pool.v1.WasmPoolService"
PATHS = {
    "v1alpha": "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "v1": f"/{V1_SERVICE_NAME}/ServerReflectionInfo",
}


@pytest.fixture(scope="module")
def address(auth: tuple[Path, TokenStore]) -> Iterator[str]:
    bound = create_server("127.0.0.1:0", auth=auth[1])
    try:
        yield bound.address
    finally:
        bound.stop(0)


def ask(address: str, version: str, **request: str) -> reflection_pb2.ServerReflectionResponse:
    with open_channel(address) as channel:
        call = channel.stream_stream(
            PATHS[version],
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        (reply,) = list(call(iter([reflection_pb2.ServerReflectionRequest(**request)]), timeout=10))
        return reply


@pytest.mark.parametrize("version", PATHS)
def test_reflection_lists_services_without_a_credential(address: str, version: str) -> None:
    reply = ask(address, version, list_services="")
    names = {s.name for s in reply.list_services_response.service}
    assert {
        POOL_SERVICE,
        "grpc.health.v1.Health",
        V1_SERVICE_NAME,
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names


@pytest.mark.parametrize("version", PATHS)
def test_reflection_serves_the_protos_with_their_comments(address: str, version: str) -> None:
    reply = ask(address, version, file_containing_symbol=POOL_SERVICE)
    files = {
        f.name: f
        for f in map(
            descriptor_pb2.FileDescriptorProto.FromString,
            reply.file_descriptor_response.file_descriptor_proto,
        )
    }
    # The pool's proto and what it imports, each with its comments.
    assert set(files) == {
        "lockstep/wasm_pool/v1/wasm_pool.proto",
        "lockstep/common/v1/common.proto",
    }
    pool = files["lockstep/wasm_pool/v1/wasm_pool.proto"]
    comments = " ".join(loc.leading_comments for loc in pool.source_code_info.location)
    assert "Runs agents in batches" in comments
    assert pool.options.go_package.endswith("/lockstep/wasm_pool/v1;wasmpoolv1")
    missing = ask(address, version, file_containing_symbol="no.such.Symbol")
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_every_proto_has_language_options_and_is_in_the_descriptor_set() -> None:
    protos = sorted((ROOT / "proto").rglob("*.proto"))
    assert set(commented_files()) == {str(p.relative_to(ROOT / "proto")) for p in protos}
    for path in protos:
        text = path.read_text()
        package = re.search(r"^package ([\w.]+);", text, re.M)
        assert package, path
        for option in ("go_package", "java_package", "csharp_namespace"):
            assert re.search(rf'^option {option} = "[^"]+";', text, re.M), (path, option)
        assert "option java_multiple_files = true;" in text, path
