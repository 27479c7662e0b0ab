"""The imgclf HTTP API and web page (FastAPI), inference in ONNX Runtime only.

``create_app(model_dir)`` builds the app; ``imgclf serve`` runs it under uvicorn.

Request flow: the body is read with a hard size limit (checked on ``Content-Length``
before reading and again on every received chunk), the bytes are decoded and
preprocessed in a small thread pool, and the preprocessed arrays go to a
:class:`~imgclf.serve.batching.MicroBatcher` that runs concurrent requests as one ONNX
Runtime batch in its own thread. The event loop never decodes or infers, and nothing
here imports torch.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from imgclf import __version__
from imgclf.errors import ImageError
from imgclf.images import openable_formats
from imgclf.faces import NoFaceError
from imgclf.model import Model, failed
from imgclf.pipeline import cpu_count, load_pixels, safe_load
from imgclf.serve.batching import MicroBatcher
from imgclf.serve.security import SecurityHeaders

log = logging.getLogger("imgclf.serve")

STATIC_DIR = Path(__file__).with_name("static")
#: Multipart framing (boundaries, part headers) allowed on top of --max-upload-mb.
MULTIPART_SLACK = 64 * 1024
#: Upload routes and whether they take several files.
UPLOAD_PATHS = {"/predict": False, "/predict/batch": True}


# --- response shapes (for the OpenAPI docs; responses are built as plain dicts) -------


class LabelScore(BaseModel):
    label: str
    confidence: float


class PredictionOut(BaseModel):
    """One photo's answer: :meth:`imgclf.prediction.Prediction.to_row`, as ``imgclf predict --format json`` prints it."""

    path: str
    status: Literal["ok", "unknown", "no_face", "error"]
    label: Optional[str]
    confidence: Optional[float]
    similarity: Optional[float]
    top_k: list[LabelScore]
    error: Optional[str]


class ErrorOut(BaseModel):
    detail: str


class PayloadTooLarge(Exception):
    """The request body went over the limit while it was being received."""

    def __init__(self, limit: int):
        super().__init__(limit)
        self.limit = limit


def _too_large_message(limit_bytes: int) -> str:
    return f"upload too large: over {limit_bytes / 2**20:g} MB (the server's --max-upload-mb)"


