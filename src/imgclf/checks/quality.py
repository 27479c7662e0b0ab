"""Photos a model can learn little from: ``too_small``, ``blurry``, ``near_uniform`` (from the fingerprints).

Thresholds from ``benchmarks/check.py``: on flowers-bench at the fingerprint's 256 px scale, no
photo has a contrast below 20 and 1 % have a sharpness below 37, while a Gaussian blur of
σ = 2 px leaves every photo below 18.
"""

from __future__ import annotations

from imgclf.checks.data import CheckData
from imgclf.checks.findings import Finding

#: A photo is ``blurry`` when its strongest edges (:mod:`imgclf.checks.fingerprints`) are weaker than this.
MIN_SHARPNESS = 20.0
#: A photo is ``near_uniform`` when its grey levels' standard deviation is below this (of 255).
MIN_CONTRAST = 8.0


def quality(data: CheckData, input_size: int) -> list[Finding]:
    """Per photo at most one of ``near_uniform``, ``too_small``, ``blurry`` (the first that applies);
    ``too_small`` is a shorter side below half the model's input (the photo is enlarged more than 2×)."""
    p = data.prints
    smallest = input_size // 2
    out = []
    for i in data.unique:
        if not p.ok[i]:
            continue
        w, h = (int(v) for v in p.size[i])
        label = str(data.labels[i])
        if p.contrast[i] < MIN_CONTRAST:
            out.append(Finding("near_uniform", data.paths[i], f"nearly one colour (contrast {p.contrast[i]:.1f} of 255)",
                               1 - float(p.contrast[i]) / MIN_CONTRAST, "remove it unless it shows the label", label=label))
        elif min(w, h) < smallest:
            out.append(Finding("too_small", data.paths[i], f"{w}x{h} px: enlarged {input_size / min(w, h):.1f}x to the model's {input_size} px",
                               1 - min(w, h) / smallest, "replace it with a larger copy", label=label))
        elif p.sharpness[i] < MIN_SHARPNESS:
            out.append(Finding("blurry", data.paths[i], f"blurred (edge strength {p.sharpness[i]:.0f}, sharp photos {MIN_SHARPNESS:.0f} or more)",
                               1 - float(p.sharpness[i]) / MIN_SHARPNESS, "replace it with a sharper photo, or remove it", label=label))
    return sorted(out, key=lambda f: (f.kind, -f.score))
