"""Credentials and roles.

Every call carries ``authorization: Bearer <token>``. A token file maps each role to one
token; services load it at start-up and enforce roles server-side. Health checking and
server reflection need no credential, so probes and ``grpcurl list`` work.
"""

from __future__ import annotations

import enum
import json
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from lockstep.errors import ConfigError

__all__ = [
    "ADMIN_ONLY",
    "OPERATOR",
    "SERVICE",
    "VIEWER",
    "AuthInterceptor",
    "Role",
    "TokenStore",
    "bearer_metadata",
    "write_token_file",
]

METADATA_KEY = "authorization"
# Health, reflection and the KServe liveness/readiness probes need no credential (container
# and Kubernetes probes carry none); everything else is role-checked.
PUBLIC_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
    "/inference.GRPCInferenceService/ServerLive",
    "/inference.GRPCInferenceService/ServerReady",
)


class Role(enum.Enum):
    """Who is calling. Admin may do anything; the service role is the orchestrator's identity."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"
    SERVICE = "service"


# Allowed-role sets used in each service's method table.
VIEWER = frozenset({Role.VIEWER, Role.OPERATOR, Role.ADMIN, Role.SERVICE})
OPERATOR = frozenset({Role.OPERATOR, Role.ADMIN})
ADMIN_ONLY = frozenset({Role.ADMIN})
SERVICE = frozenset({Role.SERVICE, Role.ADMIN})


@dataclass(frozen=True)
class TokenStore:
    """Role -> token, loaded once from a JSON file ``{"admin": "...", ...}``."""

    tokens: Mapping[Role, str]

    @classmethod
    def load(cls, path: Path) -> TokenStore:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"auth file {path} does not exist") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"auth file {path} is unreadable: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"auth file {path} must hold a JSON object of role -> token")
        tokens: dict[Role, str] = {}
        for key, value in raw.items():
            try:
                role = Role(key)
            except ValueError:
                raise ConfigError(f"auth file {path}: unknown role {key!r}") from None
            if not isinstance(value, str) or len(value) < 16:
                raise ConfigError(f"auth file {path}: token for {key!r} must be >= 16 chars")
            tokens[role] = value
        return cls(tokens)

    def role_of(self, token: str) -> Role | None:
        for role, value in self.tokens.items():
            if secrets.compare_digest(value, token):
                return role
        return None

    def token(self, role: Role) -> str:
        try:
            return self.tokens[role]
        except KeyError:
            raise ConfigError(f"no token for role {role.value!r} in the auth file") from None


def write_token_file(path: Path) -> TokenStore:
    """Create a token file with a fresh random token per role, readable by the owner only."""
    store = TokenStore({role: secrets.token_urlsafe(32) for role in Role})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({role.value: tok for role, tok in store.tokens.items()}, fh, indent=2)
    return store


def bearer_metadata(token: str) -> tuple[tuple[str, str]]:
    """Metadata for one call."""
    return ((METADATA_KEY, f"Bearer {token}"),)


def _aborting_handler(handler: Any, code: grpc.StatusCode, detail: str) -> Any:
    def abort(_request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, detail)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)


class AuthInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Rejects calls whose credential's role is not in the method's allowed set.

    ``methods`` maps full method names ("/pkg.Service/Method") to allowed roles; a method
    missing from the table is refused (fail closed).
    """

    def __init__(self, store: TokenStore, methods: Mapping[str, frozenset[Role]]) -> None:
        self._store = store
        self._methods = dict(methods)

    def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        method: str = details.method
        handler = continuation(details)
        if handler is None or method.startswith(PUBLIC_SERVICES):
            return handler
        allowed = self._methods.get(method)
        if allowed is None:
            return _aborting_handler(
                handler, grpc.StatusCode.PERMISSION_DENIED, f"{method} has no role policy"
            )
        token = ""
        for key, value in details.invocation_metadata or ():
            if key == METADATA_KEY and isinstance(value, str) and value.startswith("Bearer "):
                token = value[len("Bearer ") :]
        if not token:
            return _aborting_handler(
                handler,
                grpc.StatusCode.UNAUTHENTICATED,
                "missing credential: send 'authorization: Bearer <token>'",
            )
        role = self._store.role_of(token)
        if role is None:
            return _aborting_handler(handler, grpc.StatusCode.UNAUTHENTICATED, "unknown token")
        if role not in allowed:
            need = ", ".join(sorted(r.value for r in allowed))
            return _aborting_handler(
                handler,
                grpc.StatusCode.PERMISSION_DENIED,
                f"role {role.value!r} may not call {method} (needs one of: {need})",
            )
        return handler
