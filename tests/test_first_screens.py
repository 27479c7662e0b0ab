"""What a newcomer sees is true and plain (issue 25): outputs that fit 80 columns without cutting a word, "unknown"
said on the similarity's scale, splits within each label that never move a photo, the estimate from the most photos,
calibrated confidences, and one clear line where a newcomer would be stuck."""

from __future__ import annotations

import json
import re
import shutil
import socket
import warnings

import numpy as np
import pytest

from imgclf.data import assign_splits, scan_labelled, split_sizes
from tests.conftest import EXAMPLE, PHOTOS, UNSEEN, copy_photos, run_cli

NOT_FLOWERS = EXAMPLE.parent / "not-flowers"


def narrow(*args: str, cwd=None):
    r = run_cli(*args, cwd=cwd, env={"COLUMNS": "80"})
    return r


def assert_fits_80_columns(text: str) -> None:
    """Every line within 80 columns, except one that is a single unbreakable word (a long path): then nothing was
    cut in two by us, and a terminal of 80 columns breaks no word either."""
    for line in text.splitlines():
        if len(line) > 80:
            assert " " not in line.strip(), f"{len(line)} columns: {line!r}"


def test_every_command_fits_80_columns_without_cutting_a_word(trained_model, tmp_path, cache_dir):
    outputs = [
        narrow("train", str(PHOTOS), "-o", str(tmp_path / "m")),
        narrow("predict", str(trained_model), str(UNSEEN), str(NOT_FLOWERS), "--neighbors", "3"),
        narrow("evaluate", str(trained_model), str(UNSEEN), "--ood", str(NOT_FLOWERS)),
        narrow("check", str(PHOTOS)),
    ]
    for r in outputs:
        assert r.returncode == 0, r.stderr
        assert_fits_80_columns(r.stdout)
        assert_fits_80_columns(r.stderr)
    train = outputs[0].stdout
    assert "5-fold\n  cross-validation over 70 photos" in train or "5-fold cross-validation over 70 photos" in train


def test_unknown_is_said_on_the_similaritys_scale_without_a_percentage(trained_model):
    r = narrow("predict", str(trained_model), str(NOT_FLOWERS / "chelsea.jpg"))
    assert r.returncode == 0, r.stderr
    row = r.stdout.splitlines()[2]
    assert row.split()[1:3] == ["unknown", "–"], row
    threshold = json.loads((trained_model / "imgclf.json").read_text())["rejection"]["threshold"]
    text = " ".join(r.stdout.split())
    assert re.search(rf"unlike every training photo \(similarity 0\.\d\d, below {threshold:.2f}\); closest: \w+", text), text
    assert "%" not in r.stdout.split("conf.")[1]


def test_the_table_keeps_the_label_folder_and_the_file_names_ends(trained_model, tmp_path):
    folder = tmp_path / "a-rather-long-folder-name-for-photos" / "daisy"
    folder.mkdir(parents=True)
    src = next((UNSEEN / "daisy").iterdir())
    shutil.copy(src, folder / ("photo-taken-in-the-garden-on-a-sunny-morning-" + src.name))
    r = narrow("predict", str(trained_model), str(folder / ("photo-taken-in-the-garden-on-a-sunny-morning-" + src.name)))
    shown = r.stdout.splitlines()[2].split()[0]
    assert shown.startswith("…/daisy/photo-") and shown.endswith(src.name[-8:]) and len(shown) <= 32, shown


def test_explain_and_neighbors_show_in_the_table(trained_model, tmp_path):
    r = narrow("predict", str(trained_model), str(UNSEEN / "daisy"), "--explain", str(tmp_path / "heat"), "--neighbors", "2")
    assert r.returncode == 0, r.stderr
    assert f"heatmaps of where the model looked: 2 written to {tmp_path / 'heat'}" in r.stderr
    assert r.stdout.count("nearest training photos:") == 2


# --- splits within each label, never moving a photo ------------------------------------------------------


def test_every_label_of_the_bundled_example_is_in_validation_and_test(tmp_path):
    counts = scan_labelled(PHOTOS, cache_root=tmp_path).counts()
    assert all(c == {"train": 12, "val": 1, "test": 1} for c in counts.values()), counts


def test_adding_photos_never_moves_one_between_splits(tmp_path):
    data = copy_photos(tmp_path / "data", per_label=8)
    cache = tmp_path / "cache"
    before = {p.path.name: p.split for p in scan_labelled(data, 0.1, 0.2, cache_root=cache).photos}
    copy_photos(data, per_label=6, start=8)  # 6 more photos a label
    after = scan_labelled(data, 0.1, 0.2, cache_root=cache)
    assert all(before[p.path.name] == p.split for p in after.photos if p.path.name in before)
    for label, c in after.counts().items():  # 14 photos: 1 validation (10 %), 3 test (20 %), rounded half up
        assert (c["val"], c["test"]) == split_sizes(14, 0.1, 0.2) == (1, 3), (label, c)
    fresh = scan_labelled(data, 0.1, 0.2, cache_root=tmp_path / "other-cache")  # without memory: in proportion as well
    assert all((c["val"], c["test"]) == (1, 3) for c in fresh.counts().values())


def test_split_sizes_keep_a_training_photo_and_round_half_up():
    assert split_sizes(1, 0.1, 0.1) == (0, 0) and split_sizes(2, 0.4, 0.4) == (0, 1) and split_sizes(5, 0.1, 0.1) == (1, 1)
    assert assign_splits(["a", "b"], 0.5, 0.5).count("train") == 1
    assert assign_splits(["a", "b", "c"], 0.0, 0.34, {"a": "train", "b": "train"}) == ["train", "train", "test"]


