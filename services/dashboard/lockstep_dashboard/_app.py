"""The web application: GET-only routes rendering autoescaped Jinja2 templates.

Every agent-provided string (agent names, log text, spawn arguments, payloads) reaches the
page only through a template with autoescaping on, or as JSON the browser parses as data;
the Content-Security-Policy allows scripts from the dashboard itself only, so even an
escaping mistake could not run an inline script. Any method but GET (and HEAD, GET
without a body) is answered 405 before routing.

Endpoints are plain functions: Starlette runs them in its thread pool, since the gRPC
calls they make block.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import plotly
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from lockstep_dashboard import _views as views
from lockstep_dashboard._config import DashboardConfig
from lockstep_dashboard._source import Source, SourceError

__all__ = ["create_app"]

HERE = Path(__file__).resolve().parent
PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
ALLOWED_METHODS = ("GET", "HEAD")
# plotly.js sets inline styles on the elements it draws, hence 'unsafe-inline' for styles;
# scripts come from this origin only (no inline script, no eval).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ReadOnly:
    """ASGI middleware: 405 for any method but GET/HEAD (whatever the path), and the
    security headers on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        if scope["method"] not in ALLOWED_METHODS:
            response = PlainTextResponse(
                "405 Method Not Allowed: this dashboard is read-only (GET only)\n",
                status_code=405,
                headers={"Allow": ", ".join(ALLOWED_METHODS)},
            )
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def dash(value: Any) -> Any:
        return "—" if value is None or value == "" else value

    def num(value: Any) -> str:
        if value is None:
            return "—"
        if isinstance(value, float):
            return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    def short(value: Any, n: int = 12) -> str:
        text = "" if value is None else str(value)
        return text if len(text) <= n + 7 else text[: n + 7] + "…"

    env.filters.update(dash=dash, num=num, short=short)
    return env


def _int(request: Request, name: str, default: int | None = None, minimum: int = 0) -> int | None:
    raw = request.query_params.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPException(400, f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise HTTPException(400, f"{name} must be >= {minimum}")
    return value


def create_app(config: DashboardConfig, source: Source | None = None) -> ASGIApp:
    """The dashboard as an ASGI application reading from `source` (default: a new
    `Source(config)`, closed when the application shuts down)."""
    src = source if source is not None else Source(config)
    templates = Jinja2Templates(env=_environment())

    def render(request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> Response:
        def qs(**changes: Any) -> str:
            params = dict(request.query_params.multi_items())
            for key, value in changes.items():
                if value is None:
                    params.pop(key, None)
                else:
                    params[key] = str(value)
            pairs = [(k, v) for k, v in params.items() if v != ""]
            return "?" + urlencode(pairs) if pairs else "?"

        return templates.TemplateResponse(
            request, name, {**ctx, "qs": qs, "config": config}, status_code=status
        )

    def run_list(request: Request) -> Response:
        ctx = views.run_list(
            src,
            request.query_params.get("q", ""),
            request.query_params.get("status", ""),
            _int(request, "page", 1) or 1,
        )
        return render(request, "runs.html", ctx)

    def run_page(request: Request) -> Response:
        ctx = views.run_page(
            src, request.path_params["run_id"], _int(request, "from_tick"), _int(request, "to_tick")
        )
        return render(request, "run.html", ctx)

    def agents(request: Request) -> Response:
        p = request.query_params
        ctx = views.agents_page(
            src,
            request.path_params["run_id"],
            p.get("q", ""),
            p.get("sort", "sequence"),
            p.get("order", "asc"),
            _int(request, "page", 1) or 1,
        )
        return render(request, "agents.html", ctx)

    def agent(request: Request) -> Response:
        ctx = views.agent_page(
            src,
            request.path_params["run_id"],
            request.path_params["name"],
            _int(request, "from_tick"),
            _int(request, "to_tick"),
            _int(request, "page", 1) or 1,
        )
        return render(request, "agent.html", ctx)

    def flow(request: Request) -> Response:
        ctx = views.flow_page(
            src,
            request.path_params["run_id"],
            _int(request, "from_tick"),
            _int(request, "to_tick"),
            _int(request, "page", 1) or 1,
        )
        return render(request, "flow.html", ctx)

    def digests(request: Request) -> Response:
        ctx = views.digests_page(src, request.path_params["run_id"], _int(request, "from_tick"))
        return render(request, "digests.html", ctx)

    def journal(request: Request) -> Response:
        p = request.query_params
        ctx = views.journal_page(
            src,
            request.path_params["run_id"],
            p.getlist("kind"),
            p.get("agent", ""),
            _int(request, "from_tick"),
            _int(request, "to_tick"),
            _int(request, "after", 0) or 0,
        )
        return render(request, "journal.html", ctx)

    def inference(request: Request) -> Response:
        ctx = views.inference_page(
            src, request.path_params["run_id"], _int(request, "after", 0) or 0
        )
        return render(request, "inference.html", ctx)

    def checkpoints(request: Request) -> Response:
        ctx = views.checkpoints_page(src, request.path_params["run_id"])
        return render(request, "checkpoints.html", ctx)

    def compare(request: Request) -> Response:
        ctx = views.compare_page(
            src, request.query_params.get("a", ""), request.query_params.get("b", "")
        )
        return render(request, "compare.html", ctx)

    def live(request: Request) -> Response:
        data = views.live_update(src, request.path_params["run_id"], _int(request, "after", 0) or 0)
        return JSONResponse(data, headers={"cache-control": "no-store"})

    def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok\n")

    def plotly_js(_request: Request) -> Response:
        return FileResponse(
            PLOTLY_JS, media_type="text/javascript", headers={"cache-control": "max-age=86400"}
        )

    async def on_source_error(request: Request, exc: Exception) -> Response:
        return render(
            request,
            "error.html",
            {"title": "A service is not answering", "message": str(exc)},
            status=503,
        )

    async def on_not_found(request: Request, exc: Exception) -> Response:
        return render(
            request, "error.html", {"title": "Not found", "message": str(exc)}, status=404
        )

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return render(
            request,
            "error.html",
            {"title": f"Error {exc.status_code}", "message": exc.detail},
            status=exc.status_code,
        )

    def get(path: str, endpoint: Callable[[Request], Response]) -> Route:
        return Route(path, endpoint, methods=["GET"])

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        if source is None:
            src.close()

    app = Starlette(
        routes=[
            get("/", run_list),
            get("/runs/{run_id}", run_page),
            get("/runs/{run_id}/agents", agents),
            get("/runs/{run_id}/agents/{name:path}", agent),
            get("/runs/{run_id}/flow", flow),
            get("/runs/{run_id}/digests", digests),
            get("/runs/{run_id}/journal", journal),
            get("/runs/{run_id}/inference", inference),
            get("/runs/{run_id}/checkpoints", checkpoints),
            get("/compare", compare),
            get("/api/runs/{run_id}/live", live),
            get("/healthz", healthz),
            get("/static/plotly.min.js", plotly_js),
            Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        ],
        exception_handlers={
            SourceError: on_source_error,
            views.NotFound: on_not_found,
            HTTPException: on_http,
        },
        lifespan=lifespan,
    )
    return ReadOnly(app)
