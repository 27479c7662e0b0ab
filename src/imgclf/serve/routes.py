"""The API's routes: prediction, health and model information, on one :class:`APIRouter`.

Each route finds the :class:`~imgclf.serve.service.Service` on ``request.app.state.service``.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from imgclf.runtime.artifact import IMGCLF_VERSION as __version__
from imgclf.errors import ImageError, ImgclfError
from imgclf.report.multilabel import headline
from imgclf.serve.schemas import BATCH_BODY, COMMON_ERRORS, ERRORS, UPLOAD_BODY, PredictionOut
from imgclf.serve.service import Service

router = APIRouter(responses=COMMON_ERRORS)


def _service(request: Request) -> Service:
    return request.app.state.service


def _status_for(error: ImageError) -> int:
    """415 for bytes that are no image format at all; 422 for images that cannot be used."""
    return 415 if error.reason.startswith("not an image") else 422


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _metrics_summary(metrics: dict) -> dict:
    """The headline numbers of metrics.json (no file paths of the training data)."""
    out: dict = {}
    est = metrics.get("estimate")
    if isinstance(est, dict) and "accuracy" in est:  # the headline: from the most photos there are
        out["estimate"] = {k: est[k] for k in ("accuracy", "low", "high", "n", "method") if k in est}
    for split in ("train", "val", "test"):
        m = metrics.get(split)
        if isinstance(m, dict) and "accuracy" in m:
            out[split] = {k: m[k] for k in ("accuracy", "macro_f1", "n") if k in m}
    several = headline(metrics)
    if several is not None:  # several labels per photo: how often an answered label is right, how many it finds
        out["multi_label"] = several
    if isinstance(metrics.get("counts"), dict):
        out["counts"] = metrics["counts"]
    return out


@router.post("/predict", response_model=None, openapi_extra=UPLOAD_BODY,
             responses={200: {"model": PredictionOut}, **ERRORS})
async def predict(
    request: Request,
    top_k: int = Query(3, ge=1, le=1000, description="How many labels to return"),
    explain: bool = Query(False, description="Add where the model looked: the heatmap overlay as a PNG data URL, its peak and box"),
    neighbors: int = Query(0, ge=0, le=100, description="Add this many most similar training photos"),
    error_rate: float | None = Query(None, gt=0, lt=1, description="Add the label set that holds the right label with "
                                     "probability at least 1 - error_rate"),
):
    """Classify one image, sent as multipart field ``file`` or as the raw request body.

    Answers the same object per image as ``imgclf predict --format json`` (with ``explanation``,
    ``neighbors`` and ``set`` when asked for, as ``--explain``, ``--neighbors`` and ``--error-rate`` add them).
    """
    service = _service(request)
    files = await service.read_files(request, "file")
    if not files:
        return _error(422, "no file: send the image as multipart form field 'file' or as the request body")
    if len(files) > 1:
        return _error(422, f"{len(files)} files in field 'file': use /predict/batch for several images")
    if service.busy(1):
        return _error(503, "server busy: too many images in flight, try again")
    if explain and not service.model.explainable:
        return _error(422, "this model has no class activation maps (fine-tuned, quantised or another backbone): explaining a "
                           "photo takes one pass per cell of it, too slow to serve; use imgclf predict --explain DIR")
    try:
        result = await service.answer(files[0], top_k, explain, neighbors, error_rate)
    except ImgclfError as e:
        return _error(422, str(e))
    service.requests += 1
    if isinstance(result, ImageError):
        return _error(_status_for(result), result.reason)
    return JSONResponse(result)

@router.post("/predict/batch", response_model=None, openapi_extra=BATCH_BODY,
             responses={200: {"model": list[PredictionOut]}, **ERRORS})
async def predict_batch(request: Request, top_k: int = Query(3, ge=1, le=1000),
                        error_rate: float | None = Query(None, gt=0, lt=1, description="Add each image's label set")):
    """Classify several images (multipart fields ``files``), in order.

    An unusable image does not fail the request: its entry has ``label`` null and an
    ``error``, as in ``imgclf predict --format json``.
    """
    service = _service(request)
    files = await service.read_files(request, None, raw=False)
    if not files:
        return _error(422, "no files: send the images as multipart/form-data fields 'files'")
    if service.busy(len(files)):
        return _error(503, "server busy: too many images in flight, try again")
    service.in_flight += len(files)
    try:
        results = await service.predict(files, top_k, error_rate)
    except ImgclfError as e:  # label sets asked of a model without them
        return _error(422, str(e))
    finally:
        service.in_flight -= len(files)
    service.requests += 1
    return JSONResponse([
        service.model.failed(name, r, error_rate).to_row() if isinstance(r, ImageError) else r
        for (name, _), r in zip(files, results)
    ])

@router.get("/health")
async def health(request: Request):
    """Liveness and a few counters."""
    service = _service(request)
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

@router.get("/model")
async def model_info(request: Request):
    """The model: labels, backbone, headline metrics, rejection threshold."""
    service = _service(request)
    model = service.model
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
        "explain": model.explainable,
        "neighbors": model.neighbor_index is not None,
        "label_sets": model.label_sets is not None,
        # several labels per photo: each label's threshold and how it was chosen (None: one label per photo)
        "multi_label": meta.get("multi_label"),
        "created": meta.get("created"),
        "imgclf_version": meta.get("imgclf_version"),
        "max_upload_mb": service.max_upload_bytes / 2**20,
        "max_batch_files": service.max_batch_files,
        "max_megapixels": service.max_pixels / 1e6,
    }


@router.get("/training-photo", include_in_schema=False)
async def training_photo(request: Request, path: str = Query(..., max_length=4096)):
    """A small JPEG of one of the model's training photos (a neighbour), when the data folder is reachable from here.

    Only photos listed in the model's ``neighbors.json`` are served, read from inside the data folder it was trained on.
    """
    service = _service(request)
    data = await asyncio.get_running_loop().run_in_executor(service.pool, service.training_thumbnail, path)
    if data is None:
        return _error(404, "no such training photo here")
    return Response(data, media_type="image/jpeg",
                    headers={"cache-control": "max-age=3600", "cross-origin-resource-policy": "same-origin"})