# --- the estimate and the confidences -------------------------------------------------------------------


def test_the_estimate_uses_every_photo_unless_a_test_split_is_given(trained_model, tmp_path, cache_dir):
    metrics = json.loads((trained_model / "metrics.json").read_text())
    assert metrics["estimate"]["n"] == 70 and metrics["estimate"]["method"].endswith("cross-validation over 70 photos")
    given = tmp_path / "given"
    copy_photos(given / "train", per_label=10)
    copy_photos(given / "test", per_label=4, start=10)
    r = run_cli("train", str(given), "-o", str(tmp_path / "m"), "-q")
    assert r.returncode == 0, r.stderr
    est = json.loads((tmp_path / "m" / "metrics.json").read_text())["estimate"]
    assert est["n"] == 20 and est["method"] == "the test split you gave (20 photos)"


def test_temperature_scaling_recovers_a_known_temperature():
    from imgclf.heads.linear import fit_temperature

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 5))
    true_t = 2.0  # labels drawn from softmax(logits / 2): the logits are twice too sharp
    p = np.exp(logits / true_t)
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(5, p=row) for row in p])
    assert fit_temperature(logits, y) == pytest.approx(true_t, rel=0.08)


def test_the_shipped_model_carries_its_calibration(trained_model):
    """model.onnx answers the tempered head's probabilities; the report and card measure calibration on every photo."""
    metrics = json.loads((trained_model / "metrics.json").read_text())
    assert metrics["head"]["temperature"] != 1.0 and metrics["head"]["calibrated_on"].endswith("of 70 photos")
    assert len(metrics["out_of_fold"]["photos"]) == 70
    page = (trained_model / "report.html").read_text()
    assert "how far confidence is from accuracy (ECE; 0 is perfect) over 70 photos" in page
    assert "answer from a head that never saw it (5-fold cross-validation over 70 photos)" in page
    first_tile = re.search(r'class="tile[^"]*" data-key="([^"]+)"', page).group(1)
    assert first_tile == "accuracy on new photos"
    card = (trained_model / "README.md").read_text()
    assert "Confidences are calibrated (temperature" in card


# --- dead ends --------------------------------------------------------------------------------------------


def test_a_folder_one_level_too_high_names_the_folder_meant(tmp_path):
    inner = tmp_path / "wrap" / "hymenoptera"
    copy_photos(inner / "train", per_label=3, labels=["daisy", "roses"])
    copy_photos(inner / "val", per_label=1, labels=["daisy", "roses"], start=3)
    r = run_cli("train", str(tmp_path / "wrap"), "-o", str(tmp_path / "m"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "one-label model called 'hymenoptera'" in r.stderr and f"Did you mean {inner}?" in r.stderr


def test_a_busy_port_is_one_line(trained_model):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_cli("serve", str(trained_model), "--port", str(port))
    assert r.returncode == 2 and r.stderr.strip() == (
        f"error: port {port} on 127.0.0.1 is in use: choose another with --port, or stop what is using it")
    assert "serving" not in r.stderr


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_what_embed_writes_train_reads(suffix, trained_model, tmp_path, cache_dir):
    rows = tmp_path / f"emb{suffix}"
    assert run_cli("embed", str(PHOTOS), "-o", str(rows), "-q").returncode == 0
    r = run_cli("train", str(PHOTOS), "-o", str(tmp_path / "m"), "--embeddings", str(rows), "-q")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m" / "model.onnx").read_bytes() == (trained_model / "model.onnx").read_bytes()


def test_messages_say_the_right_thing(trained_model, tmp_path, cache_dir):
    r = run_cli("predict", str(UNSEEN), str(trained_model))
    assert r.returncode == 2 and "the model folder comes first" in r.stderr
    text = tmp_path / "notes.txt"
    text.write_text("not a photo")
    r = run_cli("predict", str(trained_model), str(text))
    assert r.returncode == 2 and r.stdout == "" and r.stderr == f"error: cannot read {text}: not an image (unrecognised format)\n"
    one = tmp_path / "one"
    copy_photos(one, per_label=5, labels=["daisy"])
    copy_photos(one, per_label=1, labels=["roses"])
    r = run_cli("train", str(one), "-o", str(tmp_path / "m"))
    assert r.returncode == 2 and "label 'roses' has 1 usable photo (its folder holds only 1)" in r.stderr
    card = (trained_model / "README.md").read_text()
    assert "flower model" not in card and "another flower" not in card  # the card speaks of any labels, not of flowers


def test_a_warning_from_imgclfs_own_code_fails_the_suite():
    with pytest.raises(RuntimeWarning):
        warnings.warn_explicit("overflow", RuntimeWarning, "images.py", 1, module="imgclf.runtime.images")


def test_the_embedding_line_counts_what_was_computed(tmp_path, cache_dir):
    data = copy_photos(tmp_path / "d", per_label=3, labels=["daisy", "roses"])
    (data / "daisy" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    first = run_cli("train", str(data), "-o", str(tmp_path / "m"), "--augment", "1", "--cache-dir", str(tmp_path / "c"))
    assert first.returncode == 0, first.stderr
    line = next(x for x in first.stdout.splitlines() if x.startswith("embeddings:"))
    assert line == "embeddings: 6 computed, 0 from cache, 6 augmented views computed", line  # the unreadable one is not
    again = run_cli("train", str(data), "-o", str(tmp_path / "m"), "--augment", "1", "--cache-dir", str(tmp_path / "c"))
    assert "embeddings: 0 computed, 6 from cache\n" in again.stdout
