"""Results people can look at: one self-contained HTML report plus SVG plots beside it.

``write_report(path, results)`` is what ``imgclf train`` (``report.html`` in the model folder)
and ``imgclf evaluate --report FILE.html`` call; ``results`` comes from
:func:`from_training` or :func:`from_evaluation` (see :mod:`imgclf.report.results`).
The plots are SVG written directly (:mod:`imgclf.report.plots`): no plotting library is imported.
"""

from __future__ import annotations

import os
from pathlib import Path

from imgclf.runtime.artifact import PLOT_FILES, REPORT_FILE
from imgclf.report.results import from_evaluation, from_training, reported_split

__all__ = ["PLOT_FILES", "REPORT_FILE", "from_evaluation", "from_training", "reported_split", "write_report"]


def write_report(
    path: str | os.PathLike,
    results: dict,
    title: str | None = None,
    images: bool = True,
    plot_prefix: str = "",
    heatmaps=None,
    write=None,
) -> list[Path]:
    """Write the HTML report to ``path`` and its plots as SVG files beside it; return the files written.

    ``images=False`` leaves the photo thumbnails out (plots are still embedded). With ``heatmaps``
    (a :class:`~imgclf.report.heatmaps.Heatmaps`), each misclassified photo shown gets the heatmap of its
    wrong prediction beside it.
    ``plot_prefix`` is put before each plot's file name (``PLOT_FILES``), so several reports can share a folder.
    ``write(path, bytes)`` writes each file (default: atomically; a command's result files go through their
    :class:`~imgclf.files.Claim`).
    """
    from imgclf.runtime.artifact import IMGCLF_VERSION as __version__
    from imgclf.files import write_bytes_atomic
    from imgclf.report import calibration as cal
    from imgclf.report import html, plots
    from imgclf.report.thumbnails import Thumbnails

    path = Path(path)
    write = write or write_bytes_atomic
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = results["labels"]
    calib = cal.from_photos(results.get("calibration_photos") or results.get("photos") or [])
    figures: dict = {}
    if results.get("n"):
        figures["confusion"] = plots.confusion_matrix_svg(results["confusion_matrix"], labels)
        figures["confusion_normalized"] = plots.confusion_matrix_svg(results["confusion_matrix"], labels, normalize=True)
    if calib:
        figures["reliability"] = plots.reliability_svg(calib)
    if title is None:
        title = "imgclf training report" if results.get("kind") == "training" else "imgclf evaluation report"
    written = []
    for key, fig in figures.items():
        svg = fig[0] if isinstance(fig, tuple) else fig
        target = path.parent / f"{plot_prefix}{PLOT_FILES[key]}"
        write(target, svg)
        written.append(target)
    heatmaps = heatmaps if images and heatmaps else None
    page = html.render(results, title, figures, calib, Thumbnails(enabled=images), version=__version__, heatmaps=heatmaps)
    write(path, page.encode("utf-8"))
    return [path, *written]

