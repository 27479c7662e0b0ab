"""Labels in a tree (``train --hierarchy``) and the learning curves' advice (``check``: "how many more photos?")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import imgclf
from imgclf.runtime.hierarchy import Tree
from tests.conftest import PHOTOS, UNSEEN, run_cli

TREE = {"daisy": "plants/composite/daisy", "dandelion": "plants/composite/dandelion",
        "sunflowers": "plants/composite/sunflowers", "roses": "plants/other/roses", "tulips": "plants/other/tulips"}


def as_tree(src: Path, dst: Path) -> Path:
    for flat, nested in TREE.items():
        shutil.copytree(src / flat, dst / nested)
    return dst


@pytest.fixture(scope="module")
def tree_model(tmp_path_factory, cache_dir) -> Path:
    root = tmp_path_factory.mktemp("tree")
    done = run_cli("train", str(as_tree(PHOTOS, root / "data")), "-o", str(root / "model"), "--hierarchy", "-q")
    assert done.returncode == 0, done.stderr
    as_tree(UNSEEN, root / "unseen")
    return root / "model"


def test_the_walk_stops_where_the_model_is_unsure():
    tree = Tree(("a/x/1", "a/x/2", "a/y/3", "b"))
    levels, depth = tree.walk(np.array([0.5, 0.4, 0.05, 0.05]), 0.9)
    assert [lv["label"] for lv in levels] == ["a", "a/x", "a/x/1"] and depth == 2  # x is 90 % sure, 1 only 50 %
    assert levels[1]["confidence"] == pytest.approx(0.9)
    levels, depth = tree.walk(np.array([0.1, 0.1, 0.1, 0.7]), 0.9)
    assert [lv["label"] for lv in levels] == ["b"] and depth == 1  # a leaf at the top; never sure, still answered
    _, p = tree.node_probabilities(np.array([[0.5, 0.4, 0.05, 0.05]]), 2)
    assert p[0].tolist() == pytest.approx([0.9, 0.05, 0.05])


def test_a_three_level_tree(tree_model):
    model = imgclf.load(tree_model)
    assert model.labels == sorted(TREE.values())
    answers = model.predict([tree_model.parent / "unseen"], reject=False)
    for p in answers:
        levels = [lv["label"] for lv in p.levels]
        assert levels[0] == "plants" and len(levels) == 3
        assert p.label in levels  # the deepest sure level, an ancestor of the best leaf or that leaf
        assert p.confidence == next(lv["confidence"] for lv in p.levels if lv["label"] == p.label)
        deeper = levels[levels.index(p.label) + 1:]
        if deeper:  # stopped above the leaf: the next level down was not sure enough
            assert p.levels[levels.index(p.label) + 1]["confidence"] < 0.9
    assert {p.label for p in answers} & {"plants/composite", "plants/other"}  # some answers stop at the middle level
    row = json.loads(run_cli("predict", str(tree_model), str(UNSEEN / "daisy"), "-f", "json").stdout)[0]
    assert [lv["label"] for lv in row["levels"]][:2] == ["plants", "plants/composite"]
    metrics = json.loads((tree_model / "metrics.json").read_text())["hierarchy"]
    assert [lv["nodes"] for lv in metrics["levels"]] == [1, 2, 5]
    acc = [lv["accuracy"] for lv in metrics["levels"]]
    assert acc == sorted(acc, reverse=True) and acc[0] == 1.0  # coarser levels are easier
    assert sum(lv["stopped"] for lv in metrics["levels"]) == pytest.approx(1.0, abs=1e-5)
    evaluated = imgclf.evaluate(tree_model, tree_model.parent / "unseen")
    assert [lv["nodes"] for lv in evaluated["hierarchy"]["levels"]] == [1, 2, 5]
    assert evaluated["n"] == 10
    assert "answers go down the label tree" in (tree_model / "README.md").read_text()
    assert 'id="levels"' in (tree_model / "report.html").read_text()


def test_without_the_flag_nested_folders_are_one_label_each(cache_dir, tmp_path):
    data = as_tree(PHOTOS, tmp_path / "data")
    result = imgclf.train(data, tmp_path / "flat", cache_dir=cache_dir)
    assert result.labels == ["plants"]  # today's meaning: the top folders are the labels


def test_photos_beside_label_folders_are_refused(tmp_path):
    data = as_tree(PHOTOS, tmp_path / "data")
    shutil.copy(next((PHOTOS / "daisy").iterdir()), data / "plants" / "composite" / "loose.jpg")
    refused = run_cli("train", str(data), "-o", str(tmp_path / "m"), "--hierarchy")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "plants/composite/ holds photos beside its label folders" in refused.stderr


def test_the_advice_on_more_photos(trained_model):
    from imgclf.heads.curves import SHARES, advise

    def photos(noise: float, seed: int = 0):
        rng = np.random.default_rng(seed)
        centres = rng.normal(size=(3, 256))
        y = np.repeat([0, 1, 2], 40)
        scale = np.array([0.2, noise, noise])[y][:, None]  # label 0 easy; 1 and 2 overlap more as the noise grows
        return centres[y] + scale * rng.normal(size=(120, 256)), y

    hard = advise(*photos(6.0), ["easy", "hard", "harder"])
    assert not hard.plateaued and hard.gain > 0.015 and hard.more == 40 and hard.photos == 40
    assert hard.curve[-1][1] > hard.curve[0][1] and [n for n, _ in hard.curve] == sorted(n for n, _ in hard.curve)
    assert len(hard.curve) == len(SHARES)
    assert list(hard.recall)[-1] == "easy" and hard.recall["easy"] == 1.0  # weakest first
    assert hard.sentence() == f"with 40 more photos of each label, accuracy would rise by about {round(100 * hard.gain)} points"
    easy = advise(*photos(0.3), ["easy", "hard", "harder"])
    assert easy.plateaued and easy.accuracy == 1.0 and easy.sentence().startswith("accuracy has about plateaued")
    assert advise(*photos(6.0)[:1], np.zeros(120, np.int64), ["one"]) is None  # one label: nothing to compare
    printed = run_cli("check", str(PHOTOS))
    assert "more photos?" in printed.stdout and "accuracy would rise by about" in " ".join(printed.stdout.split())
    kept = json.loads((trained_model / "metrics.json").read_text())["check"]["advice"]
    assert sorted(kept["recall"]) == sorted(TREE) and kept["photos"] == 14
    assert "## More photos?" in (trained_model / "README.md").read_text()
    assert 'id="more-photos"' in (trained_model / "report.html").read_text()


def test_a_tree_grows_and_shrinks(tree_model, tmp_path, cache_dir):
    from imgclf.training.grow import add, forget

    smaller = forget(tree_model, labels=["plants/other/tulips"], output=tmp_path / "no-tulips", cache_dir=cache_dir)
    assert "plants/other/tulips" not in smaller.labels and len(smaller.labels) == 4
    again = add(tmp_path / "no-tulips", as_tree(PHOTOS, tmp_path / "data"), tmp_path / "again", cache_dir)
    assert again.labels == sorted(TREE.values()) and again.change["new_labels"] == ["plants/other/tulips"]
    assert again.change["added"] == 14 and again.change["already_in_model"] == 56
    levels = imgclf.load(tmp_path / "again").predict([UNSEEN / "tulips"], reject=False)[0].levels
    assert [lv["label"] for lv in levels][:2] == ["plants", "plants/other"]
