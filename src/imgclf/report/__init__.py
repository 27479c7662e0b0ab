"""Results people can look at: one self-contained HTML report plus PNG plots beside it.

``write_report(path, results)`` is what ``imgclf train`` (``report.html`` in the model folder)
and ``imgclf evaluate --report FILE.html`` call; ``results`` comes from
:func:`from_training` or :func:`from_evaluation` (see :mod:`imgclf.report.results`).
matplotlib is imported only while a report is written, never by ``import imgclf`` or predict.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from imgclf.report.results import from_evaluation, from_training, reported_split

REPORT_FILE = "report.html"
#: PNG files written beside a report (each name gets the ``png_prefix`` of :func:`write_report`).
PLOT_FILES = {
    "confusion": "confusion_matrix.png",
    "confusion_normalized": "confusion_matrix_normalized.png",
    "reliability": "reliability.png",
}

__all__ = ["PLOT_FILES", "REPORT_FILE", "from_evaluation", "from_training", "reported_split", "write_report"]


def write_report(
    path: str | os.PathLike,
    results: dict,
    title: str | None = None,
    images: bool = True,
    png_prefix: str = "",
) -> list[Path]:
    """Write the HTML report to ``path`` and its plots as PNG files beside it; return the files written.

    ``images=False`` leaves the photo thumbnails out (plots are still embedded).
    ``png_prefix`` is put before each PNG name (``PLOT_FILES``), so several reports can share a folder.
    """
    from imgclf import __version__
    from imgclf.files import write_text_atomic
    from imgclf.report import calibration as cal
    from imgclf.report import html, plots
    from imgclf.report.thumbnails import Thumbnails

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = results["labels"]
    calib = cal.from_photos(results.get("photos") or [])
    figures: dict = {}
    if results.get("n"):
        figures["confusion"] = plots.confusion_matrix_png(results["confusion_matrix"], labels)
        figures["confusion_normalized"] = plots.confusion_matrix_png(results["confusion_matrix"], labels, normalize=True)
    if calib:
        figures["reliability"] = plots.reliability_png(calib)
    if title is None:
        title = "imgclf training report" if results.get("kind") == "training" else "imgclf evaluation report"
    written = []
    for key, fig in figures.items():
        png = fig[0] if isinstance(fig, tuple) else fig
        target = path.parent / f"{png_prefix}{PLOT_FILES[key]}"
        _write_bytes_atomic(target, png)
        written.append(target)
    page = html.render(results, title, figures, calib, Thumbnails(enabled=images), version=__version__)
    write_text_atomic(path, page)
    return [path, *written]


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
