"""Explanations: exact class activation maps, their place on the photo, and predict --explain."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import LABELS, PHOTOS, ROOT, UNSEEN, run_cli


@pytest.fixture(scope="module")
def model(trained_model):
    from imgclf.runtime.model import Model

    return Model.load(trained_model)


def test_the_map_is_exact_its_mean_plus_bias_is_the_logit(model, trained_model):
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(trained_model / "model.onnx")).graph
    bias = next(numpy_helper.to_array(t) for t in graph.initializer if t.name == "imgclf_head_bias")
    pre = model.preprocessing
    for photo in sorted(UNSEEN.rglob("*.jpg"))[:4]:
        batch = pre.batch([pre.pixels(Image.open(photo).convert("RGB"))])
        probs, cam = model._session.run(["probabilities", "cam"], {"input": batch})
        logits = cam[0].mean(axis=(1, 2)) + bias
        log_probs = np.log(probs[0])
        # softmax is unchanged by a constant: compare logit differences with log-probability differences
        np.testing.assert_allclose(logits - logits[0], log_probs - log_probs[0], atol=1e-4)
        assert cam.shape[:2] == (1, len(LABELS)) and cam.shape[2] == cam.shape[3] == 7


def test_explain_returns_the_map_and_places_it_on_the_photo(model):
    photo = Image.open(sorted((UNSEEN / "daisy").glob("*.jpg"))[0]).convert("RGB")
    pred, e = model.explain(photo, name="daisy.jpg")
    assert pred.path == "daisy.jpg" and e.label == pred.top_k[0]["label"]
    assert e.map.shape == (7, 7) and e.map.dtype == np.float32
    left, top, right, bottom = e.box  # the centre crop the model saw, in the photo's pixels
    assert 0 <= left < right <= photo.width and 0 <= top < bottom <= photo.height
    assert right - left == pytest.approx(bottom - top, abs=1) == pytest.approx(min(photo.size) * 0.875, abs=2)
    assert left <= e.peak[0] <= right and top <= e.peak[1] <= bottom
    other = next(lab for lab in LABELS if lab != e.label)
    assert model.explain(photo, label=other)[1].label == other
    overlay = e.overlay(photo)
    from imgclf.runtime.explanation import OVERLAY_SIDE

    assert overlay.size == photo.size if max(photo.size) <= OVERLAY_SIDE else max(overlay.size) == OVERLAY_SIDE


def test_the_peak_falls_on_a_pasted_photo_more_often_than_the_centre(model):
    """Composites (the benchmark's generator): an unseen photo at a third of the frame on grey or on
    clutter; the peak of its label's map lands inside it far more often than the image centre does."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import explain as bench

    photos = [(p, p.parent.name) for p in sorted(UNSEEN.rglob("*.jpg"))]
    cases = bench.cases(model, photos, seed=0) + bench.cases(model, photos, seed=1)
    result = bench.measure(model, cases)
    hits = np.mean([rate for rate, _, _, _ in result.values()])
    centre = np.mean([c for _, c, _, _ in result.values()])
    off_centre = np.mean([off for _, _, off, _ in result.values()])
    assert hits >= 0.6 and hits >= centre + 0.25 and off_centre >= 0.5, result


def test_the_peak_is_read_between_cells_where_the_heat_is_shared():
    from imgclf.runtime.explanation import explain_map, peak_cell

    one = np.zeros((7, 7), np.float32)
    one[2, 4] = 1.0
    assert peak_cell(one) == (2.0, 4.0)
    shared = one.copy()
    shared[2, 5] = 1.0  # an object across two cells: its peak lies on their border
    assert peak_cell(shared) == (2.0, 4.5)
    far = one.copy()
    far[6, 0] = 0.9  # heat beyond the reach of the hottest cell does not pull it
    assert peak_cell(far) == (2.0, 4.0)
    e = explain_map("daisy", shared, (0, 0, 700, 700))
    assert e.peak == (500, 250)


def test_predict_explain_writes_heatmaps_and_never_overwrites_a_file(trained_model, tmp_path):
    out = tmp_path / "heatmaps"
    out.mkdir()
    daisy = sorted((UNSEEN / "daisy").glob("*.jpg"))
    foreign = out / f"{daisy[0].stem}.heatmap.png"
    foreign.write_bytes(b"the user's own file")
    r = run_cli("predict", str(trained_model), str(UNSEEN / "daisy"), "--explain", str(out), "-f", "json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert foreign.read_bytes() == b"the user's own file"
    assert [Path(row["explanation"]["heatmap"]).name for row in rows] == [f"{daisy[0].stem}-2.heatmap.png", f"{daisy[1].stem}.heatmap.png"]
    for row, photo in zip(rows, daisy):
        e = row["explanation"]
        assert e["label"] == row["top_k"][0]["label"]
        with Image.open(e["heatmap"]) as img:
            assert img.format == "PNG" and img.info["Software"] == "imgclf predict --explain"
        w, h = Image.open(photo).size
        assert 0 <= e["peak"][0] < w and 0 <= e["peak"][1] < h
    again = run_cli("predict", str(trained_model), str(UNSEEN / "daisy"), "--explain", str(out), "-f", "csv",
                    "--explain-label", "roses")
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert lines[0].endswith("explanation_label,explanation_heatmap,explanation_peak_x,explanation_peak_y")
    assert all(line.split(",")[-4] == "roses" for line in lines[1:])
    assert sorted(p.name for p in out.iterdir()) == sorted([foreign.name, f"{daisy[0].stem}-2.heatmap.png", f"{daisy[1].stem}.heatmap.png"])


@pytest.mark.parametrize("extra, message", [
    (["--explain-label", "orchids"], "is not one of the model's labels"),
    (["--output", "x.jsonl"], "--explain works with the local engine"),
    (["--tta"], "leave out --tta"),
])
def test_explain_mistakes_are_one_line(trained_model, tmp_path, extra, message):
    r = run_cli("predict", str(trained_model), str(UNSEEN), "--explain", str(tmp_path / "h"), *extra, cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_neighbors_are_the_most_similar_training_photos(trained_model, tmp_path):
    index = json.loads((trained_model / "neighbors.json").read_text())["photos"]
    rel, label = index[0]
    photo = PHOTOS / rel
    r = run_cli("predict", str(trained_model), str(photo), str(UNSEEN / "tulips"), "--neighbors", "3", "-f", "json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    first = rows[0]["neighbors"]
    assert first[0] == {"path": rel, "label": label, "similarity": pytest.approx(1.0, abs=1e-4)}  # a training photo finds itself
    for row in rows:
        sims = [n["similarity"] for n in row["neighbors"]]
        assert len(sims) == 3 and sims == sorted(sims, reverse=True) and all(n["label"] in LABELS for n in row["neighbors"])
        assert all([n["path"], n["label"]] in index for n in row["neighbors"])
    csv_out = run_cli("predict", str(trained_model), str(photo), "--neighbors", "2", "-f", "csv").stdout.splitlines()
    assert csv_out[0].endswith("neighbor2_path,neighbor2_label,neighbor2_similarity") and f",{rel},{label}," in csv_out[1]
    # 10 MB per 1,000 photos would not be compact: the index is the paths and labels only
    assert (trained_model / "neighbors.json").stat().st_size < 100 * len(index)


def test_neighbors_need_the_index(trained_model, tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(trained_model, copy)
    (copy / "neighbors.json").unlink()
    r = run_cli("predict", str(copy), str(UNSEEN), "--neighbors", "2")
    assert r.returncode == 2 and "not a complete imgclf model folder (neighbors.json missing)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert run_cli("predict", str(copy), str(UNSEEN)).returncode == 0  # the rest still works


def test_graphs_without_maps_fall_back_to_occlusion_and_say_so(trained_model):
    """A model whose graph has no ``cam`` (fine-tuned, quantised) explains by occlusion sensitivity: each cell is
    the label's probability lost when that cell of the input is greyed out."""
    from imgclf.runtime.model import Model

    model = Model.load(trained_model)
    model.explanation_method, model.explainable = "occlusion", False  # as a graph without maps is read
    photo = Image.open(sorted((UNSEEN / "sunflowers").glob("*.jpg"))[0]).convert("RGB")
    pred, e = model.explain(photo)
    assert e.kind == "occlusion" and e.to_dict()["method"] == "occlusion" and e.map.shape == (7, 7)
    pre = model.preprocessing
    batch = pre.batch([pre.pixels(photo)])
    k = model.labels.index(e.label)
    row, col = 3, 5
    edges = np.linspace(0, pre.input_size, 8).round().astype(int)
    masked = batch.copy()
    masked[:, :, edges[row]:edges[row + 1], edges[col]:edges[col + 1]] = 0.0
    (probs,) = model._session.run(["probabilities"], {"input": masked})
    assert e.map[row, col] == pytest.approx(pred.top_k[0]["confidence"] - probs[0, k], abs=1e-4)
    left, top, right, bottom = e.box
    assert left <= e.peak[0] <= right and top <= e.peak[1] <= bottom