class UploadLimit:
    """ASGI middleware: refuse bodies over the limit without buffering them.

    A declared ``Content-Length`` over the limit is answered with 413 before any of the
    body is read; a chunked (or lying) body is counted as it arrives and the request
    fails with :class:`PayloadTooLarge` (413) as soon as it goes over. The 413 goes out
    at once; the server then reads and discards what the client is still sending for at
    most :attr:`DRAIN_SECONDS` (nginx's "lingering close"), so a client that only reads
    the answer after sending everything gets the 413 instead of a connection reset.
    """

    DRAIN_SECONDS = 1.0
    DRAIN_BYTES = 256 * 2**20

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        limit = self.limit + MULTIPART_SLACK
        headers = dict(scope.get("headers", ()))
        try:
            declared = int(headers[b"content-length"]) if b"content-length" in headers else None
        except ValueError:
            declared = None
        if declared is not None and declared > limit:
            # With "Expect: 100-continue" the client waits for our verdict: nothing to drain.
            drain = headers.get(b"expect", b"").lower() != b"100-continue"
            return await self._reject(receive, send, drain)
        received = 0
        over = False

        async def limited_receive():
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise PayloadTooLarge(self.limit)
            return message

        async def lingering_send(message):
            if over and message["type"] == "http.response.body" and not message.get("more_body", False):
                await send({**message, "more_body": True})
                await self._drain(receive)
                return await send({"type": "http.response.body", "body": b"", "more_body": False})
            return await send(message)

        return await self.app(scope, limited_receive, lingering_send)

    async def _reject(self, receive, send, drain: bool) -> None:
        body = json.dumps({"detail": _too_large_message(self.limit)}).encode()
        await send({
            "type": "http.response.start", "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close")],
        })
        await send({"type": "http.response.body", "body": body, "more_body": drain})
        if drain:
            await self._drain(receive)
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _drain(self, receive) -> None:
        """Read and drop the rest of the body, for a bounded time and size."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.DRAIN_SECONDS
        dropped = 0
        while dropped < self.DRAIN_BYTES:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                message = await asyncio.wait_for(receive(), remaining)
            except (asyncio.TimeoutError, Exception):
                return
            if message["type"] != "http.request":
                return
            dropped += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


class Service:
    """The loaded model plus the threads that serve it."""

    def __init__(self, model: Model, max_upload_bytes: int, max_batch: int, max_batch_files: int,
                 max_in_flight: int, decode_threads: int, max_pixels: int):
        self.model = model
        self.max_pixels = max_pixels
        self.max_upload_bytes = max_upload_bytes
        self.max_batch_files = max_batch_files
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.started = time.time()
        self.requests = 0
        self.batcher = MicroBatcher(model.scores, max_batch=max_batch, collate=model.preprocessing.batch)
        self.decode_threads = decode_threads
        self._pool: ThreadPoolExecutor | None = None

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.decode_threads, thread_name_prefix="imgclf-decode")
        return self._pool

    def close(self) -> None:
        self.batcher.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _load(self, data: bytes) -> np.ndarray:
        size = _peek_size(data)
        if size and size[0] * size[1] > self.max_pixels:
            raise ImageError(
                f"image too large ({size[0]}x{size[1]} pixels, this server's limit is {self.max_pixels:,}): "
                "possible decompression bomb"
            )
        return load_pixels(data, self.model.preprocessing)  # as predict does: big JPEGs decoded at reduced size

    async def predict(self, uploads: list[tuple[str, bytes]], top_k: int) -> list[dict | ImageError]:
        """Decode (in threads) and classify (batched) uploads; an ImageError per unusable one."""
        loop = asyncio.get_running_loop()
        decoded = await asyncio.gather(
            *(loop.run_in_executor(self.pool, safe_load, self._load, data) for _, data in uploads)
        )
        good = [arr for arr in decoded if not isinstance(arr, ImageError)]
        rows = iter(await self.batcher.run(good) if good else [])
        out: list[dict | ImageError] = []
        for (name, _), arr in zip(uploads, decoded):
            if isinstance(arr, NoFaceError):
                out.append(failed(name, arr).to_row())
            elif isinstance(arr, ImageError):
                out.append(arr)
            else:
                out.append(self.model.prediction(name, next(rows), top_k).to_row())
        return out


def _peek_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the header alone (None if Pillow cannot tell; decode says why)."""
    try:  # (no warnings.catch_warnings here: it is process-wide and decoding runs in threads)
        with Image.open(io.BytesIO(data), formats=openable_formats()) as img:
            return img.size
    except Exception:
        return None


