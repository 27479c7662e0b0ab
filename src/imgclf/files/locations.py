"""Where imgclf keeps what is not the user's: its cache and its state (the ledger of results it wrote)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """The user's cache folder for imgclf (``$IMGCLF_CACHE_DIR`` overrides it)."""
    env = os.environ.get("IMGCLF_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("imgclf"))


#: Environment variable naming the folder of imgclf's own state (the ledger); default: the user's state folder.
STATE_ENV = "IMGCLF_STATE_DIR"


def state_dir() -> Path:
    """The folder of imgclf's own state (``$IMGCLF_STATE_DIR`` overrides it)."""
    root = os.environ.get(STATE_ENV)
    if not root:
        import platformdirs

        root = platformdirs.user_state_dir("imgclf", appauthor=False)
    return Path(root)


def ledger_dir() -> Path:
    return state_dir() / "written"
