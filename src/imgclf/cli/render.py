"""What the commands print: progress bars and tables (Rich, imported only to draw them), JSON and CSV.

Every path and label is printed literally (no Rich markup, no emoji codes).
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

from imgclf.files import printable

#: The predictions table fits this many columns when the terminal is not wider; a photo's path
#: keeps up to PATH_WIDTH characters on one line.
TABLE_WIDTH = 80
PATH_WIDTH = 32
ANSWER_WIDTH = 24
GAP = "   "


def _stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False, markup=False, emoji=False)


def _stdout():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, markup=False, emoji=False)


class _Out:
    """Standard output for summaries: text wrapped to the terminal's width between words (a word is never cut in
    two, later lines indented), anything else (a Rich table) drawn by Rich."""

    def __init__(self):
        self._rich = None

    def print(self, obj, indent: str = "  ") -> None:
        if isinstance(obj, str):
            print(wrapped(obj, indent), flush=True)
            return
        if self._rich is None:
            self._rich = _stdout()
        self._rich.print(obj)


def _photos(n: int) -> str:
    return f"{n} photo" if n == 1 else f"{n} photos"


def width() -> int:
    """The width output is fitted to: ``COLUMNS``, else the terminal's, at most :data:`TABLE_WIDTH`."""
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() else min(TABLE_WIDTH, _terminal_width())


def wrapped(text: str, indent: str = "  ") -> str:
    """``text`` wrapped at :func:`width` between words; continuation lines start with ``indent``."""
    import textwrap

    if not text.strip():
        return text
    lead = text[: len(text) - len(text.lstrip(" "))]
    return "\n".join(textwrap.wrap(text.lstrip(" "), width(), initial_indent=lead, subsequent_indent=lead + indent,
                                   break_long_words=False, break_on_hyphens=False))


def _styled(text: str, style: str):
    from rich.text import Text

    return Text(text, style=style)


def line(text: str) -> None:
    """One line of results on stdout."""
    print(text, flush=True)


class ProgressBar:
    """Rich progress bars on stderr, one per stage, shown only on a terminal and only once there is progress."""

    def __init__(self, description: str, disabled: bool = False):
        self.description, self.disabled = description, disabled
        self._progress = self._task = None
        self._stage = None

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def log(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(_styled(message, "dim"))
        else:
            _stderr().print(_styled(message, "dim"))

    def update(self, done: int, total: int, stage: str | None = None, info: str = "") -> None:
        if self.disabled:
            return
        if self._progress is None:
            if not sys.stderr.isatty():  # no bar in logs and pipes
                self.disabled = True
                return
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"), console=_stderr(), transient=True,
            )
            self._progress.start()
        stage = stage or self.description
        if stage != self._stage:
            self._stage = stage
            self._task = self._progress.add_task(stage, total=total, info="")
        self._progress.update(self._task, completed=done, total=total, info=info)


#: What a progress bar says for a stage's work when the event names nothing more precise.
STAGE_WORDS = {"embed": "embedding photos", "fit": "fitting", "check": "checking photos"}


def stage_events(bar: ProgressBar, quiet: bool = False):
    """The callback that draws a training run's events: progress as bars, messages as dim lines."""
    def on_event(event) -> None:
        if event.total:
            bar.update(event.done, event.total, stage=event.message or STAGE_WORDS.get(event.stage, event.stage), info=event.detail)
        elif event.message and not quiet:
            bar.log(event.message)

    return on_event


# --- predict ------------------------------------------------------------------------------------------

