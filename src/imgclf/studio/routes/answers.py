"""Answers from the page: a camera frame or a dropped photo, classified by the project's latest model, with where it
looked and the nearest training photos on request."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from imgclf.errors import ImageError, ImgclfError
from imgclf.studio.routes import project, workspace

router = APIRouter(prefix="/api", tags=["answers"])


@router.post("/predict")
async def predict(
    request: Request,
    explain: bool = Query(False, description="Add where the model looked (a heatmap overlay as a PNG data URL)"),
    neighbors: int = Query(0, ge=0, le=12, description="Add this many most similar training photos"),
    top_k: int = Query(5, ge=1, le=100),
    error_rate: float | None = Query(None, gt=0, lt=1, description="Add the label set right for at least 1 - error_rate"),
):
    """Classify one image (multipart field ``file`` or the raw body), as ``imgclf serve``'s ``/predict`` answers.

    A GET-free POST: the page sends its token with it like every other request, so no other site can use the studio to
    classify photos either."""
    project(request)
    service = workspace(request).answers.current()
    if service is None:
        raise HTTPException(409, "no model yet: press Train first")
    files = await service.read_files(request, "file")
    if len(files) != 1:
        raise HTTPException(422, "send one image as multipart form field 'file' or as the request body")
    if service.busy(1):
        raise HTTPException(503, "busy: too many images in flight, try again")
    try:
        result = await service.answer(files[0], top_k, explain and service.model.explainable, neighbors, error_rate)
    except ImgclfError as e:
        raise HTTPException(422, str(e)) from None
    if isinstance(result, ImageError):
        raise HTTPException(422, result.reason)
    return JSONResponse(result)  # neighbours' paths are relative to the data folder, as the page asks for them
