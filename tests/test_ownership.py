"""Never lose a file, round three (issue 24): result files and export folders replace only what imgclf wrote there,
checked again just before the rename; special files are never opened; export writes fail in one line and stream."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

import imgclf
from imgclf import files
from imgclf.files import claims
from imgclf.cli import app
from imgclf.errors import ImgclfError
from tests.conftest import PHOTOS, UNSEEN, copy_photos, run_cli

runner = CliRunner()
needs_tf = pytest.mark.skipif(
    any(__import__("importlib").util.find_spec(m) is None for m in ("onnx2tf", "tensorflow", "ai_edge_litert")),
    reason="needs the tflite extra: pip install -e '.[tflite]'")


def cli(*args):
    r = runner.invoke(app, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --- result files: a foreign file is never replaced, whatever it looks like ---------------------------

#: Files of the user's that look like imgclf's results: the header or first key imgclf writes, its generator key or meta.
LOOKALIKES = {
    "labels.jsonl": ('{"path": "a.jpg", "label": "cat"}\n', ("predict", "MODEL", UNSEEN, "-o")),
    "review.csv": ("path,status,notes\na.jpg,ok,looks fine\n", ("predict", "MODEL", UNSEEN, "-o")),
    "manifest.csv": ("path,hash,label\na.jpg,abc,cat\n", ("embed", PHOTOS, "-q", "-o")),
    "notes.json": ('{"generator": "not imgclf, but it says imgclf", "mine": 1}\n', ("check", PHOTOS, "-q", "--json")),
    "page.html": ('<html><head><meta name="generator" content="imgclf"></head><body>my page</body></html>\n',
                  ("check", PHOTOS, "-q", "--report")),
}


@pytest.mark.parametrize("name", list(LOOKALIKES))
def test_a_file_that_merely_looks_like_imgclfs_is_never_replaced(name, trained_model, tmp_path, cache_dir):
    text, command = LOOKALIKES[name]
    victim = tmp_path / name
    victim.write_text(text)
    args = [trained_model if a == "MODEL" else a for a in command]
    code, _, err = cli(*args, victim)
    one_line_error(code, err, str(victim), "was not written by imgclf")
    assert victim.read_text() == text


def test_a_result_imgclf_wrote_is_replaced_until_the_user_edits_it(trained_model, tmp_path, cache_dir):
    plan = tmp_path / "plan.csv"
    assert cli("check", PHOTOS, "-q", "--fix-plan", plan)[0] == 0
    assert cli("check", PHOTOS, "-q", "--fix-plan", plan)[0] == 0  # its own, unchanged: replaced
    edited = plan.read_text() + "my decision,keep\n"
    plan.write_text(edited)  # now the user's
    code, _, err = cli("check", PHOTOS, "-q", "--fix-plan", plan)
    one_line_error(code, err, "was not written by imgclf (or was changed since)")
    assert plan.read_text() == edited
    copied = tmp_path / "copy.csv"
    out = tmp_path / "preds.csv"
    assert cli("predict", trained_model, UNSEEN, "-o", out)[0] == 0
    shutil.copy(out, copied)  # the same bytes at another path were not written there by imgclf
    one_line_error(*cli("predict", trained_model, UNSEEN, "-o", copied)[::2], "was not written by imgclf")


def test_a_special_file_or_a_link_at_an_output_path_is_refused_without_opening_it(trained_model, tmp_path):
    fifo = tmp_path / "preds.csv"
    os.mkfifo(fifo)
    code, _, err = cli("predict", trained_model, UNSEEN, "-o", fifo)  # opening the pipe would block for ever
    one_line_error(code, err, "not a regular file")
    link = tmp_path / "link.json"
    target = tmp_path / "target.json"
    target.write_text("{}")
    link.symlink_to(target)
    one_line_error(*cli("evaluate", trained_model, UNSEEN, "--json", link)[::2], "symbolic link")
    assert target.read_text() == "{}"


# --- ownership checked again just before the rename (point 3) --------------------------------------------


def _appear_before_the_last_check(monkeypatch, path: Path, text: str):
    """A foreign file created at ``path`` right before the final check of its claim."""
    real = files.Claim._check_unchanged

    def hook(self):
        if self.path == path and not path.exists():
            path.write_text(text)
        return real(self)

    monkeypatch.setattr(files.Claim, "_check_unchanged", hook)


def _appear_after_the_last_check(monkeypatch, path: Path, text: str):
    """A foreign file created at ``path`` after the final check, just before the new file is linked into place."""
    real = claims._place_new

    def hook(staged, target, option):
        if target == path:
            path.write_text(text)
        return real(staged, target, option)

    monkeypatch.setattr(claims, "_place_new", hook)


@pytest.mark.parametrize("when", [_appear_before_the_last_check, _appear_after_the_last_check])
@pytest.mark.parametrize("option", ["--json", "--fix-plan"])
def test_a_file_created_while_check_runs_is_not_replaced(when, option, tmp_path, monkeypatch, cache_dir):
    out = tmp_path / ("f.json" if option == "--json" else "plan.csv")
    when(monkeypatch, out, "the user's file, made meanwhile")
    code, _, err = cli("check", PHOTOS, "-q", option, out)
    one_line_error(code, err, str(out))
    assert out.read_text() == "the user's file, made meanwhile"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left


@pytest.mark.parametrize("when", [_appear_before_the_last_check, _appear_after_the_last_check])
def test_a_file_created_while_export_runs_is_not_replaced(when, trained_model, tmp_path, monkeypatch):
    out = tmp_path / "flowers.onnx"
    when(monkeypatch, out, "the user's file, made meanwhile")
    code, _, err = cli("export", trained_model, "--format", "onnx", "-o", out, "-q")
    one_line_error(code, err, str(out))
    assert out.read_text() == "the user's file, made meanwhile"
    assert not (tmp_path / "flowers.onnx.json").exists()


# --- export folders (point 1) ----------------------------------------------------------------------------


def test_a_folder_claim_replaces_only_imgclfs_own_folder(tmp_path):
    """The rule ``export --format saved_model -o DIR`` follows, on folders made here (the real export is tested below)."""
    def staged(text: str) -> Path:
        d = Path(tempfile.mkdtemp(dir=tmp_path, prefix=".staged-"))
        (d / "assets").mkdir()
        (d / "saved_model.pb").write_text(text)
        (d / "assets" / "imgclf.json").write_text("{}")
        return d

    out = tmp_path / "sm"
    files.Claim(out, "-o", folder=True).commit(staged("one"))
    files.Claim(out, "-o", folder=True).commit(staged("two"))  # its own: replaced
    assert (out / "saved_model.pb").read_text() == "two"
    (out / "NOTES.md").write_text("mine")
    with pytest.raises(ImgclfError, match="holds files imgclf did not write there \\(NOTES.md\\)"):
        files.Claim(out, "-o", folder=True)
    claim = (out / "NOTES.md").unlink() or files.Claim(out, "-o", folder=True)
    (out / "lib").mkdir()
    (out / "lib" / "main.dart").write_text("void main() {}")  # added while the export runs
    with pytest.raises(ImgclfError, match="imgclf did not write there \\(lib/main.dart\\)"):
        claim.commit(staged("three"))
    assert (out / "lib" / "main.dart").read_text() == "void main() {}" and (out / "saved_model.pb").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".staged-")) == ["sm"]


@needs_tf
def test_reexporting_a_saved_model_never_deletes_a_users_file(trained_model, tmp_path):
    sm = tmp_path / "sm"
    assert cli("export", trained_model, "--format", "saved_model", "-o", sm, "-q")[0] == 0
    assert cli("export", trained_model, "--format", "saved_model", "-o", sm, "-q")[0] == 0  # its own: replaced
    (sm / "NOTES.md").write_text("notes")
    before = tree(sm)
    code, _, err = cli("export", trained_model, "--format", "saved_model", "-o", sm, "-q")
    one_line_error(code, err, "NOTES.md")
    assert tree(sm) == before
    app_dir = tmp_path / "flutter_app"  # an app folder holding the sidecar copied from the export
    (app_dir / "assets").mkdir(parents=True)
    (app_dir / "lib").mkdir()
    shutil.copy(sm / "assets" / "imgclf.json", app_dir / "assets" / "imgclf.json")
    (app_dir / "lib" / "main.dart").write_text("void main() {}")
    (app_dir / "flowers.tflite").write_bytes(b"TFL3 the app's model")
    before = tree(app_dir)
    code, _, err = cli("export", trained_model, "--format", "saved_model", "-o", app_dir, "-q")
    one_line_error(code, err, "imgclf did not write there")
    assert tree(app_dir) == before


# --- writing fails in one line (point 10), and the check streams (point 12) --------------------------------


def test_export_to_an_unwritable_place_is_one_line(trained_model, tmp_path):
    code, _, err = cli("export", trained_model, "--format", "onnx", "-o", "/proc/imgclf-export.onnx", "-q")
    one_line_error(code, err, "cannot write", "/proc/imgclf-export.onnx")
    target = tmp_path / "ro"
    target.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(target)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        code, _, err = cli("export", trained_model, "--format", "onnx", "-o", target / "m.onnx", "-q")
        one_line_error(code, err, "cannot write", "Read-only file system")
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_the_export_check_streams_its_photos(trained_model, tmp_path):
    """Preprocessed photos are held a batch at a time: checking on 96 photos (58 MB as one array) peaks no higher than
    on 16 (the rest of the peak is the graph, the same for both)."""
    sources = sorted(UNSEEN.rglob("*.jpg"))
    peaks = {}
    for n in (16, 96):
        many = tmp_path / f"many-{n}"
        many.mkdir()
        for i in range(n):
            shutil.copy(sources[i % len(sources)], many / f"p{i:03d}.jpg")
        tracemalloc.start()
        try:
            result = imgclf.export(trained_model, "onnx", tmp_path / f"m{n}.onnx", check_photos=many)
            peaks[n] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert result.parity.photos == n and result.parity.passed
    assert peaks[96] - peaks[16] < 8 * 2**20, {n: f"{p / 2**20:.0f} MB" for n, p in peaks.items()}


# --- predict --explain DIR (point 9) ---------------------------------------------------------------------


def test_heatmaps_inside_the_predicted_folder_are_refused(trained_model, tmp_path):
    photos = copy_photos(tmp_path / "p", per_label=1, labels=["daisy"])
    before = tree(photos)
    code, _, err = cli("predict", trained_model, photos, "--explain", photos / "heat")
    one_line_error(code, err, "is inside", "being predicted")
    assert tree(photos) == before and not (photos / "heat").exists()


def test_a_pipe_named_like_a_heatmap_is_refused_not_opened(trained_model, tmp_path):
    photo = next((UNSEEN / "daisy").iterdir())
    heat = tmp_path / "heat"
    heat.mkdir()
    os.mkfifo(heat / f"{photo.stem}.heatmap.png")
    result = {}
    worker = threading.Thread(target=lambda: result.update(r=cli("predict", trained_model, photo, "--explain", heat)), daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "predict --explain blocked on a pipe"
    one_line_error(result["r"][0], result["r"][2], "pipe, device or socket")


# --- the model card (point 8) ----------------------------------------------------------------------------


def test_the_model_card_shows_a_hostile_command_as_one_literal_line(tmp_path, cache_dir):
    data = tmp_path / "x\n```\n<img src=x onerror=alert(1)>\n```"
    copy_photos(data, per_label=2, labels=["daisy", "roses"])
    out = tmp_path / "m"
    r = run_cli("train", str(data), "-o", str(out), "-q")
    assert r.returncode == 0, r.stderr
    card = (out / "README.md").read_text()
    block = card.split("- exact command:\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(block) == 3 and block[0] == block[2] and set(block[0]) == {"`"} and len(block[0]) >= 4, block
    assert "```" in block[1] and "\\n" in block[1]  # the name's fence and newlines, shown literally inside the block
    assert not any(line.lstrip().startswith("<img") for line in card.splitlines())