def predictions(preds, fmt: str, top_k: int, asked=(), threshold: float | None = None, explain_dir=None,
                error_rate: float | None = None) -> int:
    """Print ``preds`` as a table, JSON or CSV, and on stderr the files skipped; the exit code (:func:`read_status`).

    The table shows each path relative to the folder it was found in when a folder was asked for, and says why
    a photo is ``unknown`` against the model's ``threshold``; ``explain_dir`` is named where the heatmaps went.
    """
    rows = [p.to_row() for p in preds]
    failed = [r for r in rows if r["status"] == "error"]
    if fmt == "table" and rows and len(failed) == len(rows):  # nothing to show but the reasons: one line for one problem
        if len(rows) == 1:
            print(f"error: cannot read {printable(rows[0]['path'])}: {rows[0]['error']}", file=sys.stderr)
        else:
            for r in failed:
                print(f"skipped {printable(r['path'])}: {r['error']}", file=sys.stderr)
            print(f"error: none of the {len(rows)} files could be read", file=sys.stderr)
        return 2
    if fmt == "json":
        from imgclf.files import to_json

        sys.stdout.write(to_json(rows) + "\n")
    elif fmt == "csv":
        from imgclf.runtime.prediction import csv_header, csv_row

        explained = any("explanation" in r for r in rows)
        neighbors = max((len(r.get("neighbors") or []) for r in rows), default=0)
        w = csv.writer(sys.stdout, lineterminator="\n")
        sets, multi = error_rate is not None, any("labels" in r for r in rows)
        w.writerow(csv_header(top_k, explained, neighbors, sets, multi))
        w.writerows(csv_row(r, top_k, explained, neighbors, sets, multi) for r in rows)
    else:
        _prediction_table(rows, asked, threshold, error_rate)
        drawn = sum(1 for r in rows if r.get("explanation"))
        if explain_dir is not None:
            print(f"heatmaps of where the model looked: {drawn} written to {printable(str(explain_dir))}", file=sys.stderr)
    if fmt != "table":  # the table shows them in its rows
        for r in failed:
            print(f"skipped {printable(r['path'])}: {r['error']}", file=sys.stderr)
    return read_status(len(rows), len(failed))


def why_unknown(similarity: float | None, threshold: float | None) -> str:
    """The plain reason a photo is ``unknown``, on the similarity's own scale (never a percentage)."""
    if similarity is None or threshold is None:
        return "unlike every training photo"
    return f"unlike every training photo (similarity {similarity:.2f}, below {threshold:.2f})"


def shown_path(path: str, folders: list[str]) -> str:
    """``path`` relative to the first of ``folders`` (as asked for) that holds it, else as it is."""
    for folder in folders:
        prefix = folder.rstrip("/" + os.sep) + os.sep
        if path.startswith(prefix):
            return path[len(prefix):]
    return path


def _prediction_table(rows: list[dict], asked, threshold: float | None = None, error_rate: float | None = None) -> None:
    """Plain columns (no Rich: a table of answers is all ``predict`` prints): one line per photo, the
    next best guesses (or why it is ``unknown``) and the nearest training photos wrapped under their column;
    ``unknown`` and errors coloured on a terminal. No word is cut in two."""
    import textwrap

    folders = [str(a) for a in asked if Path(a).is_dir()]
    fixed = [(_shortened(printable(shown_path(r["path"], folders)), PATH_WIDTH), *_answer(r)) for r in rows]
    heads = ("photo", "answer", "conf.", "next best")
    widths = [max(len(heads[i]), *(len(c[i]) for c in fixed)) for i in range(3)]
    total = width()
    last = max(len(heads[3]), total - sum(widths) - 3 * len(GAP))
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")

    def line(values, style=""):
        text = GAP.join([values[0].ljust(widths[0]), values[1].ljust(widths[1]), values[2].rjust(widths[2]), values[3]]).rstrip()
        return f"\x1b[{style}m{text}\x1b[0m" if style and colour else text

    out = [line(heads), "─" * min(total, sum(widths) + last + 3 * len(GAP))]
    for r, (path, answer, conf, style) in zip(rows, fixed):
        notes = _notes(r, threshold)
        if r.get("levels") and r["status"] == "ok":  # the tree's levels say more than the leaves' long names
            notes = [" › ".join(f"{printable(lv['label'].rsplit('/', 1)[-1])} {100 * lv['confidence']:.0f}%"
                                for lv in r["levels"])]
        if r.get("set"):
            notes.insert(0, f"{100 * (1 - error_rate):g} % sure: {' or '.join(printable(lab) for lab in r['set'])}")
        if r.get("neighbors"):  # their labels and similarities; the paths are in --format json and csv
            notes.append("nearest training photos: " + ", ".join(f"{printable(n['label'])} {n['similarity']:.2f}"
                                                                 for n in r["neighbors"]))
        wrapped = [w for note in notes for w in (textwrap.wrap(note, last, break_long_words=False, break_on_hyphens=False) or [""])]
        wrapped = wrapped or [""]
        out.append(line((path, answer, conf, wrapped[0]), style))
        out += [line(("", "", "", more)) for more in wrapped[1:]]
    sys.stdout.write("\n".join(out) + "\n")


