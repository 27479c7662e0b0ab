"""matplotlib figures of a report, rendered to PNG bytes (Agg, no pyplot, no global state).

matplotlib is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import io

import numpy as np

DPI = 110
_BLUE = "#2563eb"
_RED = "#dc2626"
_GREY = "#6b7280"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig, drawn: bool = False) -> bytes:
    """The figure as PNG bytes, from one draw (``drawn``: the canvas is already drawn)."""
    from PIL import Image

    if not drawn:
        fig.canvas.draw()
    width, height = fig.canvas.get_width_height()
    img = Image.frombuffer("RGBA", (width, height), fig.canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG", dpi=(DPI, DPI))
    return buf.getvalue()


def confusion_matrix_png(cm, labels: list[str], normalize: bool = False) -> tuple[bytes, dict[tuple[int, int], tuple[float, float, float, float]]]:
    """Heat map of a confusion matrix (rows: true label, columns: predicted).

    With ``normalize`` each row is divided by its total (the diagonal is then the recall).
    Returns the PNG and, for every cell, its box as percentages of the image
    ``(left, top, width, height)``, so HTML can lay links over the cells.
    """
    from matplotlib.ticker import MaxNLocator

    cm = np.asarray(cm, dtype=float)
    n = len(labels)
    if normalize:
        totals = cm.sum(1, keepdims=True)
        values = np.divide(cm, totals, out=np.full_like(cm, np.nan), where=totals > 0)
        vmax = 1.0
    else:
        values = cm
        vmax = max(1.0, float(cm.max()) if cm.size else 1.0)
    cell = 0.62 if n <= 8 else 0.45 if n <= 20 else max(0.2, 11.0 / n)
    longest = max((len(lab) for lab in labels), default=4)
    margin = min(2.6, 0.35 + 0.075 * longest)
    fontsize = 10 if n <= 8 else 8 if n <= 20 else 7
    fig = _figure(max(4.0, margin + 1.4 + n * cell), max(3.6, margin + 0.9 + n * cell))
    ax = fig.add_subplot()
    shown = np.nan_to_num(values, nan=0.0)
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=vmax, interpolation="nearest", aspect="equal")
    bar = fig.colorbar(im, ax=ax, shrink=0.8, format="{x:.0%}" if normalize else None)
    if not normalize:
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
    ax.set_xticks(range(n), labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=fontsize)
    ax.set_yticks(range(n), labels, fontsize=fontsize)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title("Confusion matrix, row-normalised" if normalize else "Confusion matrix, counts", fontsize=11)
    ax.set_xticks(np.arange(-0.5, n, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, n, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=1)
    ax.tick_params(which="minor", length=0)
    if n <= 25:
        for i in range(n):
            for j in range(n):
                v = values[i, j]
                if np.isnan(v):
                    text = "–"
                elif not normalize and v == 0:
                    text = "0"
                else:
                    text = f"{v:.0%}" if normalize else f"{int(v)}"
                if text:
                    dark = shown[i, j] > 0.55 * vmax
                    ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                            color="white" if dark else ("#9ca3af" if text in ("0", "0%", "–") else "#111827"))
    fig.canvas.draw()
    width, height = fig.bbox.width, fig.bbox.height
    boxes = {}
    for i in range(n):
        for j in range(n):
            (x0, y0), (x1, y1) = ax.transData.transform([(j - 0.5, i - 0.5), (j + 0.5, i + 0.5)])
            left, right = sorted((x0, x1))
            bottom, top = sorted((y0, y1))
            boxes[(i, j)] = (
                round(100 * left / width, 3), round(100 * (height - top) / height, 3),
                round(100 * (right - left) / width, 3), round(100 * (top - bottom) / height, 3),
            )
    return _png(fig, drawn=True), boxes


def reliability_png(calibration: dict) -> bytes:
    """Reliability diagram: accuracy per confidence bin against the diagonal, and how many photos each bin holds."""
    bins = calibration["bins"]
    lo = np.array([b["lo"] for b in bins])
    hi = np.array([b["hi"] for b in bins])
    centre, width = (lo + hi) / 2, hi - lo
    acc = np.array([np.nan if b["accuracy"] is None else b["accuracy"] for b in bins])
    conf = np.array([np.nan if b["confidence"] is None else b["confidence"] for b in bins])
    counts = np.array([b["n"] for b in bins])
    fig = _figure(5.2, 5.4)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    has = counts > 0
    top.bar(centre[has], acc[has], width=width[has] * 0.92, color=_BLUE, alpha=0.85, label="accuracy in bin", zorder=2)
    gap_lo, gap_hi = np.minimum(acc, conf), np.maximum(acc, conf)
    top.bar(centre[has], (gap_hi - gap_lo)[has], bottom=gap_lo[has], width=width[has] * 0.92, facecolor="none",
            hatch="///", edgecolor=_RED, linewidth=1, label="gap to mean confidence", zorder=3)
    top.plot([0, 1], [0, 1], linestyle="--", color=_GREY, linewidth=1, label="perfectly calibrated", zorder=4)
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    ece = calibration.get("ece")
    title = "Reliability diagram" + (f" (ECE {ece:.3f}, {calibration['n']} photos)" if ece is not None else "")
    top.set_title(title, fontsize=11)
    top.legend(loc="upper left", fontsize=8, frameon=False)
    top.grid(alpha=0.3, zorder=0)
    bottom.bar(centre, counts, width=width * 0.92, color=_GREY, alpha=0.8, zorder=2)
    bottom.set_xlabel("confidence of the predicted label")
    bottom.set_ylabel("photos")
    bottom.grid(alpha=0.3, zorder=0)
    bottom.yaxis.get_major_locator().set_params(integer=True)
    return _png(fig)
