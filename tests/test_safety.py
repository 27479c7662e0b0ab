"""imgclf never loses a user's file, prints names literally, and trusts no model folder blindly (issue 14)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tracemalloc
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from click.testing import CliRunner

import imgclf
from imgclf.runtime import artifact
from imgclf.cli import app
from imgclf.errors import ImgclfError
from tests.conftest import LABELS, PHOTOS, UNSEEN, copy_photos, run_cli

runner = CliRunner()


def cli(*args: str):
    """The real command line, in this process: (exit code, stdout, stderr)."""
    r = runner.invoke(app, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` by relative path, with a digest of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def photos(tmp_path, cache_dir) -> Path:
    return copy_photos(tmp_path / "p", per_label=3)


@pytest.fixture
def model(tmp_path, photos) -> Path:
    out = tmp_path / "model"
    code, _, err = cli("train", photos, "-o", out, "-q")
    assert code == 0, err
    return out


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


# --- train never deletes what it did not write ------------------------------------------


def test_photos_moved_into_the_model_folder_survive_a_retrain(tmp_path, photos, model):
    """The issue's case: `mv p model/photos; imgclf train model/photos -o model`."""
    shutil.move(photos, model / "photos")
    before = snapshot(model)
    code, _, err = cli("train", model / "photos", "-o", model, "-q")
    assert_one_line_error(code, err, "contains the data folder")
    assert snapshot(model) == before


def test_a_users_file_in_the_model_folder_is_never_deleted(photos, model):
    (model / "my_notes.txt").write_text("do not lose me")
    before = snapshot(model)
    code, _, err = cli("train", photos, "-o", model, "-q")
    assert_one_line_error(code, err, "my_notes.txt", "did not write")
    assert snapshot(model) == before


def test_output_equal_to_or_inside_the_data_folder_is_refused(tmp_path, photos):
    before = snapshot(photos)
    for out, why in ((photos, "is the data folder"), (photos / "model", "inside the data folder"),
                     (photos / "roses" / "m", "inside the data folder")):
        code, _, err = cli("train", photos, "-o", out, "-q")
        assert_one_line_error(code, err, why)
    assert snapshot(photos) == before


def test_a_model_folder_inside_the_data_is_skipped_and_reported(tmp_path, photos, model):
    shutil.copytree(model, photos / "model")
    shutil.copytree(model, photos / "roses" / "old model")
    result = imgclf.train(photos, tmp_path / "m2", cache_dir=os.environ["IMGCLF_CACHE_DIR"])
    assert result.labels == LABELS
    reasons = {Path(s.path).name: s.reason for s in result.skipped}
    assert "model folder" in reasons["model"] and "model folder" in reasons["old model"]
    assert sum(c["train"] + c["val"] + c["test"] for c in result.counts.values()) == 15
    code, out, _ = cli("train", photos, "-o", tmp_path / "m3", "-q")
    assert code == 0 and f"{photos / 'model'}: an imgclf model folder" in " ".join(out.split())  # as wrapped at 80 columns


def test_symlinked_output_is_followed(tmp_path, photos, model):
    link = tmp_path / "current"
    link.symlink_to(model, target_is_directory=True)
    assert json.loads((model / "imgclf.json").read_text())["head"]["seed"] == 0
    code, _, err = cli("train", photos, "-o", link, "--seed", "7", "-q")
    assert code == 0, err
    assert link.is_symlink() and link.resolve() == model.resolve()
    assert json.loads((model / "imgclf.json").read_text())["head"]["seed"] == 7
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_read_only_mount_point_is_one_line_and_leaves_nothing(tmp_path, photos):
    target = tmp_path / "ro"
    target.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(target)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        code, _, err = cli("train", photos, "-o", target, "-q")
        assert_one_line_error(code, err, "cannot write the model to")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["p", "ro"]  # no .ro.old-* or .ro.tmp-* left
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_unwritable_output_is_one_line(photos):
    code, _, err = cli("train", photos, "-o", "/proc/imgclf-model", "-q")
    assert_one_line_error(code, err, "cannot write the model to /proc/imgclf-model")


