"""The card (``README.md``) and the report page of a model that answers several labels per photo, and of its evaluation:
the per-label table (how often an answered label is right, how many of a label's photos it finds), and for each label
the photos it missed and the photos it added."""

from __future__ import annotations

import os
from pathlib import Path

from imgclf.report.findings import findings_section
from imgclf.report.page import _e, _head
from imgclf.report.thumbnails import Thumbnails


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f} %"


def _iv(p: dict) -> str:
    iv = p.get("interval")
    return "" if not iv else f" ({100 * iv[0]:.0f}–{100 * iv[1]:.0f} %, n = {p['n']})"


def summary_lines(m: dict) -> list[str]:
    """The estimate in plain words, a line each (the card, the command line)."""
    exact, hamming = m["exact_set"], m["hamming_loss"]
    lines = [f"exactly the right labels on {_pct(exact['value'])} of photos{_iv(exact)}",
             f"mean average precision {m['mean_average_precision']:.3f} (1 = every label's photos ranked first)"
             if m.get("mean_average_precision") is not None else "mean average precision: —",
             f"label decisions wrong (Hamming loss): {_pct(hamming['value'])}{_iv(hamming)}"]
    if m["none_right"]["n"]:
        lines.append(f"photos with none of the labels answered 'none': {_pct(m['none_right']['value'])}{_iv(m['none_right'])}")
    return lines


def headline(metrics: dict) -> dict | None:
    """The few numbers a page shows of a multi-label model's ``metrics.json`` (None for a one-label model): the mean
    over labels of precision and recall, the share of exact sets, mean AP, how they were measured."""
    several = metrics.get("multi_label")
    if not isinstance(several, dict):
        return None
    rows = [r for r in (several.get("per_label") or {}).values() if isinstance(r, dict)]

    def mean(key: str) -> float | None:
        values = [(r.get(key) or {}).get("value") for r in rows]
        return sum(values) / len(values) if values and None not in values else None

    return {"precision": mean("precision"), "recall": mean("recall"), "exact_set": (several.get("exact_set") or {}).get("value"),
            "mean_average_precision": several.get("mean_average_precision"), "method": several.get("method")}


def label_rows(m: dict) -> list[tuple[str, str, str, str, str, str]]:
    """Per label: name, photos, precision, recall, F1, AP — as text."""
    out = []
    for lab, r in m["per_label"].items():
        f = "—" if r["f1"] is None else f"{r['f1']:.3f}"
        ap = "—" if r["average_precision"] is None else f"{r['average_precision']:.3f}"
        out.append((lab, str(r["photos"]), _pct(r["precision"]["value"]), _pct(r["recall"]["value"]), f, ap))
    return out


def render_multilabel_card(meta: dict, metrics: dict) -> str:
    """``README.md`` of a multi-label model folder."""
    m = metrics["multi_label"]
    labels = meta["labels"]
    ml = meta["multi_label"]
    rows = "\n".join(f"| {lab} | {n} | {p} | {r} | {f} | {ap} | {t:.3f} |"
                     for (lab, n, p, r, f, ap), t in zip(label_rows(m), ml["thresholds"]))
    rule = metrics.get("rejection") or {}
    return f"""# imgclf model: several labels per photo

Tells which of {len(labels)} labels a photo shows — any number of them: {", ".join(labels)}. A photo showing none
of them is answered `none`; a photo unlike all the training photos, `unknown`.

Trained on {metrics['photos']['total']} photos ({metrics['photos']['labels_per_photo']} labels a photo on average,
{metrics['photos']['with_no_label']} with none), labels from {ml['source']}.

## How good it is

Measured by {m['method']}:

{chr(10).join('- ' + line for line in summary_lines(m))}

| label | photos | right when answered (precision) | found (recall) | F1 | average precision | threshold |
|---|---|---|---|---|---|---|
{rows}

Each label's probability is calibrated (Platt scaling on out-of-fold scores; mean calibration error
{m['mean_calibration_error']}); a label is answered when its probability reaches its threshold, chosen as
{ml['rule']}.

## Limitations

- Each label is decided on its own; labels that always come together are not known to.
- A photo scores against ten views of itself (whole, and a 3 × 3 grid of half-size crops): an object smaller than
  about a tenth of the photo may be missed.
- "unknown" means less like the training photos than {_pct(rule.get('target_acceptance'))} of new photos of the
  labels are: photos of new kinds may still pass.

## Use it

```
imgclf predict MODEL photo.jpg
imgclf serve MODEL
```

`model.onnx` takes a (N, 3, {meta['preprocessing']['input_size']}, {meta['preprocessing']['input_size']}) batch and
answers `probabilities` (one independent probability per label) and `similarity`; `imgclf.json` holds each label's
threshold.
"""


