"""One self-contained HTML page from a results dict: no external URL, photos and plots as ``data:`` URIs.

Everything that comes from file names or labels goes through :func:`html.escape`; a
Content-Security-Policy forbids the page to load anything from anywhere.
"""

from __future__ import annotations

import base64
from collections import defaultdict

from imgclf.report.calibration import bias
from imgclf.report.page import _e, _head

#: Misclassified photos embedded with a thumbnail (worst first); the rest are listed as text.
MAX_MISCLASSIFIED = 200
#: Misclassified photos listed at all.
MAX_MISCLASSIFIED_LISTED = 2000
#: Thumbnails per confusion-matrix cell, and in all cells together.
PER_CELL = 8
MAX_CELL_THUMBS = 400
#: A class with recall below this is flagged in the per-class table.
LOW_RECALL = 0.7


def _pct(v, digits: int = 1) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f}\u00a0%"  # a no-break space: a figure never wraps from its %


def _num(v, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _svg_uri(svg: bytes) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


def _date(s) -> str:
    if not s:
        return "n/a"
    s = str(s).replace("T", " ")
    return s[:16] + " UTC" if s.endswith("+00:00") else s


def _seconds(s) -> str:
    if s is None:
        return "n/a"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def render(results: dict, title: str, figures: dict, calibration: dict | None, thumbs, version: str = "", heatmaps=None) -> str:
    """The report page. ``figures`` maps ``confusion``/``confusion_normalized`` to ``(svg, cell boxes)`` and
    ``reliability`` to an SVG; ``thumbs(path)`` returns a thumbnail ``data:`` URI or None."""
    labels = results["labels"]
    index = {lab: i for i, lab in enumerate(labels)}
    photos = results.get("photos") or []
    wrong = sorted((p for p in photos if p["predicted"] != p["label"]), key=lambda p: -p["confidence"])
    miss_id = {id(p): f"miss-{k}" for k, p in enumerate(wrong)}
    cells = defaultdict(list)
    for p in photos:
        if p["label"] in index and p["predicted"] in index:
            cells[(index[p["label"]], index[p["predicted"]])].append(p)
    n = results.get("n") or 0
    parts = [
        _head(title),
        _header(results, title, calibration),
        _nav(n, calibration),
    ]
    if n:
        parts += [
            _confusion(results, figures, cells, thumbs, miss_id),
            _per_class(results),
            _levels(results.get("hierarchy")),
            _misclassified(wrong, thumbs, n, heatmaps),
            _calibration(calibration, figures, results),
        ]
    else:
        parts.append('<section><p class="note">No held-out photos were measured, so there is no accuracy, '
                     'confusion matrix or calibration to show. Add photos (or a <code>test/</code> folder) '
                     'and train again.</p></section>')
    parts.append(_data(results))
    if results.get("check"):
        from imgclf.report.findings import advice_section, findings_section

        parts.append(findings_section(results["check"], thumbs))
        parts.append(advice_section(results["check"]))
    parts.append(_footer(results, version))
    return "\n".join(parts) + "\n</main>\n" + _SCRIPT + "\n</body>\n</html>\n"


def _header(results: dict, title: str, calibration: dict | None) -> str:
    info = results.get("info") or {}
    n = results.get("n") or 0
    correct = sum(results["confusion_matrix"][i][i] for i in range(len(results["labels"]))) if n else 0
    if results.get("kind") == "training":
        split = results.get("split")
        est = results.get("estimate")
        what = (f"the <b>{_e(split)}</b> split held out from training ({n} photo{'s' if n != 1 else ''})" if split
                else "no held-out photos")
        extra = ""
        if split == "test" and results.get("val_n"):
            extra = f" · validation accuracy {_pct(results.get('val_accuracy'))} on {results['val_n']} photos"
        sub = (f"Accuracy on new photos is estimated from {_e(est['method'])}; the figures below it are measured on {what}{extra}."
               if est else f"Measured on {what}{extra}.")
    else:
        sub = f"Measured on <code>{_e(info.get('data') or '?')}</code> ({n} photos)."
        if info.get("model_dir"):
            sub += f" Model: <code>{_e(info['model_dir'])}</code>."
    interval = results.get("accuracy_interval")
    split = results.get("split")
    measured = ("accuracy on the " + ("test" if split == "test" else "validation") + " split"
                if results.get("kind") == "training" else "accuracy")
    tiles = [
        *([("accuracy on new photos", _pct(est["accuracy"]),
            _e(f"95\u00a0% interval {_pct(est['low'], 0)}–{_pct(est['high'], 0)} · {est['method']}"))]
          if (est := results.get("estimate")) else []),
        (measured, _pct(results.get("accuracy")),
         (f"{correct} of {n} photos right" + (f" · 95\u00a0% interval {_pct(interval[0], 0)}–{_pct(interval[1], 0)}" if interval else ""))
         if n else "no photos"),
        *([("answered", _pct(results["coverage"]), _e(f"the rest are 'unknown'; {_pct(results['selective_accuracy'])} of those "
                                                          f"answered are right, {_pct(results['accuracy_with_unknown'])} of all"))]
          if results.get("coverage") is not None else []),
        ("macro-F1", _num(results.get("macro_f1")), "F1 (precision and recall together) averaged over labels"),
        ("photos", str(n), f"{len(results['labels'])} labels"),
        ("confidence error", _num(calibration["ece"]) if calibration else "n/a",
         f"how far confidence is from accuracy (ECE; 0 is perfect) over {calibration['n']} photos" if calibration else ""),
        ("backbone", _e(info.get("backbone") or "n/a"), ""),
        ("training time", _seconds(info.get("training_seconds")), ""),
        ("date", _e(_date(info.get("date"))[:10]), _e(_date(info.get("date"))[11:])
         + (" · model trained " + _e(_date(info.get("model_created"))[:10])
            if results.get("kind") == "evaluation" and info.get("model_created") else "")),
    ]
    tiles_html = "".join(
        f'<div class="tile{" wide" if len(v) > 14 or k == "accuracy on new photos" else ""}" data-key="{_e(k)}"><div class="k">{_e(k)}</div>'
        f'<div class="v{" txt" if len(v) > 9 else ""}">{v}</div>'
        f'<div class="s">{s}</div></div>' for k, v, s in tiles
    )
    return f'<header><h1>{_e(title)}</h1><p class="sub">{sub}</p><div class="tiles" id="headline">{tiles_html}</div></header>'


def _nav(n: int, calibration) -> str:
    links = []
    if n:
        links += [("confusion", "Confusion matrix"), ("per-class", "Per class"), ("misclassified", "Misclassified"),
                  ("calibration", "Calibration")]
    links.append(("data", "Data"))
    return '<nav>' + " ".join(f'<a href="#{k}">{v}</a>' for k, v in links) + '</nav>'


def _confusion(results: dict, figures: dict, cells, thumbs, miss_id) -> str:
    labels = results["labels"]
    cm = results["confusion_matrix"]
    imgs = []
    for key, img_id, alt in (("confusion", "confusion-matrix", "confusion matrix, counts"),
                             ("confusion_normalized", "confusion-matrix-normalized", "confusion matrix, row-normalised")):
        if key not in figures:
            continue
        svg, boxes = figures[key]
        links = []
        for (i, j), (left, top, w, h) in boxes.items():
            count = cm[i][j]
            if not count:
                continue
            tip = f"true {labels[i]}, predicted {labels[j]}: {count} photo{'s' if count != 1 else ''}"
            links.append(f'<a class="cell" href="#cell-{i}-{j}" title="{_e(tip)}" aria-label="{_e(tip)}" data-count="{count}" '
                         f'style="left:{left}%;top:{top}%;width:{w}%;height:{h}%"></a>')
        imgs.append(f'<figure><div class="cm"><img id="{img_id}" src="{_svg_uri(svg)}" alt="{_e(alt)}">{"".join(links)}</div></figure>')
    groups = []
    budget = MAX_CELL_THUMBS
    for i in range(len(labels)):
        for j in range(len(labels)):
            count = cm[i][j]
            if not count:
                continue
            members = cells.get((i, j), [])
            # Wrong cells: most confident mistakes first; right cells: the least sure first (the near misses).
            members = sorted(members, key=(lambda p: -p["confidence"]) if i != j else (lambda p: p["confidence"]))
            items = []
            for p in members[:PER_CELL]:
                uri = thumbs(p["path"]) if budget > 0 else None
                if uri:
                    budget -= 1
                target = miss_id.get(id(p))
                inner = (f'<img src="{uri}" alt="{_e(p["path"])}" loading="lazy">' if uri
                         else f'<span class="name">{_e(_basename(p["path"]))}</span>')
                body = f'{inner}<span class="c">{_pct(p["confidence"], 0)}</span>'
                tip = f'{p["path"]} ({100 * p["confidence"]:.1f} % {p["predicted"]})'
                items.append(f'<a class="ph" href="#{target}" title="{_e(tip)}">{body}</a>' if target
                             else f'<span class="ph" title="{_e(tip)}">{body}</span>')
            more = len(members) - PER_CELL
            if more > 0:
                items.append(f'<span class="more">and {more} more</span>')
            kind = "right" if i == j else "wrong"
            head = (f'<b>{_e(labels[i])}</b> → <b>{_e(labels[j])}</b> · {count} photo{"s" if count != 1 else ""}'
                    + (" (correct; least confident first)" if i == j else " (wrong; most confident first)"))
            groups.append(f'<div class="group {kind}" id="cell-{i}-{j}" data-true="{_e(labels[i])}" data-predicted="{_e(labels[j])}" '
                          f'data-count="{count}"><h3>{head}</h3><div class="strip">{"".join(items)}</div></div>')
    return (
        '<section id="confusion"><h2>Confusion matrix</h2>'
        '<p class="note">Rows are the true labels, columns the predictions; the diagonal is right. '
        'Click a cell to see its photos.</p>'
        f'<div class="figs{" many" if len(labels) > 12 else ""}">{"".join(imgs)}</div>'
        f'<h3 class="sect">Photos by cell</h3><div class="groups">{"".join(groups)}</div></section>'
    )


def _basename(path: str) -> str:
    return str(path).replace("\\", "/").rsplit("/", 1)[-1]


def _levels(tree: dict | None) -> str:
    """The label tree's levels (``--hierarchy``): each level's accuracy and where answers stop."""
    if not tree:
        return ""
    rows = "".join(
        f'<tr><td>{lv["level"]}</td><td class="n">{lv["nodes"]}</td><td class="n">{_pct(lv["accuracy"])}</td>'
        f'<td class="n">{_pct(lv["stopped"])}</td><td class="n">{_pct(lv["stopped_right"])}</td></tr>' for lv in tree["levels"])
    return (f'<section id="levels"><h2>Levels of the label tree</h2><p class="note">An answer goes down a level while that '
            f'level\'s best label is at least {_pct(tree["target"])} sure; measured on {_e(tree["measured_on"])}.</p>'
            '<table class="plain"><thead><tr><th>level</th><th>labels</th><th>best guess right</th><th>answers that stop here'
            f'</th><th>right when they stop here</th></tr></thead><tbody>{rows}</tbody></table></section>')


def _per_class(results: dict) -> str:
    labels = results["labels"]
    cm = results["confusion_matrix"]
    counts = results.get("counts")
    rows = []
    for i, lab in enumerate(labels):
        m = results["per_class"].get(lab) or {}
        off = [(cm[i][j], labels[j]) for j in range(len(labels)) if j != i and cm[i][j]]
        confused = max(off)[1] if off else ""
        confused_n = max(off)[0] if off else 0
        low = m.get("support") and m.get("recall") is not None and m["recall"] < LOW_RECALL
        train = f'<td class="n" data-v="{counts[lab]["train"]}">{counts[lab]["train"]}</td>' if counts else ""
        predicted = sum(cm[r][i] for r in range(len(labels)))
        cls = "low" if low else "none" if not m.get("support") else ""
        tds = []
        for k in ("precision", "recall", "f1"):
            # Recall and F1 need photos of the class; precision needs predictions of it.
            defined = predicted if k == "precision" else m.get("support")
            v = m.get(k) if defined else None
            tds.append(f'<td class="n" data-v="{-1 if v is None else v}">{"–" if v is None else _num(v)}{_bar(v)}</td>')
        tds.append(f'<td class="n" data-v="{m.get("support", 0)}">{m.get("support", 0)}</td>')
        rows.append(
            f'<tr data-label="{_e(lab)}"{f" class={cls}" if cls else ""}><td>{_e(lab)}</td>'
            + "".join(tds)
            + train
            + f'<td data-v="{_e(confused)}">{_e(confused)}{f" ({confused_n})" if confused else ""}</td></tr>'
        )
    heads = ["label", "precision", "recall", "F1", "support"] + (["train photos"] if counts else []) + ["most confused with"]
    th = "".join(f'<th scope="col"><button type="button">{h}</button></th>' for h in heads)
    return (
        '<section id="per-class"><h2>Per class</h2>'
        f'<p class="note">Click a column to sort. Rows with recall below {LOW_RECALL:.0%} are marked red; '
        '“–” means the class had no photos (recall, F1) or was never predicted (precision) here.</p>'
        f'<table class="sortable" id="per-class-table"><thead><tr>{th}</tr></thead><tbody>{"".join(rows)}</tbody></table></section>'
    )


def _bar(v) -> str:
    if v is None:
        return ""
    return f'<span class="mini"><span style="width:{100 * v:.1f}%"></span></span>'


def _topk_bars(p: dict) -> str:
    rows = []
    shown = set()
    for t in p.get("top_k") or []:
        cls = "t" if t["label"] == p["label"] else "p" if t["label"] == p["predicted"] else ""
        shown.add(t["label"])
        rows.append(_bar_row(t["label"], t["confidence"], cls))
    if p["label"] not in shown and p.get("label_confidence") is not None:
        rows.append(_bar_row(p["label"], p["label_confidence"], "t"))
    return f'<div class="bars">{"".join(rows)}</div>'


def _bar_row(label: str, conf: float, cls: str) -> str:
    return (f'<div class="br {cls}"><span class="bl">{_e(label)}</span><span class="bt"><span style="width:{100 * conf:.1f}%">'
            f'</span></span><span class="bv">{100 * conf:.1f} %</span></div>')


def _misclassified(wrong: list[dict], thumbs, n: int, heatmaps=None) -> str:
    if not wrong:
        return '<section id="misclassified"><h2>Misclassified photos</h2><p class="note">Every photo was classified correctly.</p></section>'
    cards = []
    for k, p in enumerate(wrong[:MAX_MISCLASSIFIED]):
        uri = thumbs(p["path"])
        img = f'<img src="{uri}" alt="{_e(p["path"])}" loading="lazy">' if uri else '<div class="noimg">no preview</div>'
        heat = heatmaps(p["path"], p["predicted"]) if heatmaps and uri else None
        if heat:
            img += (f'<img class="heat" src="{heat}" alt="where the model looked for {_e(p["predicted"])}" '
                    f'title="where the model looked for {_e(p["predicted"])}" loading="lazy">')
        cards.append(
            f'<article class="miss" id="miss-{k}" data-path="{_e(p["path"])}" data-label="{_e(p["label"])}" data-predicted="{_e(p["predicted"])}">'
            f'<div class="thumb">{img}</div><div class="info"><div class="path">{_e(p["path"])}</div>'
            f'<div class="verdict">true <b class="tl">{_e(p["label"])}</b>, predicted <b class="pl">{_e(p["predicted"])}</b> '
            f'at {100 * p["confidence"]:.1f} %</div>{_topk_bars(p)}</div></article>'
        )
    rest = wrong[MAX_MISCLASSIFIED:MAX_MISCLASSIFIED_LISTED]
    rest_html = ""
    if rest:
        rows = "".join(
            f'<tr class="miss-row" id="miss-{MAX_MISCLASSIFIED + k}"><td class="path">{_e(p["path"])}</td><td>{_e(p["label"])}</td>'
            f'<td>{_e(p["predicted"])}</td><td class="n">{100 * p["confidence"]:.1f} %</td></tr>'
            for k, p in enumerate(rest)
        )
        rest_html = (f'<h3 class="sect">The next {len(rest)} (no preview)</h3><table class="plain"><thead><tr><th>photo</th>'
                     f'<th>true</th><th>predicted</th><th>confidence</th></tr></thead><tbody>{rows}</tbody></table>')
    unlisted = len(wrong) - MAX_MISCLASSIFIED_LISTED
    if unlisted > 0:
        rest_html += f'<p class="note">{unlisted} more are not listed here.</p>'
    return (
        f'<section id="misclassified"><h2>Misclassified photos <span class="count">{len(wrong)} of {n}</span></h2>'
        '<p class="note">Worst first: the most confident mistakes lead. Bars show the top predictions; '
        '<span class="key t">true label</span> <span class="key p">prediction</span>.</p>'
        f'<div class="misses">{"".join(cards)}</div>{rest_html}</section>'
    )


def _calibration(calibration: dict | None, figures: dict, results: dict) -> str:
    if not calibration:
        return ('<section id="calibration"><h2>Calibration</h2><p class="note">No per-photo confidences were recorded, '
                'so calibration cannot be shown.</p></section>')
    side = bias(calibration)
    if side == "matched":
        verdict = "Confidence matches accuracy closely on these photos."
    else:
        verdict = (f"The model is <b>{side}-confident</b>: its mean confidence ({_pct(calibration['mean_confidence'])}) "
                   f"{'exceeds' if side == 'over' else 'is below'} its accuracy ({_pct(calibration['accuracy'])}).")
    img = ""
    if "reliability" in figures:
        img = f'<figure><img id="reliability-diagram" src="{_svg_uri(figures["reliability"])}" alt="reliability diagram"></figure>'
    rows = "".join(
        f'<tr><td class="n">≥ {t["threshold"]:.0%}</td><td class="n">{t["accepted"]}</td><td class="n">{t["rejected"]}</td>'
        f'<td class="n">{_pct(t["accuracy"])}</td></tr>'
        for t in calibration.get("thresholds") or []
    )
    small = (f' With {calibration["n"]} photos, every estimate here is rough.' if calibration["n"] < 100 else "")
    rejection = ""
    rej = results.get("rejection")
    if rej:
        thr = f' (similarity below {rej["threshold"]:.2f})' if rej.get("threshold") is not None else ""
        rejection = (f'<h3 class="sect" id="rejection">Rejected as unknown{thr}</h3><table class="plain"><tbody>'
                     f'<tr><th>accepted</th><td class="n">{_e(rej.get("accepted", "n/a"))}</td></tr>'
                     f'<tr><th>rejected</th><td class="n">{_e(rej.get("rejected", "n/a"))}</td></tr>'
                     + (f'<tr><th>calibrated on</th><td>{_e(rej["n"])} held-out scores: new photos of the known labels '
                        f'accepted {_pct(rej["expected_acceptance"])} (95 % interval {_pct(rej["acceptance_interval"][0])}–'
                        f'{_pct(rej["acceptance_interval"][1])})</td></tr>' if rej.get("n") else "")
                     + '</tbody></table>')
    where = (f' Measured on every labelled photo\'s answer from a head that never saw it ({_e(results["calibration_method"])}).'
             if results.get("calibration_method") else "")
    return (
        '<section id="calibration"><h2>Calibration</h2><div class="cal">'
        f'{img}<div><p>Expected calibration error: <b id="ece">{calibration["ece"]:.3f}</b> '
        '(the average gap between confidence and accuracy, weighted by how many photos fall in each confidence bin; '
        f'0 means a prediction made with 80 % confidence is right 80 % of the time).{where}</p><p>{verdict}{small}</p>'
        '<h3 class="sect">If you only trust confident predictions</h3>'
        '<table class="plain"><thead><tr><th>confidence</th><th>kept</th><th>set aside</th><th>accuracy of kept</th></tr></thead>'
        f'<tbody>{rows}</tbody></table>{rejection}</div></div></section>'
    )


def _data(results: dict) -> str:
    parts = []
    counts = results.get("counts")
    if counts:
        rows = "".join(
            f'<tr><td>{_e(lab)}</td><td class="n">{c["train"]}</td><td class="n">{c["val"]}</td><td class="n">{c["test"]}</td>'
            f'<td class="n">{sum(c.values())}</td></tr>' for lab, c in counts.items()
        )
        tot = {s: sum(c[s] for c in counts.values()) for s in ("train", "val", "test")}
        rows += (f'<tr class="total"><td>total</td><td class="n">{tot["train"]}</td><td class="n">{tot["val"]}</td>'
                 f'<td class="n">{tot["test"]}</td><td class="n">{sum(tot.values())}</td></tr>')
        parts.append('<h3 class="sect">Photos per label and split</h3><table class="plain" id="counts"><thead><tr><th>label</th>'
                     f'<th>train</th><th>val</th><th>test</th><th>total</th></tr></thead><tbody>{rows}</tbody></table>')
    warnings = results.get("warnings") or []
    if warnings:
        parts.append('<h3 class="sect">Warnings</h3><ul class="warnings">'
                     + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul>")
    if results.get("unknown_labels"):
        parts.append('<h3 class="sect">Labels the model does not know (skipped)</h3><p>'
                     + ", ".join(f"<code>{_e(u)}</code>" for u in results["unknown_labels"]) + "</p>")
    for key, heading in (("skipped", "Skipped files"), ("duplicates", "Duplicates"), ("leakage", "Train/test leakage")):
        items = results.get(key) or []
        if items:
            rows = "".join(f'<tr><td class="path">{_e(s["path"])}</td><td>{_e(s["reason"])}</td></tr>' for s in items)
            parts.append(f'<h3 class="sect">{heading} <span class="count">{len(items)}</span></h3>'
                         f'<table class="plain" id="{key}"><thead><tr><th>file</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table>')
    if not any(results.get(k) for k in ("warnings", "unknown_labels", "skipped", "duplicates", "leakage")):
        parts.append('<p class="note">No skipped files and no data warnings.</p>')
    return '<section id="data"><h2>Data</h2>' + "".join(parts) + "</section>"


def _footer(results: dict, version: str) -> str:
    info = results.get("info") or {}
    cmd = f' Command: <code>{_e(info["command"])}</code>.' if info.get("command") else ""
    return f'<footer>Made by imgclf {_e(version)} on {_e(_date(info.get("date")))}.{cmd}</footer>'




_SCRIPT = """<script>
for (const table of document.querySelectorAll("table.sortable")) {
  const heads = [...table.tHead.rows[0].cells];
  heads.forEach((th, col) => th.querySelector("button").addEventListener("click", () => {
    const now = th.getAttribute("aria-sort");
    const dir = now ? (now === "descending" ? 1 : -1) : (col === 0 ? 1 : -1);
    heads.forEach(h => h.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    const key = r => { const c = r.cells[col]; const v = c.dataset.v ?? c.textContent; const f = parseFloat(v);
                       return isNaN(f) ? v.toLowerCase() : f; };
    const body = table.tBodies[0];
    [...body.rows].sort((a, b) => { const x = key(a), y = key(b); return (x < y ? -1 : x > y ? 1 : 0) * dir; })
      .forEach(r => body.appendChild(r));
  }));
}
</script>"""