def test_evaluate_and_embed_refuse_to_overwrite_a_models_own_files(model):
    before = snapshot(model)
    for option, name in (("--json", "imgclf.json"), ("--json", "labels.json"), ("--report", "report.html")):
        code, _, err = cli("evaluate", model, UNSEEN, option, model / name)
        assert_one_line_error(code, err, option, "a file of the model")
    with pytest.raises(ImgclfError, match="a file of the model"):
        artifact.check_not_artefact(model / "metrics.json", "-o")
    assert snapshot(model) == before
    artifact.check_not_artefact(model.parent / "metrics.json", "-o")  # the same name elsewhere is fine


def test_result_files_replace_only_what_imgclf_wrote(model, tmp_path):
    """evaluate --json/--report (and the plots beside the page) and check --json/--report/--fix-plan write over
    their own earlier results, never over a file of the user's."""
    js, page = tmp_path / "results.json", tmp_path / "unseen.html"
    code, _, err = cli("evaluate", model, UNSEEN, "--json", js, "--report", page)
    assert code == 0, err
    assert cli("evaluate", model, UNSEEN, "--json", js, "--report", page)[0] == 0  # its own: replaced
    for victim, option in ((tmp_path / "notes.json", "--json"), (tmp_path / "mine.html", "--report"),
                           (tmp_path / "plan.csv", "--fix-plan")):
        victim.write_text("the user's own words")
        args = ("check", PHOTOS, "-q") if option == "--fix-plan" else ("evaluate", model, UNSEEN)
        code, _, err = cli(*args, option, victim)
        assert_one_line_error(code, err, option, "was not written by imgclf")
        assert victim.read_text() == "the user's own words"
    for name in ("preds.csv", "preds.jsonl", "preds.parquet"):
        out = tmp_path / name
        if name.endswith(".parquet") and importlib.util.find_spec("pyarrow") is None:
            continue
        assert cli("predict", model, UNSEEN, "-o", out)[0] == 0
        assert cli("predict", model, UNSEEN, "-o", out, "--top-k", "2")[0] == 0  # its own (any --top-k): replaced
        out.write_bytes(b"the user's own rows")
        code, _, err = cli("predict", model, UNSEEN, "-o", out)
        assert_one_line_error(code, err, "output", "was not written by imgclf")
        assert out.read_bytes() == b"the user's own rows"
    plot = tmp_path / "mine-confusion_matrix.svg"
    (tmp_path / "mine.html").unlink()
    plot.write_text("<svg>a drawing of the user's</svg>")
    code, _, err = cli("evaluate", model, UNSEEN, "--report", tmp_path / "mine.html")
    assert_one_line_error(code, err, "--report", "was not written by imgclf")
    assert plot.read_text() == "<svg>a drawing of the user's</svg>" and not (tmp_path / "mine.html").exists()


def test_an_interrupted_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    from imgclf import files
    from imgclf.embeddings.cache import EmbeddingCache

    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.atomic.os, "replace", interrupted)
    cache = EmbeddingCache(tmp_path, "bb")
    with pytest.raises(KeyboardInterrupt):
        cache.put("ab" * 20, np.ones(4, np.float32))
    with pytest.raises(KeyboardInterrupt):
        files.write_json_atomic(tmp_path / "out.json", {"a": 1})
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


# --- hostile names: printed literally ---------------------------------------------------

#: Inside a folder named ``x[``: together with it, ``x[/]y.jpg`` made Rich's markup parser crash.
HOSTILE = ["]y.jpg", "[bold red]a.jpg", "[link=http:evil]b.jpg", ":smile: c.jpg"]