def _answer(r: dict) -> tuple[str, str, str]:
    """(answer, confidence, terminal colour) of a row: an ``unknown`` photo has no confidence to show."""
    if r["status"] == "error":
        return "error", "", "31"
    if r["status"] == "no_face":
        return r["label"], "", "33"
    if r["status"] == "unknown":
        return "unknown", "–", "33"
    if r["status"] == "none":
        return "none", "–", ""
    if len(r.get("labels") or []) > 1:  # several labels: each one's probability is in the last column
        names = ", ".join(printable(a["label"]) for a in r["labels"])
        return names if len(names) <= ANSWER_WIDTH else f"{len(r['labels'])} labels", "", ""
    return _shortened(printable(r["label"]), ANSWER_WIDTH), f"{100 * r['confidence']:.1f}%", ""


def _notes(r: dict, threshold: float | None) -> list[str]:
    """What the last column says of a row: the error, why it is unknown, or the next best guesses."""
    if r["status"] == "error":
        return [printable(r["error"])]
    if r["status"] == "no_face":
        return []
    if r["status"] == "unknown":
        return [f"{why_unknown(r.get('similarity'), threshold)}; closest: {printable(r['top_k'][0]['label'])}"]
    if "labels" in r:  # each label answered on its own: which passed its threshold, and the closest that did not
        answered = {a["label"] for a in r["labels"]}
        passed = ", ".join(f"{printable(a['label'])} {100 * a['confidence']:.0f}%" for a in r["labels"]) if len(answered) > 1 else ""
        rest = [t for t in r["top_k"] if t["label"] not in answered][:1]
        below = ", ".join(f"{printable(t['label'])} {100 * t['confidence']:.0f}%" for t in rest)
        if r["status"] == "none":
            return [f"no label reached its threshold; closest: {below}" if below else "no label reached its threshold"]
        return ["; ".join(part for part in (passed, f"not {below}" if below else "") if part)]
    return [", ".join(f"{printable(t['label'])} {100 * t['confidence']:.0f}%" for t in r["top_k"][1:])]


