"""Bad input never crashes a run and never loses work (issue 3)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

import imgclf
from imgclf.errors import ImageError
from imgclf.runtime.images import load_image
from tests.conftest import LABELS, PHOTOS, copy_photos, run_cli
from tests.nasty import make_accepted, make_ignored, make_rejected, photo


@pytest.fixture(scope="module")
def nasty_data(tmp_path_factory) -> tuple[Path, list[str], dict[str, str]]:
    """Bundled photos mixed with unusual files (daisy), hostile files (roses) and OS junk (tulips)."""
    root = copy_photos(tmp_path_factory.mktemp("nasty") / "data", per_label=10)
    accepted = make_accepted(root / "daisy" / "odd formats")
    rejected = make_rejected(root / "roses")
    make_ignored(root / "tulips")
    return root, accepted, rejected


def test_unusual_files_decode_to_rgb(nasty_data):
    root, accepted, _ = nasty_data
    for name in accepted:
        img = load_image(root / "daisy" / "odd formats" / name)
        assert img.mode == "RGB" and min(img.size) >= 16, name


def test_conversions_are_correct(tmp_path):
    make_accepted(tmp_path)
    base = photo("daisy", 0)
    upright = load_image(tmp_path / "rotated_exif.jpg")
    assert upright.size == base.size  # EXIF orientation applied
    assert np.abs(np.asarray(upright, float) - np.asarray(base, float)).mean() < 6
    over_white = np.asarray(load_image(tmp_path / "transparent.png"), float)
    expected = (np.asarray(photo("daisy", 10), float) + 255) / 2  # 50 % alpha on white
    assert np.abs(over_white - expected).mean() < 2
    deep = np.asarray(load_image(tmp_path / "deep16.png"))
    grey = np.asarray(photo("daisy", 12).convert("L"))
    assert np.abs(deep[..., 0].astype(int) - grey).max() <= 1 and (deep[..., 0] == deep[..., 2]).all()
    cmyk = np.asarray(load_image(tmp_path / "print.jpg"), float)
    assert np.abs(cmyk - np.asarray(photo("daisy", 7), float)).mean() < 12
    assert load_image(tmp_path / "animated.gif").size == photo("daisy", 3).size


def test_hostile_files_are_rejected_with_reasons(nasty_data):
    root, _, rejected = nasty_data
    for name, reason in rejected.items():
        with pytest.raises(ImageError, match=reason):
            load_image(root / "roses" / name)


def test_train_on_nasty_folder_reports_exact_skip_list(nasty_data, tmp_path, cache_dir):
    root, accepted, rejected = nasty_data
    out = tmp_path / "model"
    r = run_cli("train", str(root), "-o", str(out))
    assert r.returncode == 0, r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    skipped = {Path(s["path"]).name: s["reason"] for s in metrics["skipped"]}
    assert set(skipped) == set(rejected), "exactly the hostile files, no junk, no good file"
    for name, reason in rejected.items():
        assert reason in skipped[name]
        assert f"{name}: " in r.stdout  # in the summary too
    counts = metrics["counts"]
    assert sum(counts["daisy"].values()) == 10 + len(accepted)
    assert sum(counts["roses"].values()) == 10
    assert sum(counts["tulips"].values()) == 10  # junk and the hidden photo ignored

    p = run_cli("predict", str(out), str(root / "roses"), str(root / "daisy" / "odd formats"), "-f", "json")
    assert p.returncode == 0, p.stderr
    preds = {Path(x["path"]).name: x for x in json.loads(p.stdout)}
    for name, reason in rejected.items():
        assert preds[name]["label"] is None and reason in preds[name]["error"]
    for name in accepted:
        assert preds[name]["label"] in LABELS and preds[name]["error"] is None
    assert sum(1 for x in preds.values() if x["label"]) == 10 + len(accepted)
    t = run_cli("predict", str(out), str(root / "roses"), "-f", "csv")
    assert t.returncode == 0 and "empty file" in t.stdout


def test_predict_exits_2_only_when_nothing_was_readable(trained_model, nasty_data):
    root, _, rejected = nasty_data
    bad = [str(root / "roses" / n) for n in rejected]
    r = run_cli("predict", str(trained_model), *bad, "-f", "json")
    assert r.returncode == 2
    assert len(json.loads(r.stdout)) == len(bad)
    assert r.stderr.strip().splitlines()[-1].startswith("error: none of the")


def test_duplicates_conflicts_and_leakage(tmp_path, cache_dir):
    root = tmp_path / "data"
    copy_photos(root / "train", per_label=6, labels=LABELS[:3])
    copy_photos(root / "test", per_label=2, labels=LABELS[:3], start=6)
    daisy0 = sorted((PHOTOS / "daisy").iterdir())[0]
    shutil.copy(daisy0, root / "train" / "roses" / "not_a_rose.jpg")  # conflict: under daisy and roses
    leak = sorted((PHOTOS / "roses").iterdir())[0]
    shutil.copy(leak, root / "test" / "roses" / "leaked.jpg")  # also in train
    dup = sorted((PHOTOS / "dandelion").iterdir())[1]
    shutil.copy(dup, root / "train" / "dandelion" / "again.jpg")  # twice in one class
    r = run_cli("train", str(root), "-o", str(tmp_path / "m"))
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "m" / "metrics.json").read_text())
    conflicts = sorted(Path(s["path"]).name for s in m["skipped"] if s["reason"].startswith("conflict"))
    assert conflicts == sorted([daisy0.name, "not_a_rose.jpg"])
    assert [Path(s["path"]).name for s in m["leakage"]] == ["leaked.jpg"]
    assert [Path(s["path"]).name for s in m["duplicates"]] == ["again.jpg"]
    train_and_val = {lab: c["train"] + c["val"] for lab, c in m["counts"].items()}
    assert train_and_val == {"daisy": 5, "dandelion": 6, "roses": 6}  # val is carved from train/
    assert {lab: c["test"] for lab, c in m["counts"].items()} == {"daisy": 2, "dandelion": 2, "roses": 2}
    assert "leakage" in r.stdout and "conflict" in r.stdout and "counted once" in r.stdout


def test_imbalance_is_reported(tmp_path, cache_dir):
    root = copy_photos(tmp_path / "d", per_label=14, labels=LABELS[:1])
    copy_photos(root, per_label=3, labels=LABELS[1:2])
    result = imgclf.train(root, tmp_path / "m", test_fraction=0, val_fraction=0, cache_dir=cache_dir)
    assert any("imbalance" in w for w in result.warnings)


def test_too_few_readable_photos_names_the_label(tmp_path, cache_dir):
    root = copy_photos(tmp_path / "d", per_label=5, labels=LABELS[:2])
    (root / "tulips").mkdir()
    shutil.copy(next((PHOTOS / "tulips").iterdir()), root / "tulips")
    (root / "tulips" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    r = run_cli("train", str(root), "-o", str(tmp_path / "m"))
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: label 'tulips' has 1 usable photo (1 corrupt or truncated image); "
                                "at least 2 are needed to train and validate")


def test_failed_run_keeps_the_previous_model(tmp_path, cache_dir, monkeypatch):
    data = copy_photos(tmp_path / "d", per_label=5)
    out = tmp_path / "model"
    imgclf.train(data, out, cache_dir=cache_dir)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    import imgclf.training.write as training

    def crash(*a, **k):
        raise RuntimeError("disk full while writing the card")

    monkeypatch.setattr(training, "render_card", crash)
    with pytest.raises(RuntimeError):
        imgclf.train(data, out, seed=5, cache_dir=cache_dir)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folders left

    r = run_cli("train", str(tmp_path / "nowhere"), "-o", str(out))
    assert r.returncode == 2 and {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_refuses_to_replace_a_folder_that_is_not_a_model(tmp_path, cache_dir):
    data = copy_photos(tmp_path / "d", per_label=3)
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("...")
    r = run_cli("train", str(data), "-o", str(precious))
    assert r.returncode == 2 and "refusing" in r.stderr
    assert (precious / "chapter1.tex").exists()


def test_damaged_cache_entry_is_recomputed(tmp_path, cache_dir, trained_model):
    """The photos are the session model's (trained_model filled the cache); one entry is damaged."""
    data = copy_photos(tmp_path / "d", per_label=3)
    from imgclf.backbones import resolve
    from imgclf.embeddings.cache import EmbeddingCache
    from imgclf.files.digests import content_hash

    bb = resolve(cache_dir=cache_dir)
    victim = sorted((data / "daisy").iterdir())[0]
    entry = EmbeddingCache(cache_dir, bb.id)._path(content_hash(victim.read_bytes()))
    assert entry.exists()
    entry.write_bytes(entry.read_bytes()[:100])
    r = run_cli("train", str(data), "-o", str(tmp_path / "m"))
    assert r.returncode == 0 and "1 computed, 14 from cache" in r.stdout


