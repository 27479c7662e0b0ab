"""The ``imgclf`` command line: train, predict, evaluate.

User and data mistakes print one ``error: …`` line on stderr and exit with code 2
(a traceback only with ``--debug``). Heavy imports happen inside the commands, so
``predict`` never loads torch.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Callable, List, Optional

# Before NumPy loads: OpenBLAS threads only spin against ONNX Runtime's and each other on the
# small matrices imgclf multiplies (a warm `train` measured 6.4 s with them, 3.9 s without).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import typer  # noqa: E402

from imgclf.errors import ImgclfError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train your own image classifier from a folder of photos, then ask it what a photo shows.",
)
_state = {"debug": bool(os.environ.get("IMGCLF_DEBUG"))}


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def _stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False, markup=False, emoji=False)


def _stdout():
    """The console for results: every path and label is printed literally (no markup, no emoji codes)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, markup=False, emoji=False)


def _styled(text: str, style: str):
    from rich.text import Text

    return Text(text, style=style)


def _run(fn: Callable[[], int | None]) -> None:
    """Run a command body, mapping errors to exit codes."""
    try:
        code = fn() or 0
    except ImgclfError as e:
        if _state["debug"]:
            raise
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(2)
    except KeyboardInterrupt:
        print("interrupted: everything computed so far is cached; run the same command again to resume", file=sys.stderr)
        raise typer.Exit(130)
    except Exception as e:
        if _state["debug"]:
            raise
        print(f"error: unexpected {type(e).__name__}: {e} (run with --debug for the traceback)", file=sys.stderr)
        raise typer.Exit(1)
    raise typer.Exit(code)


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if debug:
        _state["debug"] = True
    if version:
        from imgclf import __version__

        print(f"imgclf {__version__}")
        raise typer.Exit(0)


BACKBONE_HELP = "Built-in backbone, 'face' (who is this person: dlib's face descriptor, imgclf[face]) or any timm model name."
TTA_HELP = "Also score each photo's mirror image and average (twice the work; +0.5 point on flowers-bench)."
CROP_HELP = "'face': the backbone sees only the square around the largest face (imgclf[face])."


@app.command()
def train(
    data_dir: Path = typer.Argument(..., help="Folder with one sub-folder per label, or train/ val/ test/ splits."),
    output: Path = typer.Option(..., "-o", "--output", help="Model folder to write (replaced atomically)."),
    backbone: str = typer.Option("efficientnet_lite0", help=BACKBONE_HELP),
    weights: Optional[Path] = typer.Option(None, help="Backbone weights: safetensors or a PyTorch state dict."),
    crop: Optional[str] = typer.Option(None, help=CROP_HELP),
    seed: int = typer.Option(0, help="Random seed of the head."),
    cache_dir: Optional[Path] = typer.Option(None, help="Where embeddings and backbone exports are cached."),
    val_fraction: float = typer.Option(0.1, help="Share of photos for validation (without a val/ folder)."),
    test_fraction: float = typer.Option(0.1, help="Share of photos held out for the test (without splits)."),
    augment: int = typer.Option(0, min=0, max=7, help="Augmented views per training photo (flips, crops), embedded once and cached."),
    fine_tune: bool = typer.Option(False, "--fine-tune", help="Also train the backbone's last blocks (minutes, not seconds)."),
    epochs: int = typer.Option(12, min=1, help="Most epochs of --fine-tune (early stopping may end sooner)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar."),
    embeddings: Optional[Path] = typer.Option(None, "--embeddings", help="Embeddings parquet from imgclf embed (e.g. on Ray) instead of embedding here."),
    quantize: bool = typer.Option(False, "--quantize", help="int8 backbone calibrated on the training photos: ~1.4x faster embedding and predict, accuracy within a point (README: Speed)."),
) -> None:
    """Train a classifier on a folder of labelled photos."""

    def body() -> None:
        from imgclf.finetune import FineTuneConfig
        from imgclf.training import train as run_train

        command = "imgclf " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        with _ProgressBar("embedding photos", disabled=quiet) as bar:
            result = run_train(
                data_dir, output, backbone=backbone, weights=weights, seed=seed, cache_dir=cache_dir,
                val_fraction=val_fraction, test_fraction=test_fraction, progress=bar.update,
                fine_tune=FineTuneConfig(epochs=epochs, seed=seed) if fine_tune else False, augment=augment,
                log=None if quiet else bar.log, command=command, embeddings=embeddings, quantize=quantize, crop=crop,
            )
        _print_train_summary(result)

    _run(body)