def _shortened(text: str, width: int) -> str:
    """``text`` within ``width`` characters, keeping what tells photos apart: the label folder and the file name's
    start and end (``…/daisy/99221…33fe_n.jpg``); what goes is replaced by …."""
    if len(text) <= width:
        return text
    folder, _, name = text.rpartition("/")
    label = folder.rpartition("/")[2]
    lead = ("…/" if label != folder else "") + label + "/" if folder else ""
    if len(lead) > width // 2:
        lead = "…" + lead[len(lead) - width // 2 + 1:]
    room = width - len(lead)
    if len(name) <= room:
        return lead + name
    head = (room - 1) // 2
    return lead + name[:head] + "…" + name[len(name) - (room - 1 - head):]


def _terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((TABLE_WIDTH, 24)).columns


def read_status(rows: int, errors: int) -> int:
    """2 (with one error line) when not one of ``rows`` files could be read, else 0."""
    if rows and errors == rows:
        print(f"error: none of the {rows} file(s) could be read", file=sys.stderr)
        return 2
    return 0


def job_summary(job, what: str, output, engine: str) -> int:
    """The line after a batch job that wrote ``output``; the exit code."""
    print(f"{job.rows} {what} written to {output} ({job.errors} unreadable) in {job.seconds:.1f} s, "
          f"{job.per_second:.1f} photos/s on engine {engine}", file=sys.stderr)
    return read_status(job.rows, job.errors)


# --- train ------------------------------------------------------------------------------------------

def change_summary(result) -> None:
    """The line that says what ``imgclf add`` or ``forget`` changed, before the model's summary."""
    c = result.change or {}
    if c.get("action") == "add":
        new = f"; new labels: {', '.join(c['new_labels'])}" if c.get("new_labels") else ""
        already = f" ({c['already_in_model']} already in the model, left out)" if c.get("already_in_model") else ""
        _Out().print(f"added {_photos(c['added'])}{already}{new}; the model now learns from {_photos(c['photos'])}")
    elif c.get("action") == "forget":
        what = f"label{'s' if len(c['labels']) > 1 else ''} {', '.join(c['labels'])}: " if c.get("labels") else ""
        _Out().print(f"forgot {what}{_photos(c['removed'])} taken out; the model now learns from {_photos(c['photos'])}")


def _level_lines(tree: dict | None) -> list[str]:
    """A label tree's levels (``--hierarchy``), a line each: how often the best guess is right, where answers stop."""
    return [f"level {lv['level']} ({lv['nodes']} label{'s' if lv['nodes'] != 1 else ''}): best guess right {lv['accuracy']:.3f}, "
            f"{100 * lv['stopped']:.0f} % of answers stop there" for lv in (tree or {}).get("levels", [])]


def train_summary(result) -> None:
    from rich.table import Table

    from imgclf.heads.estimate import describe
    from imgclf.report import REPORT_FILE

    out = _Out()
    m = result.metrics
    splits = list(next(iter(result.counts.values())))
    table = Table(title="photos per label" + (" and split" if splits != ["photos"] else ""), title_justify="left")
    for col in ("label", *splits):
        table.add_column(col, justify="left" if col == "label" else "right")
    for lab, c in result.counts.items():
        table.add_row(lab, *(str(c[s]) for s in splits))
    out.print(table)
    emb = m["embedding"]
    views = f", {emb['views_computed']} augmented views computed" if emb.get("views_computed") else ""
    out.print(f"embeddings: {emb['computed']} computed, {emb['cached']} from cache{views}")
    if result.skipped:
        out.print(f"skipped {len(result.skipped)} file(s):")
        for s in result.skipped:
            out.print(f"  {s.path}: {s.reason}")
    for kind in ("duplicates", "leakage"):
        for d in m[kind]:
            out.print(f"  {kind[:-1] if kind == 'duplicates' else 'leakage'}: {d['path']}: {d['reason']}")
    for w in result.warnings:
        out.print(f"warning: {w}")
    found = result.check.summary(leave_out=("unreadable",)) if result.check else []  # listed above as skipped
    if found:
        out.print(f"photos to check: {', '.join(found)} (see the report, or imgclf check DATA --report FILE.html)")

    def acc(split: str) -> str:
        s = m.get(split)
        if not s:
            return "n/a (no photos)"
        lo, hi = s["accuracy_interval"]
        return f"{s['accuracy']:.3f} ({_photos(s['n'])}; 95 % interval {lo:.2f}–{hi:.2f})"

    if m.get("multi_label"):
        multilabel_lines(m["multi_label"], out)
    elif m.get("verifier"):
        out.print(f"one label: a verifier that answers {result.labels[0]} or unknown (add an unknown/ folder of other photos "
                  "to measure and sharpen its rejections)")
        out.print(f"estimated share of new {result.labels[0]} photos recognised: {describe(m['estimate'])}")
    else:  # a verifier's best guess is always its label: no split accuracies
        out.print(f"estimated accuracy on new photos: {describe(m['estimate'])}")
        out.print(f"validation accuracy: {acc('val')}")
        out.print(f"test accuracy:       {acc('test')}")
    for text in _level_lines(m.get("hierarchy")):
        out.print(text)
    if m.get("fine_tune"):
        out.print(fine_tune_line(m["fine_tune"]))
    rule = m.get("rejection") or {}
    if rule.get("expected_acceptance") is not None:
        lo, hi = rule["acceptance_interval"]
        out.print(f"'unknown' rule: accepts {100 * rule['expected_acceptance']:.1f} % of new photos of {'this label' if m.get('verifier') else 'these labels'} "
                  f"(95 % interval {100 * lo:.0f}–{100 * hi:.0f} %; calibrated on {rule['n']} held-out scores)")
    out.print(f"model written to {result.model_dir} in {result.seconds:.1f} s")
    out.print(f"report: {result.model_dir / REPORT_FILE}")


def fine_tune_line(ft: dict) -> str:
    """What ``--fine-tune`` did: kept, with its validation gain, or not kept and why."""
    spent = f"{ft['seconds']:.0f} s"
    if ft.get("kept") == "frozen":
        return f"fine-tuning not kept ({spent}): {ft['why']}; the frozen model was trained instead"
    if ft.get("best_val_accuracy") is None:
        return f"fine-tuned ({spent}, {len(ft['history']) - 1} epochs; no validation photos to compare it with)"
    return (f"fine-tuned ({spent}): validation accuracy {ft['probe_val_accuracy']:.3f} frozen, "
            f"{ft['best_val_accuracy']:.3f} after epoch {ft['best_epoch']}")


def multilabel_lines(m: dict, out: "_Out | None" = None) -> None:
    """How a model of several labels per photo does (``train``, ``evaluate``): the estimate in words, then per label."""
    from rich.table import Table

    from imgclf.report.multilabel import label_rows, summary_lines

    out = out or _Out()
    out.print(f"several labels per photo, measured by {m['method']}:")
    for text in summary_lines(m):
        out.print(f"  {text}")
    table = Table(title="each label", title_justify="left")
    for col in ("label", "photos", "right when answered", "found", "F1", "AP"):
        table.add_column(col, justify="left" if col == "label" else "right")
    for row in label_rows(m):
        table.add_row(*row)
    out.print(table)


# --- check ------------------------------------------------------------------------------------------

#: Findings printed by ``imgclf check``; the rest are in --json, --fix-plan and --report.
CHECK_LINES = 30


def check_summary(result, folder: str) -> None:
    """What ``imgclf check`` found: counts per kind, then one row per finding (kind, photo, reason wrapped to the
    terminal's width, as the predictions table is)."""
    import textwrap

    total = width()
    head = f"checked {result.photos} photos under {len(result.labels)} labels in {result.seconds:.1f} s: "
    out = textwrap.wrap(head + ("; ".join(result.summary()) if result.findings else "no problems found"), total,
                        break_long_words=False, break_on_hyphens=False)
    if result.findings:
        out.append("")
    kind_width = max((len(f.kind) for f in result.findings[:CHECK_LINES]), default=0)
    for f in result.findings[:CHECK_LINES]:
        what = shown_path(f.path, [folder]) if f.path else " / ".join(f.labels or [f.label or ""])
        reason = f.reason.replace(folder.rstrip("/" + os.sep) + os.sep, "")
        indent = " " * (kind_width + len(GAP))
        out.append(f.kind.ljust(kind_width) + GAP + _shortened(printable(what), total - len(indent)))
        out += textwrap.wrap(printable(reason), total, initial_indent=indent, subsequent_indent=indent,
                             break_long_words=False, break_on_hyphens=False)
    if len(result.findings) > CHECK_LINES:
        out.append(f"… and {len(result.findings) - CHECK_LINES} more: --json, --fix-plan or --report lists them all")
    if result.advice:
        out += ["", "more photos? (read off a learning curve of these photos)"]
        out += textwrap.wrap(printable(result.advice["sentence"]), total, initial_indent="  ", subsequent_indent="    ",
                             break_long_words=False, break_on_hyphens=False)
    sys.stdout.write("\n".join(out) + "\n")


# --- export -----------------------------------------------------------------------------------------

def export_summary(result) -> None:
    size = f"{result.size / 2**20:.1f} MB"
    line(f"exported {result.format}{' int8' if result.parity.int8 else ''} to {result.path} ({size}; converted in "
         f"{result.convert_seconds:.1f} s, {result.seconds:.1f} s in all)")
    line(f"checked against model.onnx {result.parity.describe()}")
    line(f"labels, preprocessing and the 'unknown' threshold: {result.sidecar}")


# --- evaluate ---------------------------------------------------------------------------------------

def evaluation(result: dict) -> None:
    from rich.table import Table

    out = _Out()
    lo, hi = result["accuracy_interval"]
    out.print(f"accuracy: {result['accuracy']:.3f} on {result['n']} photos (95 % interval {lo:.2f}–{hi:.2f}; "
              f"macro F1 {result['macro_f1']:.3f})")
    for text in _level_lines(result.get("hierarchy")):
        out.print(text)
    sets = result.get("label_sets")
    if sets:
        out.print(f"label sets at error rate {sets['error_rate']:g}: {sets['coverage']:.3f} held the right label "
                  f"(95 % interval {sets['low']:.2f}–{sets['high']:.2f}; promised at least {sets['promised_coverage']:g}), "
                  f"{sets['mean_size']:.2f} labels on average, {100 * sets['single_label']:.0f} % of sets one label")
    if "coverage" in result:
        out.print(f"with the 'unknown' rule: {100 * result['coverage']:.1f} % of photos answered (coverage), "
                  f"{result['selective_accuracy']:.3f} of those right (selective accuracy), "
                  f"{result['accuracy_with_unknown']:.3f} counting 'unknown' as wrong")
    table = Table()
    for col in ("label", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "label" else "right")
    for lab, m in result["per_class"].items():
        table.add_row(lab, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    out.print(table)
    cm = Table(title="confusion matrix (rows: true label, columns: predicted)", title_justify="left")
    cm.add_column("")
    for lab in result["labels"]:
        cm.add_column(lab, justify="right")
    for lab, row in zip(result["labels"], result["confusion_matrix"]):
        cm.add_row(lab, *map(str, row))
    out.print(cm)
    for m in result["misclassified"]:
        out.print(f"wrong: {m['path']} is {m['label']}, predicted {m['predicted']} ({100 * m['confidence']:.1f}%)")
    for s in result["skipped"]:
        out.print(f"skipped {s['path']}: {s['reason']}")
    if result["unknown_labels"]:
        out.print(f"labels the model does not know, skipped: {', '.join(result['unknown_labels'])}")
    rej = result.get("rejection")
    if rej:
        out.print(f"unknown rule (similarity < {rej['threshold']:.3f}): {rej['accepted']} of {rej['accepted'] + rej['rejected']} "
                  f"labelled photos accepted ({100 * rej['acceptance_rate']:.1f} %)")
        if "ood_n" in rej:
            out.print(f"out-of-distribution photos in {rej['ood_dir']}: {rej['ood_rejected']} of {rej['ood_n']} rejected "
                      f"({100 * rej['ood_rejection_rate']:.1f} %); the similarity tells them from the labelled photos with "
                      f"AUROC {rej['auroc']:.3f} (1: always, 0.5: by chance)")