def _status_for(error: ImageError) -> int:
    """415 for bytes that are no image format at all; 422 for images that cannot be used."""
    return 415 if error.reason.startswith("not an image") else 422


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _metrics_summary(metrics: dict) -> dict:
    """The headline numbers of metrics.json (no file paths of the training data)."""
    out: dict = {}
    for split in ("train", "val", "test"):
        m = metrics.get(split)
        if isinstance(m, dict) and "accuracy" in m:
            out[split] = {k: m[k] for k in ("accuracy", "macro_f1", "n") if k in m}
    if isinstance(metrics.get("counts"), dict):
        out["counts"] = metrics["counts"]
    return out


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["file"],
                           "properties": {"file": {"type": "string", "format": "binary"}}}
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "required": ["files"],
                           "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}
            }
        },
    }
}
_ERRORS = {
    413: {"model": ErrorOut, "description": "Upload larger than --max-upload-mb"},
    415: {"model": ErrorOut, "description": "Not an image"},
    422: {"model": ErrorOut, "description": "No file, corrupt image or decompression bomb"},
}


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
    # same cores parse requests and decode images, and on 2 cores spinning cost 15-25 % of the
    # throughput and doubled one request's latency (measured)
    model = Model.load(model_dir, threads=threads)
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

    @app.exception_handler(PayloadTooLarge)
    async def _too_large(request: Request, exc: PayloadTooLarge):
        return JSONResponse({"detail": _too_large_message(exc.limit)}, status_code=413, headers={"connection": "close"})

    async def read_raw(request: Request) -> bytes:
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > service.max_upload_bytes:
                raise PayloadTooLarge(service.max_upload_bytes)
        return bytes(buf)

    async def read_files(request: Request, field: str | None, raw: bool = True) -> list[tuple[str, bytes]]:
        """Uploaded files: multipart parts (named ``field``, or any file part) or, if ``raw``, the body."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            form = await request.form(max_files=service.max_batch_files, max_fields=service.max_batch_files)
            try:
                parts = [(k, v) for k, v in form.multi_items() if isinstance(v, UploadFile) and (field is None or k == field)]
                files = []
                for i, (_, up) in enumerate(parts):
                    data = await up.read()
                    if len(data) > service.max_upload_bytes:
                        raise PayloadTooLarge(service.max_upload_bytes)
                    files.append((up.filename or f"upload-{i + 1}", data))
            finally:
                await form.close()
            return files
        if not raw:
            return []
        data = await read_raw(request)
        if not data:
            return []
        name = request.headers.get("x-filename") or "upload"
        return [(name, data)]

    def busy(n: int) -> bool:
        return service.in_flight + n > service.max_in_flight

    @app.post("/predict", response_model=None, openapi_extra=_UPLOAD_BODY,
              responses={200: {"model": PredictionOut}, **_ERRORS})
    async def predict(request: Request, top_k: int = Query(3, ge=1, le=1000, description="How many labels to return")):
        """Classify one image, sent as multipart field ``file`` or as the raw request body.

        Answers the same object per image as ``imgclf predict --format json``.
        """
        files = await read_files(request, "file")
        if not files:
            return _error(422, "no file: send the image as multipart form field 'file' or as the request body")
        if len(files) > 1:
            return _error(422, f"{len(files)} files in field 'file': use /predict/batch for several images")
        if busy(1):
            return _error(503, "server busy: too many images in flight, try again")
        service.in_flight += 1
        try:
            (result,) = await service.predict(files, top_k)
        finally:
            service.in_flight -= 1
        service.requests += 1
        if isinstance(result, ImageError):
            return _error(_status_for(result), result.reason)
        return JSONResponse(result)

    @app.post("/predict/batch", response_model=None, openapi_extra=_BATCH_BODY,
              responses={200: {"model": list[PredictionOut]}, **_ERRORS})
    async def predict_batch(request: Request, top_k: int = Query(3, ge=1, le=1000)):
        """Classify several images (multipart fields ``files``), in order.

        An unusable image does not fail the request: its entry has ``label`` null and an
        ``error``, as in ``imgclf predict --format json``.
        """
        files = await read_files(request, None, raw=False)
        if not files:
            return _error(422, "no files: send the images as multipart/form-data fields 'files'")
        if busy(len(files)):
            return _error(503, "server busy: too many images in flight, try again")
        service.in_flight += len(files)
        try:
            results = await service.predict(files, top_k)
        finally:
            service.in_flight -= len(files)
        service.requests += 1
        return JSONResponse([
            failed(name, r).to_row() if isinstance(r, ImageError) else r
            for (name, _), r in zip(files, results)
        ])

    @app.get("/health")
    async def health():
        """Liveness and a few counters."""
        b = service.batcher
        return {
            "status": "ok",
            "version": __version__,
            "uptime_s": round(time.time() - service.started, 1),
            "requests": service.requests,
            "in_flight": service.in_flight,
            "batches": b.batches,
            "images": b.images,
            "largest_batch": b.largest_batch,
        }

    @app.get("/model")
    async def model_info():
        """The model: labels, backbone, headline metrics, rejection threshold."""
        meta = model.meta
        rejection = meta.get("rejection")
        threshold = rejection.get("threshold") if isinstance(rejection, dict) else rejection
        return {
            "name": model.dir.name,
            "labels": model.labels,
            "backbone": meta.get("backbone"),
            "preprocessing": meta.get("preprocessing"),
            "metrics": _metrics_summary(model.metrics),
            "threshold": threshold,
            "rejection": rejection,
            "created": meta.get("created"),
            "imgclf_version": meta.get("imgclf_version"),
            "max_upload_mb": service.max_upload_bytes / 2**20,
            "max_batch_files": service.max_batch_files,
            "max_megapixels": service.max_pixels / 1e6,
        }

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _mount_docs(app)
    return app


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
