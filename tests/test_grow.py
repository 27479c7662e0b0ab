"""Models that grow (``imgclf add``, ``imgclf forget``) and models that keep no photo (``train --private``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import imgclf
from imgclf.runtime.artifact import MODEL_FILE, NEIGHBORS_FILE, TABLE_FILE
from imgclf.training.grow import add, forget
from tests.conftest import LABELS, PHOTOS, UNSEEN, copy_photos, run_cli


@pytest.fixture(scope="module")
def halves(tmp_path_factory, cache_dir) -> dict[str, Path]:
    """A model of the first 9 photos of each bundled label; the other 5 of each apart; and the model ``train`` makes
    once those 5 are added to the first model's data folder (which remembers its photos' splits)."""
    root = tmp_path_factory.mktemp("grow")
    data = copy_photos(root / "data", per_label=9)
    second = copy_photos(root / "second", start=9)
    imgclf.train(data, root / "model-first", cache_dir=cache_dir)
    copy_photos(data, start=9)
    imgclf.train(data, root / "model-union", cache_dir=cache_dir)
    return {"root": root, "data": data, "second": second, "first_model": root / "model-first", "union_model": root / "model-union"}


def labels_of(model_dir: Path) -> list[str]:
    return [p.label for p in imgclf.load(model_dir).predict([UNSEEN], reject=False)]


def test_add_gives_the_model_training_on_the_union_gives(halves, cache_dir):
    grown = halves["root"] / "model-grown"
    hidden = halves["data"].rename(halves["root"] / "away")  # growing needs no photo the model was trained on
    try:
        result = add(halves["first_model"], halves["second"], grown, cache_dir)
    finally:
        hidden.rename(halves["data"])
    union = json.loads((halves["union_model"] / "metrics.json").read_text())
    assert labels_of(grown) == labels_of(halves["union_model"])
    assert sum(sum(c.values()) for c in result.counts.values()) == 70
    low, high = union["estimate"]["low"], union["estimate"]["high"]
    assert low <= result.metrics["estimate"]["accuracy"] <= high
    assert result.change == {**result.change, "action": "add", "added": 25, "already_in_model": 0, "photos": 70}
    for label, counts in result.counts.items():  # the new photos fill the held-out splits in proportion to all 14
        assert (counts["val"], counts["test"]) == (1, 1), label
    meta = json.loads((grown / "imgclf.json").read_text())
    assert [h["action"] for h in meta["history"]] == ["train", "add"]
    card = (grown / "README.md").read_text()
    assert "trained on 45 photos" in card and "added 25 photos" in card
    neighbors = imgclf.load(grown).predict([UNSEEN / "daisy"], neighbors=3)[0].neighbors
    assert len(neighbors) == 3 and all(n["label"] == "daisy" for n in neighbors)


def test_add_a_new_label_and_photos_it_already_has(halves, cache_dir, tmp_path):
    four = tmp_path / "four"
    copy_photos(four, labels=LABELS[:4])
    imgclf.train(four, tmp_path / "m4", cache_dir=cache_dir)
    tulips = copy_photos(tmp_path / "more", labels=["tulips"])
    shutil.copytree(PHOTOS / "daisy", tmp_path / "more" / "daisy")  # every daisy is in the model already
    result = add(tmp_path / "m4", tulips, None, cache_dir)  # replaces the model folder
    assert result.labels == LABELS and result.model_dir == tmp_path / "m4"
    assert result.change["new_labels"] == ["tulips"] and result.change["added"] == 14
    assert result.change["already_in_model"] == 14
    model = imgclf.load(tmp_path / "m4")
    assert model.labels == LABELS
    assert [p.label for p in model.predict([UNSEEN / "tulips"], reject=False)] == ["tulips", "tulips"]


def test_forget_a_label_gives_the_model_trained_without_it(halves, cache_dir, tmp_path):
    result = forget(halves["union_model"], labels=["tulips"], output=tmp_path / "no-tulips", cache_dir=cache_dir)
    assert result.labels == LABELS[:4] and result.change["removed"] == 14
    away = (halves["data"] / "tulips").rename(tmp_path / "tulips")  # the data folder the model was trained from, less tulips
    try:
        imgclf.train(halves["data"], tmp_path / "trained-without", cache_dir=cache_dir)
    finally:
        away.rename(halves["data"] / "tulips")
    assert labels_of(tmp_path / "no-tulips") == labels_of(tmp_path / "trained-without")
    index = json.loads((tmp_path / "no-tulips" / NEIGHBORS_FILE).read_text())["photos"]
    assert index and not [p for p, label in index if label == "tulips"]


def test_forget_photos_from_the_command_line(halves, tmp_path):
    index = json.loads((halves["union_model"] / NEIGHBORS_FILE).read_text())["photos"]
    daisies = [p for p, label in index if label == "daisy"][:3]
    listed = tmp_path / "forget.txt"
    listed.write_text("\n".join(daisies) + "\n")
    out = tmp_path / "fewer"
    done = run_cli("forget", str(halves["union_model"]), "--photos", str(listed), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("forgot 3 photos taken out; the model now learns from 67 photos")
    kept = [p for p, _ in json.loads((out / NEIGHBORS_FILE).read_text())["photos"]]
    assert not set(daisies) & set(kept)
    listed.write_text("daisy/not-a-photo-it-had.jpg\n")
    refused = run_cli("forget", str(out), "--photos", str(listed))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "holds no photo 'daisy/not-a-photo-it-had.jpg'" in refused.stderr
    refused = run_cli("forget", str(out), "--label", "orchids")
    assert refused.returncode == 2 and "has no label 'orchids'" in refused.stderr


def test_add_from_the_command_line(halves, tmp_path):
    out = tmp_path / "grown"
    done = run_cli("add", str(halves["first_model"]), str(halves["second"]), "-o", str(out), "-q")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("added 25 photos; the model now learns from 70 photos")
    assert "estimated accuracy on new photos" in done.stdout
    before = (out / "model.onnx").read_bytes()
    again = run_cli("add", str(out), str(halves["second"]))  # the same photos again: nothing changes
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert "every photo of it is in the model already" in again.stderr and (out / "model.onnx").read_bytes() == before


def test_a_damaged_table_is_refused_in_one_line(halves, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(halves["first_model"], copy)
    data = bytearray((copy / TABLE_FILE).read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\0" * 64
    (copy / TABLE_FILE).write_bytes(bytes(data))
    refused = run_cli("add", str(copy), str(halves["second"]))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert f"{TABLE_FILE} is damaged" in refused.stderr


def test_a_private_model_keeps_no_photo(cache_dir, tmp_path, trained_model):
    result = imgclf.train(PHOTOS, tmp_path / "private", cache_dir=cache_dir, private=True)
    folder = tmp_path / "private"
    assert not (folder / TABLE_FILE).exists() and not (folder / NEIGHBORS_FILE).exists()
    import onnx

    graph = onnx.load(str(folder / MODEL_FILE))
    from imgclf.backbones import resolve
    from imgclf.embeddings import EmbeddingCache, embed_files

    bb = resolve(cache_dir=cache_dir)
    photos = sorted(PHOTOS.rglob("*.jpg"))
    x = embed_files(photos, bb, EmbeddingCache(cache_dir, bb.id)).vectors
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    added = [onnx.numpy_helper.to_array(t) for t in graph.graph.initializer if t.name.startswith("imgclf_")]
    for weight in added:  # no weight of the graph holds a training photo's embedding, in any layout
        for rows in (weight.reshape(-1, weight.shape[-1]), weight.reshape(weight.shape[0], -1).T) if weight.ndim == 2 else ():
            if rows.shape[1] == u.shape[1]:
                cos = (rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)) @ u.T
                assert cos.max() < 0.99
    names = {p.name for p in photos}
    written = " ".join((folder / f).read_text(encoding="utf-8") for f in ("metrics.json", "report.html", "README.md"))
    assert not [n for n in names if n in written]
    assert result.metrics["estimate"]["accuracy"] > 0.8
    assert labels_of(folder) == labels_of(trained_model)  # the same head; only the "unknown" score lost the photos
    refused = run_cli("predict", str(folder), str(UNSEEN / "daisy"), "--neighbors", "2")
    assert refused.returncode == 2 and "trained with --private" in refused.stderr
    refused = run_cli("add", str(folder), str(PHOTOS))
    assert refused.returncode == 2 and "--private" in refused.stderr
    assert "It was trained with `--private`" in (folder / "README.md").read_text()
