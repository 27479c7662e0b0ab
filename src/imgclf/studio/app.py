"""The studio app: the workspace, the middleware (upload limit, security headers and Host check, the change guard),
the routers and the page. ``imgclf studio`` runs it under uvicorn (:mod:`~imgclf.studio.server`)."""

from __future__ import annotations

import html
import os
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from imgclf.errors import ImgclfError
from imgclf.project.places import ChangeRefused
from imgclf.runtime.artifact import IMGCLF_VERSION
from imgclf.serve.app import STATIC_DIR as SERVE_STATIC
from imgclf.serve.app import answer_request_errors
from imgclf.serve.limits import UploadLimit
from imgclf.serve.security import SecurityHeaders
from imgclf.studio.guard import ChangeGuard
from imgclf.studio.routes import answers, exports, photos, projects, training
from imgclf.studio.workspace import Workspace

STATIC_DIR = Path(__file__).with_name("static")


def default_home() -> Path:
    """Where the landing page makes new projects: ``$IMGCLF_STUDIO_HOME``, else ``~/imgclf-projects``."""
    return Path(os.environ.get("IMGCLF_STUDIO_HOME") or Path.home() / "imgclf-projects")


def create_studio_app(folder: str | os.PathLike | None = None, *, home: str | os.PathLike | None = None,
                      max_upload_mb: float = 20, max_megapixels: float = 80,
                      allowed_hosts: list[str] | None = None) -> FastAPI:
    """The studio for the project in ``folder`` (None: the landing page first). ``allowed_hosts``: the ``Host`` names
    answered (None: any)."""
    ws = Workspace(folder, home or default_home(), int(max_upload_mb * 2**20), int(max_megapixels * 1_000_000))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            yield
        finally:
            ws.close()

    app = FastAPI(title="imgclf studio", version=IMGCLF_VERSION, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.workspace = ws
    app.add_middleware(ChangeGuard, token=ws.token)
    app.add_middleware(UploadLimit, limit=ws.max_upload_bytes)
    app.add_middleware(SecurityHeaders, allowed_hosts=allowed_hosts)

    @app.exception_handler(ChangeRefused)
    async def _refused(request: Request, exc: ChangeRefused):
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(ImgclfError)
    async def _failed(request: Request, exc: ImgclfError):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    answer_request_errors(app)
    for module in (projects, photos, training, answers, exports):
        app.include_router(module.router)
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8").replace("{{token}}", html.escape(ws.token))

    @app.get("/", include_in_schema=False)
    async def index():
        return HTMLResponse(page, headers={"cache-control": "no-store"})

    app.mount("/common", StaticFiles(directory=SERVE_STATIC), name="common")  # the palette serve's page uses too
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
