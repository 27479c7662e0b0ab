"""The imgclf HTTP API and web page (FastAPI), inference in ONNX Runtime only.

``create_app(model_dir)`` composes the app: the :class:`~imgclf.serve.service.Service` that
holds the model, the middleware (:mod:`~imgclf.serve.limits`, :mod:`~imgclf.serve.security`),
the routes (:mod:`~imgclf.serve.routes`), the web page and the local API docs; ``imgclf serve``
runs it under uvicorn (:mod:`~imgclf.serve.server`).

Request flow: the body is read with a hard size limit (checked on ``Content-Length``
before reading and again on every received chunk), the bytes are decoded and
preprocessed in a small thread pool, and the preprocessed arrays go to a
:class:`~imgclf.serve.batching.MicroBatcher` that runs concurrent requests as one ONNX
Runtime batch in its own thread. The event loop never decodes or infers, and nothing
here imports torch.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.requests import ClientDisconnect

from imgclf.runtime.artifact import IMGCLF_VERSION as __version__
from imgclf.runtime.model import Model
from imgclf.runtime.session import cpu_count
from imgclf.serve.limits import PayloadTooLarge, UploadLimit, too_large_message
from imgclf.serve.routes import router
from imgclf.serve.security import SecurityHeaders
from imgclf.serve.service import Service

log = logging.getLogger("imgclf.serve")

STATIC_DIR = Path(__file__).with_name("static")


def create_app(
    model_dir: str | os.PathLike,
    max_upload_mb: float = 10,
    *,
    threads: int | None = None,
    max_batch: int = 16,
    max_batch_files: int = 64,
    max_in_flight: int = 256,
    decode_threads: int | None = None,
    max_megapixels: float = 80,
    allowed_hosts: list[str] | None = None,
) -> FastAPI:
    """The imgclf API and web page for one model folder.

    ``threads`` are ONNX Runtime's intra-op threads (default: all cores), ``max_batch``
    the largest inference batch, ``max_in_flight`` the images being decoded or waiting
    for inference before new requests get 503, ``max_megapixels`` the largest image
    decoded (bigger ones are refused from their header: decoding one costs 3 bytes a
    pixel, whatever the file size). ``allowed_hosts`` lists the ``Host`` names answered (None: any;
    ``imgclf serve`` on a loopback address allows only loopback names, see :mod:`imgclf.serve.security`).
    """
    # Model.load's session lets idle ONNX Runtime threads sleep instead of spinning: in a server the
    # same cores parse requests and decode images
    model = Model.load(model_dir, threads=threads).check_files()  # a damaged file stops the server here
    service = Service(
        model, max_upload_bytes=int(max_upload_mb * 2**20), max_batch=max_batch, max_batch_files=max_batch_files,
        max_in_flight=max_in_flight, decode_threads=decode_threads or cpu_count(),
        max_pixels=int(max_megapixels * 1_000_000),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.batcher.start()
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title="imgclf",
        version=__version__,
        summary="What does this photo show? A classifier trained with imgclf.",
        lifespan=lifespan,
        docs_url=None,  # served below with local Swagger UI files: no CDN
        redoc_url=None,
    )
    app.state.service = service
    app.add_middleware(UploadLimit, limit=service.max_upload_bytes)
    app.add_middleware(SecurityHeaders, allowed_hosts=allowed_hosts)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect):
        client = request.client
        log.warning("client %s disconnected before its request to %s was received",
                    f"{client.host}:{client.port}" if client else "?", request.url.path)
        return Response(status_code=400)  # nobody is left to read it

    answer_request_errors(app)
    app.include_router(router)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _mount_docs(app)
    return app


def answer_request_errors(app: FastAPI) -> None:
    """A malformed request (422) and a body over the upload limit (413) answered as every error of the API is: one
    line in ``detail``."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": validation_message(exc)}, status_code=422)

    @app.exception_handler(PayloadTooLarge)
    async def _too_large(request: Request, exc: PayloadTooLarge):
        return JSONResponse({"detail": too_large_message(exc.limit)}, status_code=413, headers={"connection": "close"})


def validation_message(exc: RequestValidationError) -> str:
    """FastAPI's list of validation errors as the one line every error of the API is (``detail``)."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "body", "path"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return "; ".join(parts) or "invalid request"


def _mount_docs(app: FastAPI) -> None:
    """OpenAPI docs at ``/docs`` from the ``swagger-ui-bundle`` package's files (FastAPI's default loads them from a CDN)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title="imgclf API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js", swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )


def app_from_env() -> FastAPI:
    """App factory for uvicorn workers: settings come from ``IMGCLF_SERVE_*`` variables."""
    env = os.environ
    return create_app(
        env["IMGCLF_SERVE_MODEL_DIR"],
        max_upload_mb=float(env.get("IMGCLF_SERVE_MAX_UPLOAD_MB", "10")),
        threads=int(env["IMGCLF_SERVE_THREADS"]) if env.get("IMGCLF_SERVE_THREADS") else None,
        max_batch=int(env.get("IMGCLF_SERVE_MAX_BATCH", "16")),
        max_megapixels=float(env.get("IMGCLF_SERVE_MAX_MEGAPIXELS", "80")),
        allowed_hosts=json.loads(env.get("IMGCLF_SERVE_ALLOWED_HOSTS", "null")),
    )