def test_ctrl_c_keeps_embeddings_and_the_next_run_resumes(tmp_path, cache_dir):
    """Interrupt a real training run with SIGINT mid-embedding, then resume it (with an empty cache of its own)."""
    data = tmp_path / "d"
    n = 0
    for lab in LABELS:
        (data / lab).mkdir(parents=True)
        for i, src in enumerate(sorted((PHOTOS / lab).iterdir())):
            img = Image.open(src).convert("RGB")
            for k, variant in enumerate((ImageOps.mirror(img), ImageOps.flip(img), img.rotate(90, expand=True))):
                variant.save(data / lab / f"{i}_{k}.png")  # new content: nothing cached yet
                n += 1
    cache = tmp_path / "cache"
    entries = cache / "embeddings"
    cmd = [sys.executable, "-m", "imgclf.cli", "train", str(data), "-o", str(tmp_path / "m"), "--cache-dir", str(cache)]
    # A shell that starts jobs in the background makes them ignore SIGINT; a user's terminal does not.
    restore_ctrl_c = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=restore_ctrl_c)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(entries.rglob("*.emb"))) < 10:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    kept = len(list(entries.rglob("*.emb")))
    assert 10 <= kept < n, f"{kept} of {n} embeddings cached at the interrupt"
    assert not (tmp_path / "m").exists()
    r = subprocess.run(cmd + ["-q"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"{n - kept} computed, {kept} from cache" in r.stdout
