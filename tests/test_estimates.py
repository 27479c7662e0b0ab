"""Honest numbers (issue 15): accuracy with its uncertainty, a calibrated "unknown", the rule in evaluate, one-label models."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import imgclf
from imgclf.heads.estimate import accuracy_estimate, cross_validated_accuracy, selective, wilson
from tests.conftest import EXAMPLE, PHOTOS, UNSEEN, copy_photos, run_cli

NOT_FLOWERS = EXAMPLE.parent / "not-flowers"


def test_wilson_interval_and_estimate():
    lo, hi = wilson(0.8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert wilson(1.0, 4)[1] == 1.0 and wilson(0.0, 4)[0] == 0.0
    est = accuracy_estimate(61, 70, "5-fold cross-validation over 70 photos")
    assert est == {"accuracy": round(61 / 70, 6), "low": pytest.approx(0.77, abs=0.01), "high": pytest.approx(0.935, abs=0.01),
                   "method": "5-fold cross-validation over 70 photos", "n": 70}


def test_small_held_out_splits_are_replaced_by_cross_validation(trained_model):
    metrics = json.loads((trained_model / "metrics.json").read_text())
    est = metrics["estimate"]
    assert metrics["test"]["n"] < 30 and est["method"] == "5-fold cross-validation over 70 photos" and est["n"] == 70
    assert est["low"] < est["accuracy"] < est["high"]
    for split in ("val", "test"):
        lo, hi = metrics[split]["accuracy_interval"]
        assert lo <= metrics[split]["accuracy"] <= hi and hi - lo > 0.3  # a handful of photos: a wide interval


def test_cross_validated_accuracy_is_out_of_fold():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 16)).astype(np.float32)
    y = np.repeat([0, 1, 2], 20)
    est = cross_validated_accuracy(x, y, 3, C=100.0, seed=0)  # labels carry no signal: chance, not the fit's 100 %
    assert est["n"] == 60 and est["accuracy"] < 0.6
    x[np.arange(60), y] += 6  # now they do
    assert cross_validated_accuracy(x, y, 3, C=100.0, seed=0)["accuracy"] > 0.9


def test_train_prints_the_estimate_first(tmp_path, cache_dir):
    r = run_cli("train", str(PHOTOS), "-o", str(tmp_path / "m"), env={"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if "accuracy" in line)
    assert lines[first].startswith("estimated accuracy on new photos: 0.")
    assert "(95 % interval 0." in lines[first] and "5-fold cross-validation over 70 photos" in lines[first]
    assert "validation accuracy: " in r.stdout and "photos; 95 % interval" in r.stdout
    rule = json.loads((tmp_path / "m" / "metrics.json").read_text())["rejection"]
    assert f"calibrated on {rule['n']} held-out scores" in r.stdout


def test_rule_records_its_calibration(trained_model):
    rule = json.loads((trained_model / "imgclf.json").read_text())["rejection"]
    metrics = json.loads((trained_model / "metrics.json").read_text())
    n_pool = sum(c["train"] + c["val"] for c in metrics["counts"].values())
    assert rule["n"] == n_pool and "out-of-fold" in rule["calibrated_on"]
    k = int(np.floor(0.05 * (rule["n"] + 1)))
    assert rule["expected_acceptance"] == round((rule["n"] + 1 - k) / (rule["n"] + 1), 6)
    lo, hi = rule["acceptance_interval"]
    assert lo < rule["expected_acceptance"] < hi


def test_evaluate_applies_the_rule(trained_model, tmp_path):
    out = tmp_path / "eval.json"
    r = run_cli("evaluate", str(trained_model), str(UNSEEN), "--json", str(out))
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    photos = res["photos"]
    answered = [p for p in photos if not p["rejected"]]
    assert res["coverage"] == round(len(answered) / len(photos), 6)
    assert res["selective_accuracy"] == round(sum(p["label"] == p["predicted"] for p in answered) / len(answered), 6)
    assert res["accuracy_with_unknown"] == round(sum(p["label"] == p["predicted"] for p in answered) / len(photos), 6)
    assert res["accuracy_with_unknown"] <= res["accuracy"]
    for key in ("accuracy", "coverage", "selective_accuracy", "accuracy_with_unknown"):
        lo, hi = res[f"{key}_interval"]
        assert lo <= res[key] <= hi
    assert "with the 'unknown' rule: " in r.stdout and "(coverage)" in r.stdout and "95 % interval" in r.stdout


def test_selective_counts_unknown_photos_rejected_as_right():
    out = selective(["a", "a", "unknown", "b"], ["a", "b", "a", "b"], [False, False, True, True])
    assert out["coverage"] == 0.5 and out["selective_accuracy"] == 0.5 and out["accuracy_with_unknown"] == 0.5


def test_model_card_matches_the_model(trained_model):
    card = (trained_model / "README.md").read_text()
    assert "always answers one of its labels" not in card and 'no "none of these" answer' not in card
    assert "come back as `unknown`" in card and "out-of-fold scores" in card
    assert "**estimated accuracy on new photos: 0." in card and "5-fold cross-validation over 70 photos" in card
    assert "(coverage)" in card


@pytest.fixture(scope="module")
def verifier(tmp_path_factory, cache_dir):
    root = copy_photos(tmp_path_factory.mktemp("one") / "d", labels=["roses"])
    out = root.parent / "roses-model"
    r = run_cli("train", str(root), "-o", str(out))
    assert r.returncode == 0, r.stderr
    return out, r.stdout


def test_one_label_trains_a_verifier(verifier):
    model_dir, stdout = verifier
    assert "one label: a verifier that answers roses or unknown" in stdout
    assert "estimated share of new roses photos recognised: " in stdout and "validation accuracy" not in stdout
    model = imgclf.load(model_dir)
    assert model.labels == ["roses"]
    preds = model.predict([NOT_FLOWERS])
    scored = [p for p in preds if not p.error]
    assert {p.label for p in scored} <= {"roses", "unknown"}
    assert sum(p.label == "unknown" for p in scored) >= len(scored) - 2
    own = model.predict([UNSEEN / "roses"])
    assert all(p.label in ("roses", "unknown") for p in own)
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["verifier"] is True and "conformal share of new photos of roses" in metrics["estimate"]["method"]
    assert (model_dir / "report.html").exists() and "It is a verifier: it tells whether a photo shows roses" in (model_dir / "README.md").read_text()


def test_evaluating_a_verifier_counts_other_labels_as_negatives(verifier, tmp_path):
    model_dir, _ = verifier
    out = tmp_path / "e.json"
    r = run_cli("evaluate", str(model_dir), str(UNSEEN), "--json", str(out))
    assert r.returncode == 0, r.stderr
    rej = json.loads(out.read_text())["rejection"]
    assert rej["ood_n"] == 8 and "other labels" in rej["ood_dir"] and 0 <= rej["auroc"] <= 1


def test_verifier_in_the_server(verifier):
    from fastapi.testclient import TestClient

    from imgclf.serve.app import create_app

    model_dir, _ = verifier
    with TestClient(create_app(model_dir)) as client:
        photo = next((NOT_FLOWERS).glob("*.jpg"))
        body = client.post("/predict", content=photo.read_bytes()).json()
        assert body["label"] in ("roses", "unknown") and body["top_k"][0]["label"] == "roses"
        assert client.get("/model").json()["labels"] == ["roses"]


def test_verifier_with_negatives_is_a_two_class_model(tmp_path, cache_dir):
    root = copy_photos(tmp_path / "d", labels=["roses"])
    shutil.copytree(NOT_FLOWERS, root / "unknown", ignore=shutil.ignore_patterns("*.txt"))
    result = imgclf.train(root, tmp_path / "m", cache_dir=cache_dir)
    assert result.labels == ["roses", "unknown"] and not result.metrics["verifier"]
    assert "cross-validation" in result.metrics["estimate"]["method"]


def test_a_one_label_model_cannot_be_fine_tuned(tmp_path, cache_dir):
    root = copy_photos(tmp_path / "d", per_label=3, labels=["roses"])
    r = run_cli("train", str(root), "-o", str(tmp_path / "m"), "--fine-tune")
    assert r.returncode == 2 and "needs at least two labels" in r.stderr and not (tmp_path / "m").exists()


def test_many_photos_are_measured_on_the_splits_set_aside(tmp_path, cache_dir, monkeypatch):
    """Above the cross-validation limit (lowered here to the bundled example's size), the head is fitted on the training
    split alone, the temperature on the validation split's logits, and the estimate is the test split's accuracy."""
    from imgclf.heads import estimate
    from imgclf.runtime.model import Model

    monkeypatch.setattr(estimate, "CROSS_VALIDATE_UP_TO", 50)
    monkeypatch.setattr(estimate, "MIN_SET_ASIDE", 5)
    imgclf.train(PHOTOS, tmp_path / "m", cache_dir=cache_dir)
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    n_val, n_test = metrics["val"]["n"], metrics["test"]["n"]
    assert metrics["estimate"]["method"] == f"the test split set aside ({n_test} photos)"
    assert metrics["estimate"]["accuracy"] == metrics["test"]["accuracy"] and metrics["estimate"]["n"] == n_test
    assert metrics["head"]["calibrated_on"] == (f"the validation split's {n_val} photos, scored by the head fitted on the "
                                                "training split")
    assert "out_of_fold" not in metrics and metrics["head"]["temperature"] > 0
    rule = metrics["rejection"]  # calibrated on the photos set aside, scored against the training photos alone
    assert rule["n"] == n_val + n_test and rule["calibrated_on"] == (
        f"the validation and test splits' {n_val + n_test} photos, scored against the training split's")
    # the validation photos stayed out of the head that ships: it answers them as the head fitted on training did
    val = metrics["val"]["photos"]
    answers = Model.load(tmp_path / "m").predict([p["path"] for p in val], reject=False)
    assert [a.confidence for a in answers] == pytest.approx([p["confidence"] for p in val], abs=1e-4)
    assert estimate.cross_validates(70, 7, 7) is False and estimate.cross_validates(40, 7, 7) is True


def test_budgets_change_nothing_below_them():
    """Choosing C and the out-of-fold heads on at most N photos of each label is the exact computation when no label has
    more (the bundled example, flowers-bench), and a sample of N of each label beyond."""
    from imgclf.heads.estimate import out_of_fold_logits
    from imgclf.heads.linear import fit_head, stratified_sample

    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], [30, 50, 20])
    x = (rng.normal(size=(100, 24)) + np.eye(3, 24)[y] * 3).astype(np.float32)
    assert np.array_equal(stratified_sample(y, 50, 0), np.arange(100))
    sample = stratified_sample(y, 25, 0)
    assert np.bincount(y[sample]).tolist() == [25, 25, 20] and np.array_equal(sample, np.sort(sample))
    assert np.array_equal(out_of_fold_logits(x, y, 3, 10.0, 0)[0], out_of_fold_logits(x, y, 3, 10.0, 0, per_label=50)[0])
    assert not np.array_equal(out_of_fold_logits(x, y, 3, 10.0, 0)[0], out_of_fold_logits(x, y, 3, 10.0, 0, per_label=15)[0])
    head = fit_head(x[:80], y[:80], 3, x[80:], y[80:], seed=0)
    assert head.weight.shape == (3, 24) and head.C in (30.0, 100.0, 300.0)


def test_near_copies_are_held_out_together_and_score_as_new_photos_would():
    """Folds with groups keep each group in one fold and every class in every fold; a copy's out-of-fold score no
    longer comes from its twin."""
    from imgclf.heads.estimate import folds_for, out_of_fold_similarity

    rng = np.random.default_rng(0)
    pictures = rng.normal(size=(8, 32))
    x = np.repeat(pictures, 3, axis=0) + 0.01 * rng.normal(size=(24, 32))  # three near copies of each picture
    y = np.repeat([0, 0, 0, 0, 1, 1, 1, 1], 3)
    groups = np.repeat(np.arange(8), 3)
    folds = folds_for(y, 0, groups)
    assert len(folds) == 4  # as many as the smallest class has pictures, not photos
    for train, held in folds:
        assert not set(groups[train]) & set(groups[held])
        assert set(y[held]) == {0, 1}
    twins, _ = out_of_fold_similarity(x, y, [0, 1], 0)
    apart, _ = out_of_fold_similarity(x, y, [0, 1], 0, groups)
    assert np.median(twins) > 0.5 and apart.max() < 0.3  # apart, the pictures are as unlike as new ones are
