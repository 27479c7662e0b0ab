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


def collage(paths: list[Path], out: Path) -> Path:
    """The photos ``paths`` side by side on a grey 448 × 448 canvas, each at most 220 px a side (a photo of
    several things)."""
    from PIL import Image

    canvas = Image.new("RGB", (448, 448), (128, 128, 128))
    for i, path in enumerate(paths):
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((220, 220))
            canvas.paste(im, (4 + 224 * (i % 2), 4 + 224 * (i // 2)))
    canvas.save(out, quality=90)
    return out


@pytest.fixture(scope="session")
def multilabel_data(tmp_path_factory) -> Path:
    """A multi-label data folder from the bundled photos: each photo alone (one label) and 40 collages of two photos of
    different labels (both labels), listed in ``labels.csv``; ``unseen/`` holds 5 collages of the unseen photos, listed
    in ``unseen.csv``."""
    root = tmp_path_factory.mktemp("multilabel")
    rows = ["path,labels"]
    for lab in LABELS:
        (root / "photos" / lab).mkdir(parents=True)
        for f in sorted((PHOTOS / lab).iterdir()):
            shutil.copy(f, root / "photos" / lab / f.name)
            rows.append(f"photos/{lab}/{f.name},{lab}")
    (root / "collages").mkdir()
    for i in range(40):
        a, b = LABELS[i % 5], LABELS[(i % 5 + 1 + i // 5 % 4) % 5]
        pa, pb = sorted((PHOTOS / a).iterdir())[i // 5 % 14], sorted((PHOTOS / b).iterdir())[(i // 5 + 7) % 14]
        collage([pa, pb], root / "collages" / f"{i:02d}.jpg")
        rows.append(f"collages/{i:02d}.jpg,{';'.join(sorted([a, b]))}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    (root / "unseen").mkdir()
    unseen = ["path,labels"]
    for i, lab in enumerate(LABELS):
        other = LABELS[(i + 2) % 5]
        collage([sorted((UNSEEN / lab).iterdir())[0], sorted((UNSEEN / other).iterdir())[1]], root / "unseen" / f"{lab}+{other}.jpg")
        unseen.append(f"unseen/{lab}+{other}.jpg,{';'.join(sorted([lab, other]))}")
    (root / "unseen.csv").write_text("\n".join(unseen) + "\n")
    return root


@pytest.fixture(scope="session")
def multilabel_model(tmp_path_factory, cache_dir, multilabel_data) -> Path:
    """A model of several labels per photo, trained once from ``multilabel_data``'s manifest through the real CLI."""
    out = tmp_path_factory.mktemp("models") / "several"
    result = run_cli("train", str(multilabel_data), "--labels", str(multilabel_data / "labels.csv"), "-o", str(out), "-q")
    assert result.returncode == 0, result.stderr
    return out
