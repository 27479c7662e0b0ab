"""Labels and photos: list, create, rename, remove, add (files, folders, paste, camera frames), move, the history of
changes, undo and the trash."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from imgclf.project.places import ChangeRefused, relative
from imgclf.serve.service import is_multipart, open_inside, read_parts, thumbnail
from imgclf.studio.routes import project, workspace

router = APIRouter(prefix="/api", tags=["photos"])

#: The most files one request may add (the page sends at most 20).
MAX_FILES = 500


class LabelName(BaseModel):
    name: str = Field(max_length=100)


class Photos(BaseModel):
    paths: list[str] = Field(max_length=10_000, description="Photos as the listings give them (label/file)")


class MovePhotos(Photos):
    label: str = Field(max_length=100)


def _done(change) -> dict:
    return {"change": change.to_dict() if change is not None else None}


@router.get("/labels")
def labels(request: Request):
    """Every label with its number of photos, the trash's count and whether undo has something to take back."""
    edits = project(request).edits
    nxt = edits.journal.undoable()
    return {"labels": [label.to_dict() for label in edits.labels()], "trash": edits.trash_count(),
            "undo": nxt.summary if nxt else None}


@router.post("/labels")
def add_label(request: Request, body: LabelName):
    return _done(project(request).edits.add_label(body.name))


@router.post("/labels/{name}/rename")
def rename_label(request: Request, name: str, body: LabelName):
    return _done(project(request).edits.rename_label(name, body.name))


@router.delete("/labels/{name}")
def remove_label(request: Request, name: str):
    """Move the label's folder, photos and all, into the trash (undoable)."""
    return _done(project(request).edits.remove_label(name))


@router.get("/labels/{name}/photos")
def label_photos(request: Request, name: str, offset: int = Query(0, ge=0), limit: int = Query(60, ge=1, le=500)):
    """One page of the label's photos, newest first."""
    total, paths = project(request).edits.photos(name, offset, limit)
    return {"label": name, "total": total, "offset": offset, "photos": paths}


@router.post("/labels/{name}/photos")
async def add_photos(request: Request, name: str, source: str = Query("", max_length=40)):
    """Save the uploaded files (multipart fields ``files``) into the label, as one change: which were saved, under
    which names, and which were refused and why; copies of photos already there are flagged."""
    ws = workspace(request)
    p = project(request)
    files = await read_parts(request, None, MAX_FILES, ws.max_upload_bytes) if is_multipart(request) else []
    if not files:
        raise HTTPException(422, "no files: send them as multipart form fields 'files'")
    loop = asyncio.get_running_loop()
    arrivals, change = await loop.run_in_executor(None, p.edits.add_photos, name, files, source)
    return {"arrivals": [a.to_dict() for a in arrivals], **_done(change)}


@router.post("/photos/move")
def move_photos(request: Request, body: MovePhotos):
    return _done(project(request).edits.move_photos(body.paths, body.label))


@router.post("/photos/copy")
def copy_photos(request: Request, body: MovePhotos):
    """Give photos one more label (a project of several labels per photo): each is saved into that label too."""
    return _done(project(request).edits.copy_photos(body.paths, body.label))


@router.post("/photos/remove")
def remove_photos(request: Request, body: Photos):
    """Move the photos into the trash (undoable)."""
    return _done(project(request).edits.remove_photos(body.paths))


@router.get("/photo")
def photo(request: Request, path: str = Query(..., max_length=4096), side: int = Query(160, ge=32, le=1024)):
    """A JPEG of at most ``side`` pixels of one of the project's photos."""
    p = project(request)
    try:
        rel = relative(path)
    except ChangeRefused:
        raise HTTPException(404, "no such photo here") from None
    opened = open_inside(p.root, rel.as_posix())
    if opened is None:
        raise HTTPException(404, "no such photo here")
    thumb = thumbnail(opened[1], side, workspace(request).max_pixels)
    if thumb is None:
        raise HTTPException(422, "this photo cannot be read, or is larger than the studio decodes")
    return Response(thumb, media_type="image/jpeg", headers={"cache-control": "private, max-age=600"})


@router.get("/history")
def history(request: Request):
    """The latest changes, newest first."""
    return {"changes": project(request).edits.history()}


@router.post("/undo")
def undo(request: Request):
    return _done(project(request).edits.undo())


@router.post("/trash/empty")
def empty_trash(request: Request):
    """Delete the photos in the trash for good (the only deletion the studio makes; not undoable)."""
    return {"deleted": project(request).edits.empty_trash()}
