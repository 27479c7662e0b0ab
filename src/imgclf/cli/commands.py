"""The commands: each parses its options, calls the library and hands the result to :mod:`imgclf.cli.render`.

Heavy modules are imported inside the commands, so ``predict`` loads NumPy, Pillow and ONNX
Runtime, and Rich only to draw a table.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click

from imgclf.errors import ImgclfError

_state = {"debug": bool(os.environ.get("IMGCLF_DEBUG"))}

BACKBONE_HELP = "Built-in backbone, 'face' (who is this person: dlib's face descriptor, imgclf[face]) or any timm model name."
TTA_HELP = "Also score each photo's mirror image and average (twice the work; +0.5 point on flowers-bench)."
CROP_HELP = "'face': the backbone sees only the square around the largest face (imgclf[face])."
ENGINE_HELP = "local (this process) or ray (a Ray cluster; needs the ray extra)."
ADDRESS_HELP = "Ray cluster address (auto, ray://HOST:10001); without it a local Ray runtime."
ACTORS_HELP = "Ray actors, each with its own model session (default: one per CPU of the cluster)."

PATH = click.Path(path_type=Path)


def run(argv: list[str] | None = None) -> int:
    """Run one command line (default: the process's arguments); its exit code."""
    return _exit_code(sys.argv[1:] if argv is None else list(argv))


def _exit_code(args: list[str]) -> int:
    """Errors become one ``error: …`` line (a traceback with ``--debug``): 2 for the user's mistakes, 1 for ours."""
    if not args:
        click.echo(app.get_help(click.Context(app, info_name="imgclf")))
        return 0
    try:
        return click.Group.main(app, args, prog_name="imgclf", standalone_mode=False) or 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.UsageError as e:
        where = f"imgclf {e.ctx.command.name} --help" if e.ctx and e.ctx.command and e.ctx.command is not app else "imgclf --help"
        print(f"error: {e.format_message()} (see {where})", file=sys.stderr)
        return 2
    except ImgclfError as e:
        if _state["debug"]:
            raise
        print(f"error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)  # 2: the user's mistake; an export that fails its check says 1
    except (KeyboardInterrupt, click.Abort):
        print("interrupted: everything computed so far is cached; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as e:
        if _state["debug"]:
            raise
        print(f"error: unexpected {type(e).__name__}: {e} (run with --debug for the traceback)", file=sys.stderr)
        return 1


class _Imgclf(click.Group):
    """The command group; its ``main`` exits with :func:`_exit_code`'s code, in a process or under Click's test runner."""

    def main(self, args=None, prog_name=None, **_ignored):
        sys.exit(_exit_code(sys.argv[1:] if args is None else list(args)))


def _version(ctx: click.Context, _param, value: bool) -> None:
    if value:
        from imgclf.runtime.artifact import IMGCLF_VERSION as __version__

        click.echo(f"imgclf {__version__}")
        ctx.exit(0)


@click.group(cls=_Imgclf, context_settings={"help_option_names": ["-h", "--help"]},
             help="Train your own image classifier from a folder of photos, then ask it what a photo shows.")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_version, help="Print the version and exit.")
def app(debug: bool) -> None:
    if debug:
        _state["debug"] = True


def _command_line() -> str:
    return "imgclf " + " ".join(shlex.quote(a) for a in sys.argv[1:])


@app.command()
@click.argument("data_dir", type=PATH)
@click.option("-o", "--output", type=PATH, required=True, help="Model folder to write (replaced atomically).")
@click.option("--backbone", default="efficientnet_lite0", show_default=True, help=BACKBONE_HELP)
@click.option("--weights", type=PATH, help="Backbone weights: safetensors or a PyTorch state dict.")
@click.option("--crop", help=CROP_HELP)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the head.")
@click.option("--cache-dir", type=PATH, help="Where embeddings and backbone exports are cached.")
@click.option("--val-fraction", type=float, default=0.1, show_default=True, help="Share of photos for validation (without a val/ folder).")
@click.option("--test-fraction", type=float, default=0.1, show_default=True, help="Share of photos held out for the test (without splits).")
@click.option("--augment", type=click.IntRange(0, 7), default=0, show_default=True,
              help="Augmented views per training photo (flips, crops), embedded once and cached.")
@click.option("--fine-tune", is_flag=True, help="Also train the backbone's last blocks (a minute or more); kept only if the validation photos show it answers better than the frozen model.")
@click.option("--epochs", type=click.IntRange(min=1), default=12, show_default=True, help="Most epochs of --fine-tune (early stopping may end sooner).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--embeddings", type=PATH, help="Embeddings from imgclf embed (.parquet, .csv or .jsonl; e.g. on Ray) instead of embedding here.")
@click.option("--quantize", is_flag=True, help="int8 backbone calibrated on the training photos: ~1.4x faster embedding and predict, "
              "accuracy within a point.")
@click.option("--hierarchy", is_flag=True, help="Read nested label folders (animals/birds/robin/) as a tree: answers "
              "stop at the deepest level the model is sure of ('birds' when robin and sparrow look alike).")
@click.option("--private", is_flag=True, help="Keep no trace of single training photos in the model: no embeddings, no paths, "
              "no --neighbors, no imgclf add (the card says what it costs).")
@click.option("--labels", "labels_file", type=PATH, help="Several labels per photo, from a manifest: CSV path,labels "
              "(labels separated by ';') or JSON Lines {\"path\", \"labels\": [...]}, paths relative to DATA_DIR.")
@click.option("--multi-label", is_flag=True, help="Several labels per photo from label folders: a photo in several "
              "folders has each of their labels.")
@click.option("--min-precision", type=float, help="With several labels per photo: each label's threshold is the lowest "
              "whose precision reaches this (default: the best F1).")
def train(data_dir, output, backbone, weights, crop, seed, cache_dir, val_fraction, test_fraction, augment, fine_tune, epochs,
          quiet, embeddings, quantize, hierarchy, private, labels_file, multi_label, min_precision) -> int:
    """Train a classifier on a folder of labelled photos."""
    from imgclf.cli import render
    from imgclf.project import Project
    from imgclf.training.finetune import FineTuneConfig
    from imgclf.training.settings import Settings

    settings = Settings.of(backbone=backbone, weights=weights, seed=seed, cache_dir=cache_dir, val_fraction=val_fraction,
                           test_fraction=test_fraction, fine_tune=FineTuneConfig(epochs=epochs, seed=seed) if fine_tune else False,
                           augment=augment, command=_command_line(), embeddings=embeddings, quantize=quantize, crop=crop,
                           private=private, hierarchy=hierarchy, labels_file=labels_file, multi_label=multi_label,
                           min_precision=min_precision)
    with render.ProgressBar("embedding photos", disabled=quiet) as bar:
        result = Project(data_dir, settings, model_dir=output).train(on_event=render.stage_events(bar, quiet))
    render.train_summary(result)
    return 0


@app.command()
@click.argument("model_dir", type=PATH)
@click.argument("photos_dir", type=PATH)
@click.option("-o", "--output", type=PATH, help="Write the grown model here (default: replace MODEL_DIR, atomically).")
@click.option("--cache-dir", type=PATH, help="Where embeddings and backbone exports are cached.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def add(model_dir, photos_dir, output, cache_dir, quiet) -> int:
    """Add photos to a model's labels, or new labels, without its training photos (PHOTOS_DIR: label folders)."""
    from imgclf.cli import render
    from imgclf.training.grow import add as grow

    with render.ProgressBar("embedding photos", disabled=quiet) as bar:
        result = grow(model_dir, photos_dir, output, cache_dir, on_event=render.stage_events(bar, quiet))
    render.change_summary(result)
    render.train_summary(result)
    return 0


@app.command()
@click.argument("model_dir", type=PATH)
@click.option("--label", "labels", multiple=True, help="A label to forget, with every photo of it (repeat for more).")
@click.option("--photos", "photo_list", type=PATH, help="A text file naming photos to forget, one a line, as "
              "predict --neighbors shows them or by full path.")
@click.option("-o", "--output", type=PATH, help="Write the model here (default: replace MODEL_DIR, atomically).")
@click.option("--cache-dir", type=PATH, help="Where embeddings and backbone exports are cached.")
def forget(model_dir, labels, photo_list, output, cache_dir) -> int:
    """Take labels or photos out of a model, as if it had been trained without them."""
    from imgclf.cli import render
    from imgclf.training.grow import forget as shrink

    photos = _read_list(photo_list) if photo_list is not None else []
    result = shrink(model_dir, labels, photos, output, cache_dir)
    render.change_summary(result)
    render.train_summary(result)
    return 0


def _read_list(path: Path) -> list[str]:
    """The non-empty lines of a text file the user named (a special file is refused unopened)."""
    from imgclf.files import path_kind

    if path_kind(path) == "special":
        raise ImgclfError(f"--photos {path} is a pipe, device or socket: name a text file")
    try:
        return [line.rstrip("\r") for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise ImgclfError(f"cannot read --photos {path}: {getattr(e, 'strerror', None) or e}") from None


@app.command()
@click.argument("model_dir", type=PATH)
@click.argument("paths", type=PATH, nargs=-1, required=True)
@click.option("-k", "--top-k", type=click.IntRange(min=1), default=3, show_default=True, help="How many labels to list per photo.")
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True,
              help="How to print the predictions.")
@click.option("--threshold", type=float, help="Similarity below which a photo is 'unknown' (default: the model's own).")
@click.option("--no-reject", is_flag=True, help="Never answer 'unknown'; always give the best guess.")
@click.option("--tta", is_flag=True, help=TTA_HELP)
@click.option("--engine", default="local", show_default=True, help=ENGINE_HELP)
@click.option("--address", help=ADDRESS_HELP)
@click.option("-o", "--output", type=PATH, help="Write one row per file to .parquet, .csv or .jsonl (streaming).")
@click.option("--actors", type=click.IntRange(min=1), help=ACTORS_HELP)
@click.option("--explain", "explain_dir", type=PATH, help="Write a heatmap of where the model looked over each photo "
              "into this folder (PNG), and its peak into each row.")
@click.option("--explain-label", help="The label whose heatmap --explain draws (default: each photo's best guess).")
@click.option("--neighbors", type=click.IntRange(min=0), default=0, help="Add the K training photos most like each photo to its row.")
@click.option("--error-rate", type=float, help="Also answer the smallest set of labels that holds the right one with "
              "probability at least 1 - A (e.g. 0.05) on new photos of the known labels.")
def predict(model_dir, paths, top_k, fmt, threshold, no_reject, tta, engine, address, output, actors, explain_dir,
            explain_label, neighbors, error_rate) -> int:
    """Say what each photo shows, with confidences (or 'unknown' for photos unlike every label)."""
    from imgclf.cli import render

    _model_first(model_dir, paths, "predict")
    if explain_label is not None and explain_dir is None:
        raise ImgclfError("--explain-label needs --explain DIR")
    if output is not None or engine != "local":  # batch jobs: see imgclf.engines
        if tta or explain_dir is not None or neighbors:
            option = "--tta" if tta else "--explain" if explain_dir is not None else "--neighbors"
            raise ImgclfError(f"{option} works with the local engine printing its results (no --engine ray, no --output)")
        return _predict_on_engine(model_dir, paths, top_k, fmt, threshold, not no_reject, engine, address, output, actors,
                                  error_rate)
    from imgclf.runtime.model import Model

    model = Model.load(model_dir)
    if explain_dir is not None:
        if tta:
            raise ImgclfError("--explain maps one view of each photo: leave out --tta")
        from imgclf.runtime.artifact import is_model_folder

        if is_model_folder(explain_dir):
            raise ImgclfError(f"--explain {explain_dir} is a model folder: choose another folder for the heatmaps")
        for asked in paths:
            if Path(asked).is_dir() and _inside(explain_dir, asked):
                raise ImgclfError(f"--explain {explain_dir} is inside {asked}, which is being predicted: write the heatmaps "
                                  "elsewhere (they would be predicted and checked as photos next time)")
        preds = list(model.iter_explain(paths, explain_dir, explain_label, top_k, threshold, not no_reject, neighbors,
                                        error_rate=error_rate))
    else:
        preds = model.predict(paths, top_k=top_k, threshold=threshold, reject=not no_reject, tta=tta, neighbors=neighbors,
                              error_rate=error_rate)
    if not preds:
        raise ImgclfError("no files found in the given paths")
    return render.predictions(preds, fmt, top_k, asked=paths, threshold=threshold if threshold is not None else model.threshold,
                              explain_dir=explain_dir, error_rate=error_rate)


def _model_first(model_dir: Path, paths, command: str) -> None:
    """A model folder given after the photos: say that the model comes first."""
    from imgclf.runtime.artifact import is_model_folder

    if not is_model_folder(model_dir):
        model = next((p for p in paths if is_model_folder(p)), None)
        if model is not None:
            raise ImgclfError(f"{model} is the model and {model_dir} is not: the model folder comes first "
                              f"(imgclf {command} {model} {model_dir} …)")


def _predict_on_engine(model_dir, paths, top_k, fmt, threshold, reject, engine, address, output, actors, error_rate) -> int:
    """``predict --engine`` / ``--output``: a streaming batch job, written to a file or printed like ``predict``."""
    from imgclf import engines
    from imgclf.cli import render

    opts = dict(top_k=top_k, threshold=threshold, reject=reject, address=address, actors=actors, error_rate=error_rate)
    with render.ProgressBar("predicting photos") as bar:
        if output is not None:
            job = engines.predict(model_dir, paths, output, engine, progress=bar.update, **opts)
        else:
            from imgclf.runtime.model import Prediction

            preds = [Prediction.from_row(row) for batch in engines.iter_predict(model_dir, paths, engine, progress=bar.update, **opts)
                     for row in (batch if isinstance(batch, list) else batch.to_pylist())]
    if output is None:
        return render.predictions(preds, fmt, top_k, asked=paths, error_rate=error_rate)
    return render.job_summary(job, "predictions", output, engine)


@app.command()
@click.argument("model_dir", type=PATH)
@click.argument("data_dir", type=PATH)
@click.option("--json", "json_out", type=PATH, help="Write the full results as JSON to this file.")
@click.option("--report", type=PATH, help="Write an HTML report (plots, confusions, photos) to this file.")
@click.option("--ood", type=PATH, help="Photos of none of the labels: measure how many come back 'unknown'.")
@click.option("--tta", is_flag=True, help=TTA_HELP)
@click.option("--error-rate", type=float, help="Also measure label sets at this error rate: how often they hold the right "
              "label, and how many labels they hold.")
@click.option("--labels", "labels_file", type=PATH, help="A model of several labels per photo: the photos' labels from this "
              "manifest (CSV path,labels or JSON Lines, as train --labels reads) instead of label folders.")
def evaluate(model_dir, data_dir, json_out, report, ood, tta, error_rate, labels_file) -> int:
    """Accuracy, per-class precision/recall/F1 and confusion matrix on labelled photos."""
    from imgclf.cli import render
    from imgclf.evaluation import evaluate as run_evaluate
    from imgclf.runtime.artifact import generator
    from imgclf.runtime.artifact import PLOT_FILES
    from imgclf.runtime.model import Model

    _model_first(model_dir, [data_dir], "evaluate")
    claims = _claims({json_out: "--json", report: "--report"})
    if report is not None:  # the plots written beside the page
        claims.update(_claims({report.parent / f"{report.stem}-{name}": "--report" for name in PLOT_FILES.values()}))
    model = Model.load(model_dir)
    result = run_evaluate(model, data_dir, ood_dir=ood, tta=tta, error_rate=error_rate, labels_file=labels_file)
    if "multi_label" in result:
        return _several_labels_evaluated(result, model, model_dir, data_dir, json_out, report, claims)
    render.evaluation(result)
    if json_out:
        claims[json_out].write_json({"generator": generator("evaluate"), **result})
        render.line(f"results written to {json_out}")
    if report:
        from imgclf.report import from_evaluation, write_report
        from imgclf.report.heatmaps import Heatmaps

        results = from_evaluation(result, model)
        results["info"]["command"] = _command_line()
        files = write_report(report, results, title=f"imgclf evaluation: {model_dir.resolve().name} on {data_dir.resolve().name}",
                             heatmaps=Heatmaps(model), plot_prefix=f"{report.stem}-", write=_writer(claims))
        render.line(f"report written to {report} (plots: {', '.join(f.name for f in files[1:])})")
    return 0


def _several_labels_evaluated(result: dict, model, model_dir, data_dir, json_out, report, claims) -> int:
    """What ``evaluate`` prints and writes for a model of several labels per photo: per-label precision, recall, F1 and
    AP, exact sets; the photos it could not read."""
    from imgclf.cli import render
    from imgclf.files import printable
    from imgclf.report.multilabel import write_multilabel_report
    from imgclf.runtime.artifact import generator

    render.multilabel_lines(result["multi_label"])
    for s in result["skipped"]:
        print(f"skipped {printable(s['path'])}: {s['reason']}", file=sys.stderr)
    if json_out:
        claims[json_out].write_json({"generator": generator("evaluate"), **result})
        render.line(f"results written to {json_out}")
    if report:
        title = f"imgclf evaluation: {model_dir.resolve().name} on {data_dir.resolve().name}"
        write_multilabel_report(report, model.meta, result, title, write=_writer(claims))
        render.line(f"report written to {report}")
    return 0


@app.command()
@click.argument("data_dir", type=PATH)
@click.option("--json", "json_out", type=PATH, help="Write every finding as JSON to this file.")
@click.option("--report", type=PATH, help="Write an HTML page of the findings, with the photos side by side.")
@click.option("--fix-plan", type=PATH, help="Write the findings as a CSV table to edit (path, kind, suggested action).")
@click.option("--backbone", default="efficientnet_lite0", show_default=True, help=BACKBONE_HELP)
@click.option("--weights", type=PATH, help="Backbone weights: safetensors or a PyTorch state dict.")
@click.option("--crop", help=CROP_HELP)
@click.option("--cache-dir", type=PATH, help="Where embeddings are cached (the same cache as train's).")
@click.option("--quantize", is_flag=True, help="The int8 backbone, as train --quantize uses.")
@click.option("--val-fraction", type=float, default=0.1, show_default=True, help="As in train: the split photos would fall in.")
@click.option("--test-fraction", type=float, default=0.1, show_default=True, help="As in train: the split photos would fall in.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--labels", "labels_file", type=PATH, help="Several labels per photo from this manifest (as train --labels): "
              "find labels photos probably lack or should not have.")
@click.option("--multi-label", is_flag=True, help="Several labels per photo from label folders (as train --multi-label).")
def check(data_dir, json_out, report, fix_plan, backbone, weights, crop, cache_dir, quantize, val_fraction, test_fraction, quiet,
          labels_file, multi_label) -> int:
    """Find what is wrong with a folder of labelled photos: copies, likely label mistakes, outliers, blurred or tiny photos."""
    from imgclf.checks import check as run_check
    from imgclf.cli import render
    from imgclf.runtime.artifact import generator

    for path, option in ((json_out, "--json"), (report, "--report"), (fix_plan, "--fix-plan")):
        if path is not None and _inside(path, data_dir):
            raise ImgclfError(f"{option} {path} is inside the data folder: write it elsewhere (it would be checked as a photo next time)")
    claims = _claims({json_out: "--json", report: "--report", fix_plan: "--fix-plan"})
    with render.ProgressBar("embedding photos", disabled=quiet) as bar:
        if labels_file is not None or multi_label:
            from imgclf.training.multilabel import check_folder

            result = check_folder(data_dir, labels_file, backbone, bar.update, None if quiet else bar.log, weights=weights,
                                  cache_dir=cache_dir, crop=crop, quantize=quantize)
        else:
            result = run_check(data_dir, backbone=backbone, weights=weights, cache_dir=cache_dir, crop=crop, quantize=quantize,
                               val_fraction=val_fraction, test_fraction=test_fraction, progress=bar.update,
                               log=None if quiet else bar.log)
    render.check_summary(result, str(data_dir))
    if json_out:
        claims[json_out].write_json({"generator": generator("check"), **result.to_dict()})
        render.line(f"findings written to {json_out}")
    if fix_plan:
        claims[fix_plan].write_text(result.fix_plan_csv())
        render.line(f"fix plan written to {fix_plan} (imgclf changes nothing: edit it and act on it yourself)")
    if report:
        from imgclf.report.findings import write_check_report

        write_check_report(report, result.to_dict(), title=f"imgclf check: {Path(data_dir).resolve().name}", write=_writer(claims))
        render.line(f"report written to {report}")
    return 0


def _claims(paths: dict) -> dict:
    """The result files options name (``{path: option}``, None for an option not given), each claimed: never a
    model's own file, never a file imgclf did not write (:class:`~imgclf.files.Claim`)."""
    from imgclf.files import Claim
    from imgclf.runtime.artifact import check_not_artefact

    claims = {}
    for path, option in paths.items():
        if path is not None:
            check_not_artefact(path, option)
            claims[path] = Claim(path, option)
    return claims


def _writer(claims: dict):
    """``write(path, bytes)`` through the claim made for ``path``."""
    by_place = {os.path.abspath(p): c for p, c in claims.items()}
    return lambda path, data: by_place[os.path.abspath(path)].write_bytes(data)


def _inside(path: Path, folder: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(Path(folder).resolve())
    except OSError:
        return False


@app.command()
@click.argument("model_dir", type=PATH)
@click.option("--format", "fmt", type=click.Choice(["onnx", "tflite", "saved_model"]), required=True,
              help="onnx (FILE.onnx), tflite (FILE.tflite) or saved_model (a folder); tflite and saved_model need imgclf[tflite].")
@click.option("-o", "--output", type=PATH, required=True, help="File (onnx, tflite) or folder (saved_model) to write.")
@click.option("--int8", is_flag=True, help="tflite with int8 weights and activations, calibrated on the model's training photos.")
@click.option("--check-photos", type=PATH, help="Photos to check the export on (default: the model's validation and test photos).")
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
def export(model_dir, fmt, output, int8, check_photos, quiet) -> int:
    """Export the classifier (probabilities, similarity, embedding) for other runtimes, checked against model.onnx."""
    from imgclf.cli import render
    from imgclf.exports import export as run_export

    result = run_export(model_dir, fmt, output, int8=int8, check_photos=check_photos, log=None if quiet else render.line)
    render.export_summary(result)
    return 0


@app.command()
@click.argument("model_dir", type=PATH)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Server processes; each loads the model and shares the cores.")
@click.option("--max-upload-mb", type=click.FloatRange(min=0.01), default=10.0, show_default=True,
              help="Largest accepted upload (a photo or a batch request), MB.")
@click.option("--max-megapixels", type=click.FloatRange(min=0.01), default=80.0, show_default=True,
              help="Largest image decoded; bigger ones get 422.")
@click.option("--allowed-host", multiple=True, help="A Host name to answer besides the defaults (repeatable). On a loopback "
              "address only localhost, 127.0.0.1 and ::1 are answered; elsewhere any, unless given.")
@click.option("--request-timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds a client has to send its request headers; bodies slower than 1 KB/s over half of it are dropped too.")
@click.option("--access-log/--no-access-log", default=True, show_default=True, help="Log every request.")
@click.option("--log-level", default="info", show_default=True, help="uvicorn log level: critical, error, warning, info, debug.")
def serve(model_dir, host, port, workers, max_upload_mb, max_megapixels, allowed_host, request_timeout, access_log, log_level) -> int:
    """Serve the model: a REST API and a web page to drop photos on (no torch)."""
    from imgclf.serve import run_server

    run_server(model_dir, host=host, port=port, workers=workers, max_upload_mb=max_upload_mb, max_megapixels=max_megapixels,
               allowed_hosts=list(allowed_host), request_timeout=request_timeout, access_log=access_log, log_level=log_level)
    return 0


@app.command()
@click.argument("folder", type=PATH, required=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 to reach it from a phone on the LAN).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port to listen on.")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a browser.")
@click.option("--allowed-host", multiple=True, help="A Host name to answer besides the defaults (repeatable), as for serve.")
@click.option("--max-upload-mb", type=click.FloatRange(min=0.01), default=20.0, show_default=True,
              help="Largest request of photos the page may send, MB.")
def studio(folder, host, port, open_browser, allowed_host, max_upload_mb) -> int:
    """Teach, test and correct a model from a web page: FOLDER is a project (label folders; made if missing)."""
    from imgclf.studio import run_studio

    run_studio(folder, host=host, port=port, open_browser=open_browser, allowed_hosts=list(allowed_host),
               max_upload_mb=max_upload_mb)
    return 0


@app.command()
@click.argument("data_dir", type=PATH)
@click.option("-o", "--output", type=PATH, required=True, help="File to write: .csv, .jsonl or .parquet (any of them for train --embeddings).")
@click.option("--engine", default="local", show_default=True, help=ENGINE_HELP)
@click.option("--address", help=ADDRESS_HELP)
@click.option("--actors", type=click.IntRange(min=1), help=ACTORS_HELP)
@click.option("--backbone", default="efficientnet_lite0", show_default=True, help=BACKBONE_HELP)
@click.option("--weights", type=PATH, help="Backbone weights: safetensors or a PyTorch state dict.")
@click.option("--crop", help=CROP_HELP)
@click.option("--cache-dir", type=PATH, help="Where backbone exports are cached.")
@click.option("--val-fraction", type=float, default=0.1, show_default=True,
              help="Share of photos for validation (without a val/ folder), for the split column.")
@click.option("--test-fraction", type=float, default=0.1, show_default=True,
              help="Share of photos held out for the test (without splits), for the split column.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def embed(data_dir, output, engine, address, actors, backbone, weights, crop, cache_dir, val_fraction, test_fraction, quiet) -> int:
    """Embed every photo of a labelled folder (path, hash, label, split, embedding, error per row)."""
    from imgclf import engines
    from imgclf.cli import render

    with render.ProgressBar("embedding photos", disabled=quiet) as bar:
        job = engines.embed(
            data_dir, output, engine, backbone=backbone, weights=weights, crop=crop, cache_dir=cache_dir,
            val_fraction=val_fraction, test_fraction=test_fraction, address=address, actors=actors,
            progress=bar.update, log=None if quiet else bar.log,
        )
    return render.job_summary(job, "embeddings", output, engine)
