"""The findings of ``imgclf check`` as HTML: each with its photo and, side by side, the photo it is
compared with (the copy, examples of the suggested label, typical photos of its label).

:func:`findings_section` is the "Photos to check" section of the training report and the body of
``imgclf check --report``, which :func:`write_check_report` writes as a page of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

from imgclf.report.page import _e, _head

#: Findings shown with thumbnails (worst first within each kind); the rest are listed as text.
MAX_SHOWN = 200

_TITLES = {
    "unreadable": "Unreadable files", "exact_duplicate": "Exact duplicates", "near_duplicate": "Near-duplicates",
    "label_error": "Likely label mistakes", "missing_label": "Labels a photo probably lacks",
    "extra_label": "Labels a photo probably should not have", "outlier": "Outliers", "too_small": "Too small", "blurry": "Blurry",
    "near_uniform": "Nearly one colour", "imbalance": "Imbalance", "confused_labels": "Labels hard to tell apart",
}
def advice_section(check: dict) -> str:
    """What more photos would add (the checks' learning curve), or nothing when there is no advice."""
    advice = check.get("advice") or {}
    if not advice:
        return ""
    curve = "".join(f'<tr><td class="n">{n:.0f}</td><td class="n">{100 * acc:.1f}&nbsp;%</td></tr>' for n, acc in advice["curve"])
    return ('<section id="more-photos"><h2>More photos?</h2>'
            f"<p>{_e(advice['sentence'][0].upper() + advice['sentence'][1:])}.</p>"
            '<p class="note">Read off a learning curve: a classifier fitted on a quarter, half, three quarters and all of '
            'each fold\'s photos, scored on the fold left out, and a power law fitted to it. It predicts the gain over all '
            'labels roughly; which label would gain most it cannot tell (measured on flowers-bench). More photos unlike '
            'these (other light, other settings) can add more.</p>'
            '<table class="plain"><thead><tr><th>photos a label</th><th>accuracy on the fold left out</th></tr></thead>'
            f'<tbody>{curve}</tbody></table></section>')


def findings_section(check: dict, thumbs) -> str:
    """The section of a check result (:meth:`imgclf.checks.CheckResult.to_dict`); ``thumbs(path)`` gives a
    thumbnail ``data:`` URI or None."""
    findings = check.get("findings") or []
    counts = check.get("counts") or {}
    if not findings:
        return ('<section id="check"><h2>Photos to check</h2><p class="note">No problems found: no copies, likely label '
                'mistakes, outliers, unreadable, tiny, blurred or flat photos.</p></section>')
    summary = ", ".join(f'<a href="#check-{k}">{_e(_TITLES[k])}: {n}</a>' for k, n in counts.items() if n)
    parts = [f'<section id="check"><h2>Photos to check <span class="count">{len(findings)}</span></h2>'
             f'<p class="note">{summary}. imgclf moves or deletes nothing: act on these by hand '
             '(<code>imgclf check DATA --fix-plan plan.csv</code> writes them as a table to edit).</p>']
    shown = 0
    for kind in _TITLES:
        items = [f for f in findings if f["kind"] == kind]
        if not items:
            continue
        parts.append(f'<h3 class="sect" id="check-{kind}">{_TITLES[kind]} <span class="count">{len(items)}</span></h3>')
        for f in items:
            parts.append(_card(f, thumbs if shown < MAX_SHOWN else (lambda _p: None)))
            shown += bool(f.get("path"))
    parts.append("</section>")
    return "".join(parts)


def _card(f: dict, thumbs) -> str:
    pics = []
    if f.get("path"):  # captioned with its label, but for a label it lacks
        own = f.get("label") if f["kind"] != "missing_label" else None
        pics.append(_figure(f["path"], own or "this photo", thumbs))
    if f.get("other"):
        pics.append(_figure(f["other"], "the other copy", thumbs))
    caption = f.get("suggested") or f"typical {f.get('label', '')}"
    for path in f.get("examples") or []:
        pics.append(_figure(path, caption, thumbs))
    tags = ('<span class="tag">leakage</span>' if f.get("leakage") else "") + ('<span class="tag">conflict</span>' if f.get("conflict") else "")
    cls = "finding" + (" tag-conflict" if f.get("conflict") else " tag-leak" if f.get("leakage") else "")
    where = f'<div class="path">{_e(f["path"])}</div>' if f.get("path") else f'<div><b>{_e(" / ".join(f.get("labels") or [f.get("label", "")]))}</b></div>'
    return (f'<article class="{cls}" data-kind="{_e(f["kind"])}"><div class="pics">{"".join(pics)}</div><div class="what">{where}'
            f'<div>{_e(f["reason"])}{tags}</div><div class="act">→ {_e(f["action"])}</div>'
            f'<div class="note">score {f["score"]:.3f}</div></div></article>')


def _figure(path: str, caption: str, thumbs) -> str:
    uri = thumbs(path)
    img = f'<img src="{uri}" alt="{_e(path)}" title="{_e(path)}" loading="lazy">' if uri else '<div class="noimg">no preview</div>'
    return f"<figure>{img}<figcaption>{_e(caption)}</figcaption></figure>"


def write_check_report(path: str | os.PathLike, check: dict, title: str, images: bool = True, write=None) -> Path:
    """``imgclf check --report``: one self-contained page (thumbnails embedded, nothing loaded from anywhere),
    written by ``write(path, bytes)`` (default: atomically)."""
    from imgclf.runtime.artifact import IMGCLF_VERSION as __version__
    from imgclf.files import write_bytes_atomic
    from imgclf.report.thumbnails import Thumbnails

    n, labels = check.get("photos", 0), check.get("labels") or []
    intro = (f'<header><h1>{_e(title)}</h1><p class="note">{n} photos under {len(labels)} labels '
             f'({_e(", ".join(labels))}) in <code>{_e(check.get("root", ""))}</code>.</p></header>')
    page = (_head(title) + intro + findings_section(check, Thumbnails(enabled=images))
            + f'<footer>Made by imgclf {_e(__version__)}.</footer></main></body></html>\n')
    (write or write_bytes_atomic)(Path(path), page.encode("utf-8"))
    return Path(path)