class _ProgressBar:
    """Rich progress bars on stderr, one per stage, shown only on a terminal and only once there is progress."""

    def __init__(self, description: str, disabled: bool = False):
        self.description, self.disabled = description, disabled
        self._progress = self._task = None
        self._stage = None

    def __enter__(self) -> "_ProgressBar":
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
            if not _stderr().is_terminal:  # no bar in logs and pipes
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


def _print_train_summary(result) -> None:
    from rich.table import Table

    from imgclf.report import REPORT_FILE

    out = _stdout()
    table = Table(title="photos per label and split", title_justify="left")
    for col in ("label", "train", "val", "test"):
        table.add_column(col, justify="left" if col == "label" else "right")
    for lab, c in result.counts.items():
        table.add_row(lab, str(c["train"]), str(c["val"]), str(c["test"]))
    out.print(table)
    m = result.metrics
    emb = m["embedding"]
    out.print(f"embeddings: {emb['computed']} computed, {emb['cached']} from cache")
    if result.skipped:
        out.print(f"skipped {len(result.skipped)} file(s):")
        for s in result.skipped:
            out.print(f"  {s.path}: {s.reason}")
    for kind in ("duplicates", "leakage"):
        for d in m[kind]:
            out.print(f"  {kind[:-1] if kind == 'duplicates' else 'leakage'}: {d['path']}: {d['reason']}")
    for w in result.warnings:
        out.print(f"warning: {w}")

    from imgclf.estimate import describe

    def acc(split: str) -> str:
        s = m.get(split)
        if not s:
            return "n/a (no photos)"
        lo, hi = s["accuracy_interval"]
        return f"{s['accuracy']:.3f} ({s['n']} photos; 95 % interval {lo:.2f}–{hi:.2f})"

    if m.get("verifier"):
        out.print(f"one label: a verifier that answers {result.labels[0]} or unknown (add an unknown/ folder of other photos "
                  "to measure and sharpen its rejections)")
        out.print(f"estimated share of new {result.labels[0]} photos recognised: {describe(m['estimate'])}")
    else:  # a verifier's best guess is always its label: no split accuracies
        out.print(f"estimated accuracy on new photos: {describe(m['estimate'])}")
        out.print(f"validation accuracy: {acc('val')}")
        out.print(f"test accuracy:       {acc('test')}")
    rule = m.get("rejection") or {}
    if rule.get("expected_acceptance") is not None:
        lo, hi = rule["acceptance_interval"]
        out.print(f"'unknown' rule: accepts {100 * rule['expected_acceptance']:.1f} % of new photos of {'this label' if m.get('verifier') else 'these labels'} "
                  f"(95 % interval {100 * lo:.0f}–{100 * hi:.0f} %; calibrated on {rule['n']} out-of-fold scores)")
    out.print(f"model written to {result.model_dir} in {result.seconds:.1f} s")
    out.print(f"report: {result.model_dir / REPORT_FILE}")


