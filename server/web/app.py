"""The web application: FastAPI (routing, the OpenAPI description from the same pydantic models
the API returns), Jinja2 pages, and uvicorn to serve them, in a thread of ``edge-server run``
or alone (``edge-server web``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from server import __version__
from server.config import ServerConfig
from server.i18n import Language
from server.ingest.core import Ingestor
from server.projections import default_projections
from server.web.auth import LANG_COOKIE, WebError
from server.web.text import text

log = logging.getLogger(__name__)

HERE = Path(__file__).parent


@dataclass
class WebState:
    config: ServerConfig
    engine: sa.Engine
    #: Journals what people enter (an acknowledgement is an entry of the county's stream).
    ingestor: Ingestor
    templates: Jinja2Templates
    clock: Callable[[], datetime]

    def now(self) -> datetime:
        return self.clock()


def language(request: Request) -> Language:
    """``?lang=`` when given (and remembered in a cookie), else the cookie, else the server's."""
    asked = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    if asked in ("zh", "en"):
        return "en" if asked == "en" else "zh"
    web: WebState = request.app.state.web
    return "en" if web.config.server.language == "en" else "zh"


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/metrics"


def error_response(request: Request, status: int, key: str, fields: dict[str, object]) -> Response:
    lang = language(request)
    message = text(lang, key, **fields)
    if _is_api(request):
        return JSONResponse({"error": key, "message": message}, status_code=status)
    if status == 401:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    from server.web.auth import identify
    from server.web.html import render

    return render(request, identify(request), "error.html", status, message=message)


def create_app(config: ServerConfig, engine: sa.Engine,
               clock: Callable[[], datetime] | None = None) -> FastAPI:  # fmt: skip
    """The dashboard and API over ``engine``; ``clock`` for tests that need their own now."""
    from server.web import api, metrics, pages

    app = FastAPI(
        title="Family-planning commodity logistics",
        version=__version__,
        openapi_url="/api/openapi.json",
        docs_url=None,  # Swagger UI would load from a CDN: sites are offline
        redoc_url=None,
    )
    templates = Jinja2Templates(directory=HERE / "templates")
    ingestor = Ingestor(engine, config.mqtt.topic_prefix, projections=default_projections(config))
    app.state.web = WebState(
        config, engine, ingestor, templates, clock or (lambda: datetime.now(UTC))
    )
    pages.setup_templates(templates)

    @app.exception_handler(WebError)
    async def refused(request: Request, exc: WebError) -> Response:
        return error_response(request, exc.status, exc.key, exc.fields)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        where = "; ".join(
            ".".join(str(p) for p in e.get("loc", ())[1:]) or "body" for e in exc.errors()[:3]
        )
        return error_response(request, 422, "bad.input", {"what": where})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        key = "not.found" if exc.status_code == 404 else "bad.input"
        return error_response(request, exc.status_code, key, {"what": "-"})

    @app.exception_handler(sa.exc.SQLAlchemyError)
    async def database(request: Request, exc: sa.exc.SQLAlchemyError) -> Response:
        log.error("web: database error on %s: %s", request.url.path, exc)
        return error_response(request, 503, "server.error", {})

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault(
            "content-security-policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "frame-ancestors 'none'; form-action 'self'",
        )
        response.headers.setdefault("x-content-type-options", "nosniff")
        response.headers.setdefault("referrer-policy", "same-origin")
        if "lang" in request.query_params and request.query_params["lang"] in ("zh", "en"):
            response.set_cookie(
                LANG_COOKIE, request.query_params["lang"], max_age=365 * 86400, samesite="lax",
                secure=config.web.cookies_secure,
            )  # fmt: skip
        return response

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(api.router)
    app.include_router(metrics.router)
    app.include_router(pages.router)
    return app


def _server(config: ServerConfig, engine: sa.Engine) -> Any:
    import uvicorn

    web = config.web
    settings = uvicorn.Config(
        create_app(config, engine),
        host=web.host,
        port=web.port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        ssl_certfile=str(web.tls_cert) if web.tls_cert else None,
        ssl_keyfile=str(web.tls_key) if web.tls_key else None,
    )
    return uvicorn.Server(settings)


def serve_in_thread(config: ServerConfig, engine: sa.Engine) -> Callable[[], None]:
    """Serve the dashboard in a thread of this process; return what stops it."""
    server = _server(config, engine)
    thread = threading.Thread(target=server.run, name="web", daemon=True)
    thread.start()
    log.info("dashboard on http%s://%s:%d/", "s" if config.web.tls_cert else "",
             config.web.host, config.web.port)  # fmt: skip

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return stop


def serve(config: ServerConfig, engine: sa.Engine) -> None:
    """Serve the dashboard in this process until SIGTERM or Ctrl-C (``edge-server web``)."""
    log.info("dashboard on http%s://%s:%d/", "s" if config.web.tls_cert else "",
             config.web.host, config.web.port)  # fmt: skip
    _server(config, engine).run()
