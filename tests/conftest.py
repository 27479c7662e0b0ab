"""Shared fixtures: the bundled photos, one cache and one trained model for the whole session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "flowers"
PHOTOS = EXAMPLE / "photos"
UNSEEN = EXAMPLE / "unseen"
LABELS = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
#: imgclf's record of the result files it wrote, for this test session alone (subprocesses see it too).
os.environ["IMGCLF_STATE_DIR"] = tempfile.mkdtemp(prefix="imgclf-test-state-")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache (backbone export + embeddings) for every test; subprocesses see it too."""
    path = Path(os.environ.get("IMGCLF_TEST_CACHE") or tmp_path_factory.mktemp("cache"))
    os.environ["IMGCLF_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory, cache_dir) -> Path:
    """A model trained once on the bundled photos through the real CLI."""
    out = tmp_path_factory.mktemp("models") / "flowers"
    result = run_cli("train", str(PHOTOS), "-o", str(out), "-q")
    assert result.returncode == 0, result.stderr
    return out


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real ``imgclf`` command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "imgclf.cli", *args], capture_output=True, text=True, cwd=cwd,
        env={**os.environ, **(env or {})}, timeout=600,
    )


def copy_photos(dst: Path, per_label: int | None = None, labels=LABELS, start: int = 0) -> Path:
    """Copy (some of) the bundled photos, from the ``start``-th of each label on, into ``dst/<label>/``."""
    for lab in labels:
        files = sorted((PHOTOS / lab).iterdir())[start:][:per_label]
        (dst / lab).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(f, dst / lab / f.name)
    return dst