def test_predict_prints_hostile_file_names_literally(tmp_path, trained_model):
    d = tmp_path / "x["
    d.mkdir()
    src = next((UNSEEN / "daisy").iterdir())
    for name in HOSTILE:
        (d / name).write_bytes(src.read_bytes())
    r = subprocess.run([*_imgclf(), "predict", str(trained_model), str(d)], capture_output=True, text=True,
                       env={**os.environ, "FORCE_COLOR": "1", "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    plain = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout)
    assert "\x1b]8;" not in r.stdout  # no terminal hyperlink
    for name in HOSTILE:  # shown relative to the folder asked for
        assert any(line.startswith(name + "  ") for line in plain.splitlines()), name


def _imgclf() -> list[str]:
    import sys

    return [sys.executable, "-m", "imgclf.cli"]


def test_train_prints_hostile_label_names_literally(tmp_path, cache_dir):
    root = copy_photos(tmp_path / "d", per_label=3, labels=LABELS[:2])
    (root / LABELS[1]).rename(root / "[red]lab")
    code, out, err = cli("train", root, "-o", tmp_path / "m", "-q")
    assert code == 0, err
    assert "[red]lab" in out


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=30))
def test_any_name_is_printed_as_it_is(name):
    from imgclf.cli import render
    from imgclf.runtime.prediction import Prediction
    import contextlib
    import io

    pred = Prediction(name, "ok", name, 0.5, [{"label": name, "confidence": 0.5}], similarity=0.9)
    for fmt in ("json", "table"):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            render.predictions([pred], fmt, 1)
        if fmt == "json":
            assert json.loads(buf.getvalue())[0]["path"] == name
        else:  # one table row per photo, the name shown whole, control characters escaped
            body = buf.getvalue().splitlines()[2:]
            assert len(body) == 1, body
            shown = name if name.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
            if len(shown) <= 32:
                assert body[0].startswith(shown), (body, shown)
    from imgclf.report.card import _md

    shown = _md(name)
    assert "<" not in shown and ">" not in shown and "\n" not in shown


def test_model_card_escapes_label_names(tmp_path, cache_dir):
    root = copy_photos(tmp_path / "d", per_label=3, labels=LABELS[:2])
    evil = "<img src=x onerror=alert(1)>"
    (root / LABELS[1]).rename(root / evil)
    result = imgclf.train(root, tmp_path / "m", cache_dir=cache_dir)
    assert evil in result.labels
    card = (tmp_path / "m" / "README.md").read_text()
    assert "<img" not in card and "&lt;img src=x onerror=alert(1)&gt;" in card


# --- data mistakes explained ------------------------------------------------------------


def test_labels_that_differ_only_in_unicode_normalisation_warn(tmp_path, cache_dir):
    root = copy_photos(tmp_path / "d", per_label=3, labels=LABELS[:2])
    (root / LABELS[0]).rename(root / unicodedata.normalize("NFC", "rosé"))
    (root / LABELS[1]).rename(root / unicodedata.normalize("NFD", "rosé"))
    result = imgclf.train(root, tmp_path / "m", cache_dir=cache_dir)
    assert len(result.labels) == 2
    assert any("Unicode" in w and "NFC/NFD" in w for w in result.warnings)


def test_split_named_folders_holding_images_explain_the_layout(tmp_path):
    root = tmp_path / "d"
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        for src in sorted((PHOTOS / "daisy").iterdir())[:2]:
            shutil.copy(src, root / split / src.name)
    code, _, err = cli("train", root, "-o", tmp_path / "m", "-q")
    assert_one_line_error(code, err, "read as split folders", "train/, val/", "rename them")


def test_a_label_without_usable_photos_says_why(tmp_path, cache_dir):
    root = copy_photos(tmp_path / "d", per_label=3, labels=LABELS[:2])
    (root / "blue").mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (0, 0, 200 + i)).save(root / "blue" / f"{i}.png")
    for src in (root / LABELS[0]).iterdir():
        shutil.copy(src, root / "blue" / f"copy-{src.name}")
    code, _, err = cli("train", root, "-o", tmp_path / "m", "-q")
    assert_one_line_error(code, err, "label 'blue' has 0 usable photos", "3 image too small",
                          "3 copies of photos under another label")


# --- model folders are validated when loaded --------------------------------------------