@app.command()
def predict(
    model_dir: Path = typer.Argument(..., help="Model folder written by imgclf train."),
    paths: List[Path] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    top_k: int = typer.Option(3, "--top-k", "-k", min=1, help="How many labels to list per photo."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f", help="table, json or csv."),
    threshold: Optional[float] = typer.Option(None, help="Similarity below which a photo is 'unknown' (default: the model's own)."),
    no_reject: bool = typer.Option(False, "--no-reject", help="Never answer 'unknown'; always give the best guess."),
    tta: bool = typer.Option(False, "--tta", help=TTA_HELP),
    engine: str = typer.Option("local", help="local (this process) or ray (a Ray cluster; needs the ray extra)."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (auto, ray://HOST:10001); without it a local Ray runtime."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write one row per file to .parquet, .csv or .jsonl (streaming)."),
    workers: Optional[int] = typer.Option(None, min=1, help="Ray actors (default: one per CPU of the cluster)."),
) -> None:
    """Say what each photo shows, with confidences (or 'unknown' for photos unlike every label)."""

    def body() -> int:
        from imgclf.model import Model

        if output is not None or engine != "local":  # batch jobs: see imgclf.engines
            if tta:
                raise ImgclfError("--tta works with the local engine printing its results (no --engine ray, no --output)")
            return _predict_on_engine(model_dir, paths, top_k, fmt, threshold, not no_reject, engine, address, output, workers)

        model = Model.load(model_dir)
        preds = model.predict(paths, top_k=top_k, threshold=threshold, reject=not no_reject, tta=tta)
        if not preds:
            raise ImgclfError("no files found in the given paths")
        return _show_predictions(preds, fmt, top_k)

    _run(body)


def _show_predictions(preds, fmt: OutputFormat, top_k: int) -> int:
    """Print ``preds`` and, on stderr, the files skipped; the exit code (see :func:`_read_status`)."""
    _write_predictions(preds, fmt, top_k)
    failed = [p for p in preds if p.error]
    for p in failed:
        print(f"skipped {p.path}: {p.error}", file=sys.stderr)
    return _read_status(len(preds), len(failed))


def _read_status(rows: int, errors: int) -> int:
    """2 (with one error line) when not one of ``rows`` files could be read, else 0."""
    if rows and errors == rows:
        print(f"error: none of the {rows} file(s) could be read", file=sys.stderr)
        return 2
    return 0


def _write_predictions(preds, fmt: OutputFormat, top_k: int) -> None:
    if fmt is OutputFormat.json:
        from imgclf.files import to_json

        sys.stdout.write(to_json([p.to_dict() for p in preds]) + "\n")
    elif fmt is OutputFormat.csv:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        header = ["path", "label", "confidence", "similarity", "error"]
        for i in range(1, top_k + 1):
            header += [f"top{i}_label", f"top{i}_confidence"]
        w.writerow(header)
        for p in preds:
            row = [p.path, p.label or "", "" if p.confidence is None else f"{p.confidence:.6f}",
                   "" if p.similarity is None else f"{p.similarity:.6f}", p.error or ""]
            for t in p.top_k:
                row += [t["label"], f"{t['confidence']:.6f}"]
            w.writerow(row)
        sys.stdout.write(buf.getvalue())
    else:
        from rich.table import Table

        table = Table()
        table.add_column("path", overflow="fold")
        table.add_column("label")
        table.add_column("confidence", justify="right")
        table.add_column("top-k")
        for p in preds:
            if p.error:
                table.add_row(p.path, _styled("error", "red"), "", p.error)
            elif p.confidence is None:  # a face model's "no face"
                table.add_row(p.path, _styled(p.label, "yellow"), "", "")
            else:
                rest = ", ".join(f"{t['label']} {100 * t['confidence']:.1f}%" for t in p.top_k)
                label = (_styled("unknown", "yellow") + " (unlike every label)"
                         if p.label == "unknown" and p.top_k[0]["label"] != "unknown" else p.label)
                table.add_row(p.path, label, f"{100 * p.confidence:.1f}%", rest)
        _stdout().print(table)


@app.command()
def evaluate(
    model_dir: Path = typer.Argument(..., help="Model folder written by imgclf train."),
    data_dir: Path = typer.Argument(..., help="Folder with one sub-folder per label."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full results as JSON to this file."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write an HTML report (plots, confusions, photos) to this file."),
    ood: Optional[Path] = typer.Option(None, "--ood", help="Photos of none of the labels: measure how many come back 'unknown'."),
    tta: bool = typer.Option(False, "--tta", help=TTA_HELP),
) -> None:
    """Accuracy, per-class precision/recall/F1 and confusion matrix on labelled photos."""

    def body() -> None:
        from rich.table import Table

        from imgclf.artifact import check_not_artefact
        from imgclf.evaluation import evaluate as run_evaluate
        from imgclf.files import write_json_atomic, writing_to
        from imgclf.model import Model

        for path, option in ((json_out, "--json"), (report, "--report")):
            if path is not None:
                check_not_artefact(path, option)
        model = Model.load(model_dir)
        result = run_evaluate(model, data_dir, ood_dir=ood, tta=tta)
        out = _stdout()
        lo, hi = result["accuracy_interval"]
        out.print(f"accuracy: {result['accuracy']:.3f} on {result['n']} photos (95 % interval {lo:.2f}–{hi:.2f}; "
                  f"macro F1 {result['macro_f1']:.3f})")
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
                          f"({100 * rej['ood_rejection_rate']:.1f} %), AUROC {rej['auroc']:.3f}")
        if json_out:
            with writing_to(json_out, "--json"):
                write_json_atomic(json_out, result)
            out.print(f"results written to {json_out}")
        if report:
            from imgclf.report import from_evaluation, write_report

            results = from_evaluation(result, model)
            results["info"]["command"] = "imgclf " + " ".join(shlex.quote(a) for a in sys.argv[1:])
            with writing_to(report, "--report"):
                files = write_report(report, results, title=f"imgclf evaluation: {model_dir.resolve().name} on {data_dir.resolve().name}",
                                     plot_prefix=f"{report.stem}-")
            out.print(f"report written to {report} (plots: {', '.join(f.name for f in files[1:])})")

    _run(body)


@app.command()
def serve(
    model_dir: Path = typer.Argument(..., help="Model folder written by imgclf train."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on."),
    workers: int = typer.Option(1, min=1, help="Server processes; each loads the model and shares the cores."),
    max_upload_mb: float = typer.Option(10.0, min=0.01, help="Largest accepted upload (a photo or a batch request), MB."),
    max_megapixels: float = typer.Option(80.0, min=0.01, help="Largest image decoded; bigger ones get 422."),
    allowed_host: List[str] = typer.Option([], "--allowed-host", help="A Host name to answer besides the defaults (repeatable). "
                                           "On a loopback address only localhost, 127.0.0.1 and ::1 are answered; elsewhere any, unless given."),
    request_timeout: float = typer.Option(10.0, min=0.1, help="Seconds a client has to send its request headers; "
                                          "bodies slower than 1 KB/s over half of it are dropped too."),
    access_log: bool = typer.Option(True, help="Log every request."),
    log_level: str = typer.Option("info", help="uvicorn log level: critical, error, warning, info, debug."),
) -> None:
    """Serve the model: a REST API and a web page to drop photos on (no torch)."""

    def body() -> None:
        import uvicorn

        from imgclf.pipeline import cpu_count
        from imgclf.serve.connections import TIMEOUT_VARIABLE, GuardedH11Protocol
        from imgclf.serve.security import is_loopback, loopback_hosts

        threads = max(1, cpu_count() // workers)
        os.environ[TIMEOUT_VARIABLE] = str(request_timeout)
        hosts = loopback_hosts(allowed_host) if is_loopback(host) else (list(allowed_host) or None)
        where = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
        opts = dict(host=host, port=port, log_level=log_level, access_log=access_log, http=GuardedH11Protocol)
        if workers == 1:
            from imgclf.serve.app import create_app

            application = create_app(model_dir, max_upload_mb=max_upload_mb, threads=threads, max_megapixels=max_megapixels,
                                     allowed_hosts=hosts)
            print(f"serving {model_dir} at {where}/ (API docs at {where}/docs)", file=sys.stderr, flush=True)
            uvicorn.run(application, **opts)
        else:
            from imgclf.model import Model

            Model.load(model_dir, threads=1)  # fail here, with a clear message, not in every worker
            os.environ.update(
                IMGCLF_SERVE_MODEL_DIR=str(model_dir.resolve()),
                IMGCLF_SERVE_MAX_UPLOAD_MB=str(max_upload_mb),
                IMGCLF_SERVE_THREADS=str(threads),
                IMGCLF_SERVE_MAX_MEGAPIXELS=str(max_megapixels),
                IMGCLF_SERVE_ALLOWED_HOSTS=json.dumps(hosts),
            )
            print(f"serving {model_dir} at {where}/ with {workers} workers (API docs at {where}/docs)",
                  file=sys.stderr, flush=True)
            uvicorn.run("imgclf.serve.app:app_from_env", factory=True, workers=workers, **opts)

    _run(body)


def _predict_on_engine(model_dir, paths, top_k, fmt, threshold, reject, engine, address, output, workers) -> int:
    """``predict --engine`` / ``--output``: a streaming batch job, written to a file or printed like ``predict``."""
    from imgclf import engines

    opts = dict(top_k=top_k, threshold=threshold, reject=reject, address=address, workers=workers)
    with _ProgressBar("predicting photos") as bar:
        if output is not None:
            job = engines.predict(model_dir, paths, output, engine, progress=bar.update, **opts)
        else:
            from imgclf.model import Prediction

            preds = [Prediction(**row) for batch in engines.iter_predict(model_dir, paths, engine, progress=bar.update, **opts)
                     for row in (batch if isinstance(batch, list) else batch.to_pylist())]
    if output is None:
        return _show_predictions(preds, fmt, top_k)
    print(f"{job.rows} predictions written to {output} ({job.errors} unreadable) in {job.seconds:.1f} s, "
          f"{job.per_second:.1f} photos/s on engine {engine}", file=sys.stderr)
    return _read_status(job.rows, job.errors)


@app.command()
def embed(
    data_dir: Path = typer.Argument(..., help="Folder with one sub-folder per label, or train/ val/ test/ splits."),
    output: Path = typer.Option(..., "-o", "--output", help="File to write: .parquet (for train --embeddings), .csv or .jsonl."),
    engine: str = typer.Option("local", help="local (this process) or ray (a Ray cluster; needs the ray extra)."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (auto, ray://HOST:10001); without it a local Ray runtime."),
    workers: Optional[int] = typer.Option(None, min=1, help="Ray actors (default: one per CPU of the cluster)."),
    backbone: str = typer.Option("efficientnet_lite0", help=BACKBONE_HELP),
    weights: Optional[Path] = typer.Option(None, help="Backbone weights: safetensors or a PyTorch state dict."),
    crop: Optional[str] = typer.Option(None, help=CROP_HELP),
    cache_dir: Optional[Path] = typer.Option(None, help="Where backbone exports are cached."),
    val_fraction: float = typer.Option(0.1, help="Share of photos for validation (without a val/ folder), for the split column."),
    test_fraction: float = typer.Option(0.1, help="Share of photos held out for the test (without splits), for the split column."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar."),
) -> None:
    """Embed every photo of a labelled folder (path, hash, label, split, embedding, error per row)."""

    def body() -> int:
        from imgclf import engines

        with _ProgressBar("embedding photos", disabled=quiet) as bar:
            job = engines.embed(
                data_dir, output, engine, backbone=backbone, weights=weights, crop=crop, cache_dir=cache_dir,
                val_fraction=val_fraction, test_fraction=test_fraction, address=address, workers=workers,
                progress=bar.update, log=None if quiet else bar.log,
            )
        print(f"{job.rows} embeddings written to {output} ({job.errors} unreadable) in {job.seconds:.1f} s, "
              f"{job.per_second:.1f} photos/s on engine {engine}", file=sys.stderr)
        return _read_status(job.rows, job.errors)

    _run(body)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