def write_multilabel_report(path: str | os.PathLike, meta: dict, metrics: dict, title: str, images: bool = True,
                            write=None) -> list[Path]:
    """The HTML report of a multi-label model or evaluation (``metrics["multi_label"]``) at ``path``."""
    from imgclf.files import write_bytes_atomic

    write = write or write_bytes_atomic
    thumbs = Thumbnails(enabled=images)
    m = metrics["multi_label"]
    tiles = [("photos", str(m["photos"]), "measured"),
             ("exact sets", _pct(m["exact_set"]["value"]), "all labels right"),
             ("mean AP", "—" if m["mean_average_precision"] is None else f"{m['mean_average_precision']:.3f}", "ranking, 1 = perfect"),
             ("decisions wrong", _pct(m["hamming_loss"]["value"]), "Hamming loss"),
             ("calibration error", "—" if m["mean_calibration_error"] is None else f"{100 * m['mean_calibration_error']:.1f} pts",
              "mean over labels")]
    tile_html = "".join(f'<div class="tile"><div class="k">{_e(k)}</div><div class="v">{_e(v)}</div>'
                        f'<div class="s">{_e(s)}</div></div>' for k, v, s in tiles)
    head = ("<tr><th>label</th><th class=n>photos</th><th class=n>right when answered</th><th class=n>found</th>"
            "<th class=n>F1</th><th class=n>average precision</th><th class=n>threshold</th><th class=n>calibration error</th></tr>")
    body = "".join(
        f"<tr><td>{_e(lab)}</td><td class=n>{r['photos']}</td><td class=n>{_pct(r['precision']['value'])}</td>"
        f"<td class=n>{_pct(r['recall']['value'])}</td><td class=n>{'—' if r['f1'] is None else format(r['f1'], '.3f')}</td>"
        f"<td class=n>{'—' if r['average_precision'] is None else format(r['average_precision'], '.3f')}</td>"
        f"<td class=n>{r['threshold']:.3f}</td>"
        f"<td class=n>{'—' if r['calibration_error'] is None else format(100 * r['calibration_error'], '.1f') + ' pts'}</td></tr>"
        for lab, r in m["per_label"].items())
    sections = []
    for lab, r in m["per_label"].items():
        strips = "".join(_strip(f"{what} ({len(r.get(key) or [])}{'+' if len(r.get(key) or []) >= 12 else ''})",
                                r.get(key) or [], thumbs)
                         for key, what in (("missed", f"photos with {lab} it did not answer"),
                                           ("added", f"photos without {lab} it answered {lab}")))
        sections.append(f'<div class="group"><h3>{_e(lab)}</h3>{strips}</div>')
    page = (f"{_head(title)}<h1>{_e(title)}</h1><p class=sub>{_e(m.get('method', ''))}</p>"
            f'<div class="tiles">{tile_html}</div>'
            f'<section><h2>Each label</h2><p class=note>"Right when answered" is precision: of the photos it gave this '
            f'label, the share that have it. "Found" is recall: of the photos that have it, the share it gave it.</p>'
            f'<div class="scroll"><table>{head}{body}</table></div></section>'
            f'<section><h2>What each label missed and added</h2><div class="groups">{"".join(sections)}</div></section>'
            + (findings_section(metrics["check"], thumbs) if metrics.get("check") else "") +
            f"<footer>imgclf {_e(meta.get('imgclf_version', ''))}</footer></main></body></html>")
    path = Path(path)
    write(path, page.encode("utf-8"))
    return [path]


def _strip(title: str, paths: list[str], thumbs) -> str:
    if not paths:
        return f'<p class=note>{_e(title)}: none</p>'
    items = []
    for p in paths:
        uri = thumbs(p)
        inner = f'<img src="{uri}" alt="">' if uri else f'<span class="name">{_e(Path(p).name)}</span>'
        items.append(f'<span class="ph" title="{_e(p)}">{inner}</span>')
    return f'<p class=note>{_e(title)}</p><div class="strip">{"".join(items)}</div>'
