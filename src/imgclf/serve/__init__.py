"""``imgclf serve``: a REST API and a web page over a model folder (FastAPI + uvicorn, no torch)."""

from __future__ import annotations

__all__ = ["create_app", "run_server"]


def __getattr__(name: str):
    if name == "create_app":
        from imgclf.serve.app import create_app

        return create_app
    if name == "run_server":
        from imgclf.serve.server import run_server

        return run_server
    raise AttributeError(f"module 'imgclf.serve' has no attribute {name!r}")