def _tampered(model: Path, tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    shutil.copytree(model, out)
    return out


def _edit_json(path: Path, change) -> None:
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def _set_labels(labels):
    def change(model: Path):
        (model / "labels.json").write_text(json.dumps(labels))
        _edit_json(model / "imgclf.json", lambda m: m.__setitem__("labels", labels))
    return change


def _set_pre(key, value):
    return lambda model: _edit_json(model / "imgclf.json", lambda m: m["preprocessing"].__setitem__(key, value))


def _flip_weights(model: Path):
    data = bytearray((model / "model.onnx").read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0x55
    (model / "model.onnx").write_bytes(bytes(data))


TAMPERING = {
    "eight labels for five outputs": (_set_labels([f"l{i}" for i in range(8)]), "8 labels"),
    "two labels for five outputs": (_set_labels(["a", "b"]), "2 labels"),
    "an empty label": (_set_labels(["a", "", "c", "d", "e"]), "non-empty string"),
    "a label that is a number": (_set_labels(["a", 2, "c", "d", "e"]), "non-empty string"),
    "labels.json and imgclf.json disagree": (lambda m: (m / "labels.json").write_text(json.dumps(["a", "b", "c", "d", "e"])),
                                             "list different labels"),
    "std of zero": (_set_pre("std", [0.5, 0.0, 0.5]), "std must be positive"),
    "input size not a number": (_set_pre("input_size", "224"), "input_size"),
    "absurd input size": (_set_pre("input_size", 10**9), "input_size"),
    "crop fraction over 1": (_set_pre("crop_pct", 2.0), "crop_pct"),
    "NaN mean": (lambda m: (m / "imgclf.json").write_text((m / "imgclf.json").read_text().replace('"mean": [', '"mean": [NaN, ', 1)),
                 "damaged"),
    "unknown interpolation": (_set_pre("interpolation", "magic"), "interpolation"),
    "newer format": (lambda m: _edit_json(m / "imgclf.json", lambda d: d.update(format_version=99, imgclf_version="9.0.0")),
                     "written by imgclf 9.0.0 in model format 99"),
    "flipped weight bytes": (_flip_weights, "does not match its checksum"),
    "threshold not a number": (lambda m: _edit_json(m / "imgclf.json", lambda d: d["rejection"].__setitem__("threshold", "high")),
                               "threshold"),
    "not JSON": (lambda m: (m / "labels.json").write_text("[\"a\", "), "damaged"),
    "model.onnx missing": (lambda m: (m / "model.onnx").unlink(), "model.onnx missing"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_a_tampered_model_folder_is_refused_in_one_line(case, trained_model, tmp_path):
    tamper, fragment = TAMPERING[case]
    model = _tampered(trained_model, tmp_path, "m")
    tamper(model)
    with pytest.raises(ImgclfError, match=re.escape(fragment)):
        imgclf.load(model)
    code, _, err = cli("predict", model, next(UNSEEN.rglob("*.jpg")))
    assert_one_line_error(code, err, fragment)


def test_server_refuses_to_start_on_a_tampered_model(trained_model, tmp_path):
    model = _tampered(trained_model, tmp_path, "m")
    _flip_weights(model)
    r = run_cli("serve", str(model), "--port", "0")
    assert_one_line_error(r.returncode, r.stderr, "checksum")


def test_the_checksum_is_stored_and_matches(trained_model):
    from imgclf.files import file_sha256

    meta = json.loads((trained_model / "imgclf.json").read_text())
    assert meta["onnx"]["sha256"] == file_sha256(trained_model / "model.onnx")


def test_a_model_answering_nan_gives_an_error_row_not_bare_nan(trained_model):
    model = imgclf.load(trained_model)
    scores = np.full(len(model.labels) + 1, np.nan, np.float32)
    pred = model.prediction("x.jpg", scores)
    assert pred.label is None and "NaN" in pred.error
    from imgclf.files import to_json

    assert json.loads(to_json({"similarity": float("nan"), "rows": [float("inf"), 1.5]})) == {"similarity": None, "rows": [None, 1.5]}


# --- memory: high-depth images are converted within a budget ----------------------------


def test_a_big_16_bit_image_is_converted_without_full_size_copies(tmp_path):
    from imgclf.runtime.images import decode

    w, h = 4000, 3000
    ramp = (np.arange(w, dtype=np.uint32) * 65535 // (w - 1)).astype(np.uint16)
    img = Image.frombuffer("I;16", (w, h), np.broadcast_to(ramp, (h, w)).tobytes(), "raw", "I;16", 0, 1)
    path = tmp_path / "deep.png"
    img.save(path)
    data = path.read_bytes()
    tracemalloc.start()
    out = decode(data, max_side=512)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MB of NumPy/Python allocations (a float64 copy is {w * h * 8 / 2**20:.0f} MB)"
    assert out.mode == "RGB" and min(out.size) >= 512 and out.size[0] < w
    row = np.asarray(out)[out.size[1] // 2, :, 0].astype(int)
    expected = np.linspace(0, 255, len(row))
    assert np.abs(row - expected).max() <= 2  # the ramp, scaled to 8 bits
    full = decode(data)
    assert full.size == (w, h) and np.asarray(full)[0, -1, 0] == 255 and np.asarray(full)[0, 0, 0] == 0


# --- every file of the folder, bounded and checked where it is loaded (issue 24) -------------------------

def _neighbors(text_or_change):
    def change(model: Path):
        path = model / "neighbors.json"
        if isinstance(text_or_change, str):
            path.write_text(text_or_change)
        else:
            _edit_json(path, text_or_change)
    return change


def _swap_first_two_labels(index: dict) -> None:
    rows = index["photos"]
    first = next(i for i, r in enumerate(rows) if r[1] != rows[0][1])
    rows[0][1], rows[first][1] = rows[first][1], rows[0][1]


#: Damaged neighbors.json / metrics.json / imgclf.json 'data' / threshold: each is one line from predict --neighbors,
#: export and the server, never a RecursionError, IndexError or TypeError. A changed neighbors.json fails its checksum
#: first; the structure is checked too (for folders written before the checksum: the last column).
DAMAGED_FILES = {
    "neighbors nested 100,000 deep": (_neighbors('{"photos": ' + "[" * 100_000 + "]" * 100_000 + "}"), "neighbors.json", "nested too deeply"),
    "neighbors with 2 entries": (_neighbors(lambda d: d.__setitem__("photos", d["photos"][:2])), "neighbors.json", "lists 2 photos"),
    "neighbors of numbers": (_neighbors('{"photos": [42, 43]}'), "neighbors.json", "expected {\"photos\": [[path, label]"),
    "neighbors with swapped labels": (_neighbors(_swap_first_two_labels), "neighbors.json does not match its checksum", None),
    "metrics nested deep": (lambda m: (m / "metrics.json").write_text("[" * 100_000 + "]" * 100_000), "metrics.json is damaged", None),
    "metrics photos of numbers": (lambda m: _edit_json(m / "metrics.json", lambda d: d["test"].__setitem__("photos", [1, 2])),
                                  "metrics.json is damaged", None),
    "data is a list": (lambda m: _edit_json(m / "imgclf.json", lambda d: d.__setitem__("data", [1, 2])), "'data' must be an object",
                       None),
    "threshold moved": (lambda m: _edit_json(m / "imgclf.json", lambda d: d["rejection"].__setitem__("threshold", 0.01)),
                        "'unknown' rule is not what model.onnx was trained with", None),
}


@pytest.mark.parametrize("case", list(DAMAGED_FILES))
def test_every_file_of_the_model_folder_is_validated_where_it_is_loaded(case, trained_model, tmp_path, monkeypatch):
    from imgclf.serve.app import create_app

    tamper, fragment, structure = DAMAGED_FILES[case]
    model = _tampered(trained_model, tmp_path, "m")
    tamper(model)
    photo = next(UNSEEN.rglob("*.jpg"))
    code, _, err = cli("predict", model, photo, "--neighbors", "3")
    if not case.startswith("metrics"):  # predict reads no metrics
        assert_one_line_error(code, err, fragment)
    code, _, err = cli("export", model, "--format", "onnx", "-o", tmp_path / "m.onnx", "-q")
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(ImgclfError, match=re.escape(fragment)):
        create_app(model)  # the server refuses to start
    if structure:
        monkeypatch.setattr(artifact, "pinned", lambda session: {})  # a folder written before neighbors.json had a checksum
        with pytest.raises(ImgclfError, match=re.escape(structure)):
            imgclf.load(model).neighbor_index


def test_an_oversized_model_file_is_refused_before_it_is_parsed(trained_model, tmp_path, monkeypatch):
    model = _tampered(trained_model, tmp_path, "m")
    monkeypatch.setitem(artifact.MAX_BYTES, "neighbors.json", 1000)
    with pytest.raises(ImgclfError, match="neighbors.json is damaged: .*more than"):
        imgclf.load(model).neighbor_index
