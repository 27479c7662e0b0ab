"""The shapes of the API's answers and request bodies, for the OpenAPI description (answers are built as plain dicts)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel


class LabelScore(BaseModel):
    label: str
    confidence: float


class ExplanationOut(BaseModel):
    heatmap: str  # the overlay, a data:image/png;base64 URL
    label: str
    peak: list[int]
    box: list[float]
    method: Literal["cam", "occlusion", "face"]
    landmarks: Optional[list[list[float]]] = None  # face models: the 5 points read
    maps: Optional[list[dict]] = None  # several labels per photo: the same for every label answered, most probable first


class NeighborOut(BaseModel):
    path: str
    label: str
    similarity: float


class PredictionOut(BaseModel):
    """One photo's answer: :meth:`imgclf.runtime.prediction.Prediction.to_row`, as ``imgclf predict --format json`` prints it."""

    path: str
    status: Literal["ok", "unknown", "none", "no_face", "error"]
    label: Optional[str]
    confidence: Optional[float]
    similarity: Optional[float]
    top_k: list[LabelScore]
    error: Optional[str]
    explanation: Optional[ExplanationOut] = None  # only with ?explain=true
    neighbors: Optional[list[NeighborOut]] = None  # only with ?neighbors=K
    set: Optional[list[str]] = None  # only with ?error_rate=A: the labels that hold the right one with probability >= 1 - A
    levels: Optional[list[LabelScore]] = None  # models trained with --hierarchy: the best node of each level, top first
    labels: Optional[list[LabelScore]] = None  # models of several labels per photo: every label over its threshold


class ErrorOut(BaseModel):
    """Every error the API answers, whatever its status: one line saying what is wrong."""

    detail: str


UPLOAD_BODY = {
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
BATCH_BODY = {
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
#: Errors any route can answer.
COMMON_ERRORS = {
    400: {"model": ErrorOut, "description": "Host name not allowed (imgclf serve --allowed-host), or the client left mid-request"},
    422: {"model": ErrorOut, "description": "A query parameter out of range or of the wrong type"},
}
#: Errors of the routes that take photos.
ERRORS = {
    413: {"model": ErrorOut, "description": "Upload larger than --max-upload-mb"},
    415: {"model": ErrorOut, "description": "Not an image"},
    422: {"model": ErrorOut, "description": "No file, corrupt image, decompression bomb, a parameter out of range, "
                                            "or an explanation this model cannot give quickly"},
    503: {"model": ErrorOut, "description": "Too many images in flight: try again"},
}
