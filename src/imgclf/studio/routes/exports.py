"""Exports from the page: the model folder as a zip, ONNX, TensorFlow Lite and SavedModel (when the ``tflite`` extra
is installed), each checked against the model as ``imgclf export`` checks it, and the command line that trains the
same model."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from imgclf.studio.routes import project

router = APIRouter(prefix="/api/export", tags=["export"])

#: Where the page's exports are written, inside the project's own state folder.
EXPORTS = "exports"
_NAME = re.compile(r"^[0-9]{8}-[0-9]{6}-(onnx|tflite|saved_model)(\.onnx|\.tflite|\.json)?$")
_SUFFIX = {"onnx": ".onnx", "tflite": ".tflite", "saved_model": ""}


def converter_available() -> bool:
    from imgclf.exports.convert import require_converter
    from imgclf.errors import ImgclfError

    try:
        require_converter("")
        return True
    except ImgclfError:
        return False


@router.get("")
def choices(request: Request):
    """What can be exported here, and the command line that trains the same model from the same photos."""
    p = project(request)
    model = p.model
    face = model is not None and (model.meta.get("backbone") or {}).get("name") == "face"
    converts = not face and converter_available()
    return {"model": model is not None, "formats": {"zip": True, "onnx": not face, "tflite": converts,
                                                     "saved_model": converts},
            "command": command_line(p)}


def command_line(p) -> str:
    """``imgclf train`` with the options that give this project's model."""
    s = p.settings
    parts = ["imgclf", "train", str(p.root), "-o", str(p.model_dir)]
    defaults = type(s)()
    for option, name in (("--backbone", "backbone"), ("--seed", "seed"), ("--val-fraction", "val_fraction"),
                         ("--test-fraction", "test_fraction"), ("--augment", "augment"),
                         ("--target-acceptance", "target_acceptance"), ("--crop", "crop")):
        if getattr(s, name) != getattr(defaults, name):
            parts += [option, str(getattr(s, name))]
    if s.quantize:
        parts.append("--quantize")
    return shlex.join(parts)


@router.get("/model.zip")
def model_zip(request: Request):
    """The model folder as a zip (what ``imgclf predict``, ``serve`` and ``Model.load`` open once unpacked)."""
    p = project(request)
    if p.model is None:
        raise HTTPException(409, "no model yet: press Train first")
    return _zip_response(p.model_dir, f"{p.root.name}-model")


@router.post("/{fmt}")
async def export(request: Request, fmt: Literal["onnx", "tflite", "saved_model"]):
    """Export the model as ``fmt`` into the project's state folder, checked against the model; its parity figures."""
    from imgclf.exports import export as run_export

    p = project(request)
    if p.model is None:
        raise HTTPException(409, "no model yet: press Train first")
    name = time.strftime("%Y%m%d-%H%M%S") + f"-{fmt}{_SUFFIX[fmt]}"
    out = p.state_dir / EXPORTS / name
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(None, lambda: run_export(p.model_dir, fmt, out))
    return {"format": fmt, "name": name, "size": result.size, "seconds": round(result.seconds, 1),
            "parity": result.parity.to_dict(), "checked": result.parity.describe(),
            "download": f"/api/export/file/{name}"}


@router.get("/file/{name}")
def exported(request: Request, name: str):
    """An export made by the page (a SavedModel folder comes as a zip)."""
    p = project(request)
    if not _NAME.match(name):
        raise HTTPException(404, "no such export")
    path = p.state_dir / EXPORTS / name
    if path.is_symlink() or not path.exists():
        raise HTTPException(404, "no such export")
    if path.is_dir():
        return _zip_response(path, name)
    return FileResponse(path, filename=f"{p.root.name}-{name}")


def _zip_response(folder: Path, stem: str) -> FileResponse:
    fd, temp = tempfile.mkstemp(suffix=".zip", prefix="imgclf-export-")
    with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
        for item in sorted(folder.rglob("*")):
            if item.is_file() and not item.is_symlink():
                z.write(item, f"{stem}/{item.relative_to(folder).as_posix()}")
    return FileResponse(temp, filename=f"{stem}.zip", media_type="application/zip",
                        background=BackgroundTask(os.unlink, temp))
