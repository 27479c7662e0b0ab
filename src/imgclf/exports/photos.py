"""Which photos an export is checked and calibrated on, preprocessed in batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgclf.errors import ImgclfError

#: Photos the int8 calibration uses at most (the model's training photos).
CALIBRATION_PHOTOS = 200


def photos_to_check(model, folder) -> list[Path]:
    """``folder``'s photos, or the model's validation and test photos (as ``train`` recorded them), else its training photos."""
    from imgclf.runtime.inputs import walk_files

    if folder is not None:
        if not Path(folder).exists():
            raise ImgclfError(f"--check-photos {folder} does not exist")
        return list(walk_files(Path(folder)))
    root = Path((model.meta.get("data") or {}).get("root") or ".")
    held = [_found(Path(p["path"]), root) for split in ("val", "test") for p in ((model.metrics.get(split) or {}).get("photos") or [])]
    held = [p for p in held if p is not None]
    return held or training_photos(model)


def _found(path: Path, root: Path) -> Path | None:
    """A photo as ``train`` recorded it (relative to where it ran, perhaps), found under the data folder ``root``."""
    if path.is_file():
        return path
    parts = path.parts
    for i in range(len(parts)):  # "examples/flowers/photos/daisy/x.jpg" under ".../examples/flowers/photos"
        if root.parts[-(i + 1):] == parts[:i + 1] and root.joinpath(*parts[i + 1:]).is_file():
            return root.joinpath(*parts[i + 1:])
    return None


def training_photos(model) -> list[Path]:
    root = Path((model.meta.get("data") or {}).get("root") or ".")
    return [p for p in (root / path for path, _label in model.neighbor_index or []) if p.is_file()]


def batches(model, photos: list[Path], size: int = 16):
    from imgclf.errors import ImageError
    from imgclf.runtime.images import load_image

    pre, batch = model.preprocessing, []
    for path in photos:
        try:
            batch.append(pre.pixels(load_image(path)))
        except ImageError:
            continue
        if len(batch) == size:
            yield pre.batch(batch)
            batch = []
    if batch:
        yield pre.batch(batch)


def calibration(model) -> np.ndarray:
    """The int8 calibration set: up to :data:`CALIBRATION_PHOTOS` training photos, preprocessed (N, 3, H, W)."""
    photos = training_photos(model)
    if not photos:
        raise ImgclfError("--int8 calibrates on the model's training photos, which are not where train found them")
    step = max(1, len(photos) // CALIBRATION_PHOTOS)
    return np.concatenate(list(batches(model, photos[::step][:CALIBRATION_PHOTOS])))
