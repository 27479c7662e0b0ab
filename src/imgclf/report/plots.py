"""The report's figures as SVG text, written directly: crisp at any zoom, and no plotting library to import.

Each function returns UTF-8 SVG bytes (the confusion matrix also the box of every cell, so
the HTML can lay links over the cells).
"""

from __future__ import annotations

from html import escape

import numpy as np

_BLUE = "#2563eb"
_RED = "#dc2626"
_GREY = "#6b7280"
_INK = "#111827"
_FAINT = "#9ca3af"
#: matplotlib's "Blues" colour map, sampled at nine evenly spaced points.
_BLUES = ("#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b")
_FONT = "font-family='system-ui, -apple-system, Segoe UI, Roboto, sans-serif'"


def _blues(t: float) -> str:
    """The colour of ``t`` in [0, 1] on the Blues map (linear between its samples)."""
    t = min(1.0, max(0.0, float(t))) * (len(_BLUES) - 1)
    i = min(int(t), len(_BLUES) - 2)
    a, b = (np.array([int(c[k : k + 2], 16) for k in (1, 3, 5)]) for c in (_BLUES[i], _BLUES[i + 1]))
    r, g, bl = np.rint(a + (b - a) * (t - i)).astype(int)
    return f"#{r:02x}{g:02x}{bl:02x}"


def _svg(width: float, height: float, body: list[str], title: str) -> bytes:
    head = (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width:.0f}' height='{height:.0f}' "
            f"viewBox='0 0 {width:.0f} {height:.0f}' {_FONT} role='img'><title>{escape(title)}</title><desc>imgclf</desc>"
            f"<rect width='100%' height='100%' fill='white'/>")
    return (head + "".join(body) + "</svg>").encode("utf-8")


def _text(x: float, y: float, text: str, size: int = 12, anchor: str = "middle", fill: str = _INK, extra: str = "") -> str:
    return (f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}' text-anchor='{anchor}' fill='{fill}' "
            f"dominant-baseline='central' {extra}>{escape(text)}</text>")


def confusion_matrix_svg(cm, labels: list[str], normalize: bool = False) -> tuple[bytes, dict[tuple[int, int], tuple[float, float, float, float]]]:
    """Heat map of a confusion matrix (rows: true label, columns: predicted).

    With ``normalize`` each row is divided by its total (the diagonal is then the recall).
    Returns the SVG and, for every cell, its box as percentages of the image
    ``(left, top, width, height)``, so HTML can lay links over the cells.
    """
    cm = np.asarray(cm, dtype=float)
    n = len(labels)
    if normalize:
        totals = cm.sum(1, keepdims=True)
        values = np.divide(cm, totals, out=np.full_like(cm, np.nan), where=totals > 0)
        vmax = 1.0
    else:
        values = cm
        vmax = max(1.0, float(cm.max()) if cm.size else 1.0)
    cell = 46 if n <= 8 else 30 if n <= 20 else max(12.0, 460 / max(n, 1))
    size = 12 if n <= 8 else 10 if n <= 20 else 8
    longest = max((len(lab) for lab in labels), default=4)
    char = 0.6 * size
    left = 34 + min(200, char * longest + 10)
    top = 40
    bottom = 36 + min(160, 0.71 * char * longest + 10)
    legend = 70
    title = "Confusion matrix, row-normalised" if normalize else "Confusion matrix, counts"
    width, height = max(left + n * cell + legend, 0.62 * 14 * len(title) + 24), top + n * cell + bottom
    body = [_text(min(left + n * cell / 2, width / 2) if left + n * cell / 2 + 0.31 * 14 * len(title) > width - 8 else left + n * cell / 2,
                  18, title, 14)]
    boxes = {}
    for i in range(n):
        for j in range(n):
            v = values[i, j]
            shown = 0.0 if np.isnan(v) else v
            x, y = left + j * cell, top + i * cell
            body.append(f"<rect x='{x:.1f}' y='{y:.1f}' width='{cell:.1f}' height='{cell:.1f}' fill='{_blues(shown / vmax)}' "
                        "stroke='white' stroke-width='1'/>")
            if n <= 25:
                text = "–" if np.isnan(v) else (f"{v:.0%}" if normalize else f"{int(v)}")
                colour = "white" if shown > 0.55 * vmax else (_FAINT if text in ("0", "0%", "–") else _INK)
                body.append(_text(x + cell / 2, y + cell / 2, text, size, fill=colour))
            boxes[(i, j)] = (round(100 * x / width, 3), round(100 * y / height, 3),
                             round(100 * cell / width, 3), round(100 * cell / height, 3))
    for k, lab in enumerate(labels):
        body.append(_text(left - 6, top + (k + 0.5) * cell, lab, size, anchor="end"))
        x, y = left + (k + 0.5) * cell, top + n * cell + 8
        body.append(_text(x, y, lab, size, anchor="end", extra=f"transform='rotate(-45 {x:.1f} {y:.1f})'"))
    body.append(_text(left + n * cell / 2, height - 12, "predicted label", 12))
    body.append(_text(14, top + n * cell / 2, "true label", 12, extra=f"transform='rotate(-90 14 {top + n * cell / 2:.1f})'"))
    lx, lh = left + n * cell + 18, n * cell
    stops = "".join(f"<stop offset='{k / (len(_BLUES) - 1):.3f}' stop-color='{c}'/>" for k, c in enumerate(reversed(_BLUES)))
    body.append(f"<defs><linearGradient id='cm-scale' x1='0' y1='0' x2='0' y2='1'>{stops}</linearGradient></defs>")
    body.append(f"<rect x='{lx:.1f}' y='{top}' width='12' height='{lh:.1f}' fill='url(#cm-scale)' stroke='{_FAINT}' stroke-width='0.5'/>")
    body.append(_text(lx + 16, top + 4, "100%" if normalize else f"{vmax:.0f}", 10, anchor="start"))
    body.append(_text(lx + 16, top + lh - 4, "0%" if normalize else "0", 10, anchor="start"))
    return _svg(width, height, body, title), boxes


