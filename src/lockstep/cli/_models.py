"""`lockstep models prepare | list | load | unload | generate`: the inference service's models.

The service is found through the supervisor's state file, or --address / --token (env
LOCKSTEP_INFERENCE_ADDRESS / LOCKSTEP_TOKEN).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import grpc
import typer
from rich.console import Console
from rich.table import Table

from lockstep.auth import Role
from lockstep.cli._app import app
from lockstep.cli._context import StateDirOption, connect, fail, state_dir
from lockstep.errors import LockstepError
from lockstep.pb.inference.v1 import inference_pb2 as pb
from lockstep.pb.inference.v1 import inference_pb2_grpc as pb_grpc

models_app = typer.Typer(
    help="Models of the inference service: prepare, list, load, unload, generate.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")
console = Console()

AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="inference service address [env LOCKSTEP_INFERENCE_ADDRESS, else the state file]",
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", help="bearer token [env LOCKSTEP_TOKEN, else the state directory's tokens]"
    ),
]


def _stub(
    role: Role, sd: Path | None, address: str | None, token: str | None
) -> pb_grpc.InferenceServiceStub:
    try:
        return pb_grpc.InferenceServiceStub(connect("inference", role, sd, address, token))
    except LockstepError as exc:
        raise fail(exc) from None


def _rpc_fail(exc: grpc.RpcError) -> typer.Exit:
    return fail(f"{exc.code().name}: {exc.details()}")


@models_app.command("prepare")
def prepare(
    repository: Annotated[
        Path | None,
        typer.Option(
            "--repository",
            help="model repository [env LOCKSTEP_MODEL_REPOSITORY, else <state dir>/data/models]",
        ),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="only these (charlm, minilm, smollm2); repeatable"),
    ] = None,
    state_dir_opt: StateDirOption = None,
) -> None:
    """Convert/copy the real models from installed packages into the model repository."""
    try:
        from lockstep_inference import default_repository, prepare_models
    except ImportError:
        raise fail(
            "the inference service package is not installed (pip install -e services/inference)"
        ) from None
    if repository is None:
        repository = (
            default_repository()
            if state_dir_opt is None
            else state_dir(state_dir_opt) / "data" / "models"
        )
    try:
        done = prepare_models(
            repository, model or None, progress=lambda msg: typer.echo(msg, err=True)
        )
    except LockstepError as exc:
        raise fail(exc) from None
    for m in done:
        typer.echo(f"{m.name:8} {m.kind:10} {m.version}  {m.path}  (from {m.source})")


@models_app.command("list")
def list_models(
    state_dir_opt: StateDirOption = None, address: AddressOption = None, token: TokenOption = None
) -> None:
    """Models in the repository and the cache."""
    stub = _stub(Role.VIEWER, state_dir_opt, address, token)
    try:
        resp = stub.ListModels(pb.ListModelsRequest())
    except grpc.RpcError as exc:
        raise _rpc_fail(exc) from None
    table = Table(title=f"models (cache {resp.cache_used_bytes} / {resp.cache_budget_bytes} bytes)")
    for col in ("name", "kind", "loaded", "version", "provider", "bytes", "requests", "reason"):
        table.add_column(col)
    for m in resp.models:
        table.add_row(
            m.name,
            m.kind,
            "yes" if m.loaded else "no",
            m.version[:23],
            m.provider,
            str(m.charged_bytes or ""),
            str(m.requests),
            m.reason,
        )
    console.print(table)


@models_app.command("load")
def load(
    name: str,
    state_dir_opt: StateDirOption = None,
    address: AddressOption = None,
    token: TokenOption = None,
) -> None:
    """Load a model (admin)."""
    stub = _stub(Role.ADMIN, state_dir_opt, address, token)
    try:
        info = stub.LoadModel(pb.LoadModelRequest(name=name))
    except grpc.RpcError as exc:
        raise _rpc_fail(exc) from None
    typer.echo(
        f"loaded {info.name} {info.version} on {info.provider} ({info.charged_bytes} bytes charged)"
    )


@models_app.command("unload")
def unload(
    name: str,
    state_dir_opt: StateDirOption = None,
    address: AddressOption = None,
    token: TokenOption = None,
) -> None:
    """Unload a model (admin)."""
    stub = _stub(Role.ADMIN, state_dir_opt, address, token)
    try:
        resp = stub.UnloadModel(pb.UnloadModelRequest(name=name))
    except grpc.RpcError as exc:
        raise _rpc_fail(exc) from None
    typer.echo(
        f"unloaded {name} ({resp.released_bytes} bytes released)"
        if resp.was_loaded
        else f"{name} was not loaded"
    )


@models_app.command("generate")
def generate(
    model: str,
    prompt: Annotated[str, typer.Argument()] = "",
    max_tokens: Annotated[int, typer.Option(help="tokens at most")] = 32,
    temperature: Annotated[float, typer.Option(help="0 = greedy")] = 1.0,
    top_k: Annotated[int, typer.Option(help="0 = off")] = 0,
    top_p: Annotated[float, typer.Option(help="1 = off")] = 1.0,
    seed: Annotated[int, typer.Option(help="draw stream seed")] = 0,
    stop: Annotated[
        list[str] | None, typer.Option("--stop", help="llm models: stop sequence; repeatable")
    ] = None,
    chat: Annotated[
        bool,
        typer.Option(
            "--chat/--raw",
            help="llm models: the prompt is a user message of a chat (default) "
            "or raw text to continue",
        ),
    ] = True,
    stream: Annotated[bool, typer.Option(help="print tokens as they come")] = False,
    log_json: Annotated[bool, typer.Option("--json", help="print the full log as JSON")] = False,
    state_dir_opt: StateDirOption = None,
    address: AddressOption = None,
    token: TokenOption = None,
) -> None:
    """Generate text with the service's seeded sampler (operator)."""
    stub = _stub(Role.OPERATOR, state_dir_opt, address, token)
    req = pb.GenerateRequest(
        model=model,
        prompt=prompt,
        chat=chat,
        params=pb.SamplingParams(
            max_tokens=max_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            stop=stop or [],
        ),
    )
    try:
        if stream:
            resp = None
            for event in stub.GenerateStream(req):
                if event.HasField("step"):
                    typer.echo(event.step.text, nl=False)
                else:
                    resp = event.done
            typer.echo()
        else:
            resp = stub.Generate(req)
    except grpc.RpcError as exc:
        raise _rpc_fail(exc) from None
    if resp is None:
        raise fail("stream ended without a result")
    if log_json:
        from google.protobuf.json_format import MessageToDict

        typer.echo(json.dumps(MessageToDict(resp), indent=2, sort_keys=True))
    elif not stream:
        typer.echo(resp.text if resp.log.messages else prompt + resp.text)
    typer.echo(
        f"({resp.log.finish_reason}, {len(resp.tokens)} tokens, "
        f"{resp.log.run_info.provider}, {resp.log.model_version[:23]})",
        err=True,
    )
