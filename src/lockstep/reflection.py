"""Server reflection, v1 and v1alpha, serving the protos *with their comments*.

The generated ``*_pb2`` modules carry descriptors without source information, so plain
reflection gives grpcurl, Postman or a Node.js client the types but not the documentation.
``tools/protogen.py`` also writes ``lockstep/protos.binpb``, a FileDescriptorSet with
source info (comments); the files it holds are served from it, any other (the health
proto) from the default descriptor pool. ``grpc.reflection.v1.ServerReflection`` is served
by the same servicer: its messages are the v1alpha ones under another package name.
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

__all__ = ["V1_SERVICE_NAME", "commented_files", "enable_reflection"]

log = logging.getLogger("lockstep.reflection")
V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
DESCRIPTOR_SET = "protos.binpb"


@functools.cache
def commented_files() -> dict[str, bytes]:
    """File name -> serialized FileDescriptorProto with comments ({} when not generated)."""
    try:
        data = importlib.resources.files("lockstep").joinpath(DESCRIPTOR_SET).read_bytes()
    except (FileNotFoundError, OSError):
        log.warning(
            "lockstep/%s missing: reflection serves the protos without comments", DESCRIPTOR_SET
        )
        return {}
    files = descriptor_pb2.FileDescriptorSet.FromString(data).file
    return {f.name: f.SerializeToString() for f in files}


class _CommentedReflection(reflection.ReflectionServicer):
    def _response(self, descriptor: Any, request: Any) -> Any:
        seen: dict[str, Any] = {}
        todo = [descriptor]
        while todo:
            d = todo.pop()
            if d.name not in seen:
                seen[d.name] = d
                todo.extend(d.dependencies)
        commented = commented_files()
        out = []
        for name, d in seen.items():
            if name in commented:
                out.append(commented[name])
            else:
                proto = descriptor_pb2.FileDescriptorProto()
                d.CopyToProto(proto)
                out.append(proto.SerializeToString())
        return reflection_pb2.ServerReflectionResponse(
            file_descriptor_response=reflection_pb2.FileDescriptorResponse(
                file_descriptor_proto=out
            ),
            original_request=request,
        )

    @staticmethod
    def _not_found(request: Any) -> Any:
        return reflection_pb2.ServerReflectionResponse(
            error_response=reflection_pb2.ErrorResponse(
                error_code=grpc.StatusCode.NOT_FOUND.value[0], error_message="not found"
            ),
            original_request=request,
        )

    def _file_by_filename(self, request: Any, filename: str) -> Any:
        try:
            return self._response(self._pool.FindFileByName(filename), request)
        except KeyError:
            return self._not_found(request)

    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        try:
            return self._response(
                self._pool.FindFileContainingSymbol(fully_qualified_name), request
            )
        except KeyError:
            return self._not_found(request)


def enable_reflection(service_names: Sequence[str], server: grpc.Server) -> None:
    """Serve reflection v1alpha and v1 for `service_names` (both reflection services are
    added to the list)."""
    names = [*service_names, reflection.SERVICE_NAME, V1_SERVICE_NAME]
    servicer = _CommentedReflection(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.method_handlers_generic_handler(
        V1_SERVICE_NAME,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            ),
        },
    )
    server.add_generic_rpc_handlers((v1,))