def reliability_svg(calibration: dict) -> bytes:
    """Reliability diagram: accuracy per confidence bin against the diagonal, and how many photos each bin holds."""
    bins = calibration["bins"]
    width, height = 540, 520
    px, py, pw, ph = 64, 44, 440, 300  # the accuracy panel
    cy, chh = py + ph + 36, 80  # the counts panel
    sx = lambda v: px + v * pw  # noqa: E731
    sy = lambda v: py + (1 - v) * ph  # noqa: E731
    ece = calibration.get("ece")
    title = "Reliability diagram" + (f" (ECE {ece:.3f}, {calibration['n']} photos)" if ece is not None else "")
    body = [_text(px + pw / 2, 18, title, 14),
            "<defs><pattern id='gap' width='6' height='6' patternUnits='userSpaceOnUse' patternTransform='rotate(45)'>"
            f"<line x1='0' y1='0' x2='0' y2='6' stroke='{_RED}' stroke-width='1.5'/></pattern></defs>"]
    for t in np.linspace(0, 1, 6):
        body.append(f"<line x1='{sx(t):.1f}' y1='{py}' x2='{sx(t):.1f}' y2='{py + ph}' stroke='#e5e7eb'/>")
        body.append(f"<line x1='{px}' y1='{sy(t):.1f}' x2='{px + pw}' y2='{sy(t):.1f}' stroke='#e5e7eb'/>")
        body.append(_text(px - 8, sy(t), f"{t:.1f}", 11, anchor="end"))
        body.append(_text(sx(t), cy + chh + 14, f"{t:.1f}", 11))
    most = max([b["n"] for b in bins] + [1])
    for b in bins:
        x0, x1 = sx(b["lo"]), sx(b["hi"])
        w, gap = (x1 - x0) * 0.92, (x1 - x0) * 0.04
        if b["n"] and b["accuracy"] is not None:
            acc, conf = b["accuracy"], b["confidence"]
            body.append(f"<rect x='{x0 + gap:.1f}' y='{sy(acc):.1f}' width='{w:.1f}' height='{sy(0) - sy(acc):.1f}' "
                        f"fill='{_BLUE}' fill-opacity='0.85'/>")
            if conf is not None and abs(conf - acc) > 1e-9:
                lo_, hi_ = sorted((acc, conf))
                body.append(f"<rect x='{x0 + gap:.1f}' y='{sy(hi_):.1f}' width='{w:.1f}' height='{sy(lo_) - sy(hi_):.1f}' "
                            f"fill='url(#gap)' stroke='{_RED}' stroke-width='1'/>")
        h = chh * b["n"] / most
        body.append(f"<rect x='{x0 + gap:.1f}' y='{cy + chh - h:.1f}' width='{w:.1f}' height='{h:.1f}' fill='{_GREY}' fill-opacity='0.8'/>")
    body.append(f"<line x1='{sx(0)}' y1='{sy(0)}' x2='{sx(1)}' y2='{sy(1)}' stroke='{_GREY}' stroke-dasharray='5 4'/>")
    body.append(f"<rect x='{px}' y='{py}' width='{pw}' height='{ph}' fill='none' stroke='{_FAINT}'/>")
    body.append(f"<rect x='{px}' y='{cy}' width='{pw}' height='{chh}' fill='none' stroke='{_FAINT}'/>")
    body.append(_text(px - 8, cy, f"{most}", 11, anchor="end"))
    body.append(_text(px - 8, cy + chh, "0", 11, anchor="end"))
    body.append(_text(18, py + ph / 2, "accuracy", 12, extra=f"transform='rotate(-90 18 {py + ph / 2})'"))
    body.append(_text(18, cy + chh / 2, "photos", 12, extra=f"transform='rotate(-90 18 {cy + chh / 2})'"))
    body.append(_text(px + pw / 2, height - 12, "confidence of the predicted label", 12))
    for k, (swatch, label) in enumerate(((f"fill='{_BLUE}'", "accuracy in bin"),
                                         (f"fill='url(#gap)' stroke='{_RED}'", "gap to mean confidence"),
                                         (None, "perfectly calibrated"))):
        y = py + 14 + 18 * k
        if swatch:
            body.append(f"<rect x='{px + 10}' y='{y - 6}' width='16' height='12' {swatch}/>")
        else:
            body.append(f"<line x1='{px + 10}' y1='{y}' x2='{px + 26}' y2='{y}' stroke='{_GREY}' stroke-dasharray='5 4'/>")
        body.append(_text(px + 32, y, label, 11, anchor="start"))
    return _svg(width, height, body, title)
