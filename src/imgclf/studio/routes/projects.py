"""The landing page's routes: the projects opened before, a new project, opening one of them."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from imgclf.studio.routes import workspace

router = APIRouter(prefix="/api", tags=["projects"])


class NewProject(BaseModel):
    name: str = Field(max_length=100)
    kind: Literal["objects", "several", "faces", "verifier"] = "objects"
    label: str | None = Field(None, max_length=100, description="What an \u201cis it \u2026?\u201d project recognises")


class OpenProject(BaseModel):
    path: str = Field(max_length=4096, description="One of the paths GET /api/projects lists")


def describe(request: Request) -> dict:
    ws = workspace(request)
    p = ws.project
    if p is None:
        return {"open": False, "home": str(ws.home)}
    labels = p.edits.labels()
    kind = ("faces" if p.settings.backbone == "face" else "several" if p.settings.multi_label else
            "verifier" if len(labels) == 1 else "objects")
    return {"open": True, "name": p.root.name, "path": str(p.root), "kind": kind, "backbone": p.settings.backbone,
            "home": str(ws.home)}


@router.get("/project")
def current(request: Request):
    """The project open now (``open`` false on the landing page)."""
    return describe(request)


@router.get("/projects")
def recent(request: Request):
    """The projects opened before, most recent first, and where new ones are made."""
    ws = workspace(request)
    return {"projects": ws.recent(), "home": str(ws.home)}


@router.post("/projects")
def create(request: Request, body: NewProject):
    """Make a new project under the projects folder and open it."""
    workspace(request).create(body.name, body.kind, body.label)
    return describe(request)


@router.post("/projects/open")
def open_project(request: Request, body: OpenProject):
    """Open one of the projects listed by GET /api/projects (no other path)."""
    ws = workspace(request)
    listed = {p["path"]: p for p in ws.recent()}
    if body.path not in listed or not listed[body.path]["exists"]:
        raise HTTPException(404, "not one of this studio's projects")
    from pathlib import Path

    ws.open(Path(body.path))
    return describe(request)
