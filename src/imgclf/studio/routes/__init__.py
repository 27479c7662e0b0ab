"""The studio's API, one router per part of the page: projects (the landing page), photos and labels, training and
its results, answers, exports. Every route finds the :class:`~imgclf.studio.workspace.Workspace` on
``request.app.state.workspace``."""

from __future__ import annotations

from fastapi import HTTPException, Request

from imgclf.project import Project
from imgclf.studio.workspace import Workspace


def workspace(request: Request) -> Workspace:
    return request.app.state.workspace


def project(request: Request) -> Project:
    """The open project, or 409 when the landing page has not opened one yet."""
    found = workspace(request).project
    if found is None:
        raise HTTPException(409, "no project is open: create or open one first")
    return found
