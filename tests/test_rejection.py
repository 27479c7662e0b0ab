"""Say "unknown" instead of guessing (issue 5): the rule, its calibration, and every place it applies."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx

import imgclf
from imgclf.heads.estimate import out_of_fold_similarity
from imgclf.heads.rejection import Reference, auroc, calibrate, prototypes
from tests.conftest import EXAMPLE, LABELS, UNSEEN, copy_photos, run_cli

NOT_FLOWERS = EXAMPLE.parent / "not-flowers"


def test_rule_is_stored_in_the_model_folder_and_the_onnx_metadata(trained_model):
    meta = json.loads((trained_model / "imgclf.json").read_text())
    rule = meta["rejection"]
    assert rule["method"] == "prototype+neighbour-cosine" and rule["target_acceptance"] == 0.95
    assert 0 < rule["threshold"] < 1 and rule["calibration_acceptance"] >= 0.95
    model = onnx.load(str(trained_model / "model.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["imgclf_rejection"]) == rule
    assert [o.name for o in model.graph.output] == ["embedding", "probabilities", "cam", "similarity", "photo_similarities"]
    onnx.checker.check_model(model, full_check=True)  # the fused graph is valid ONNX, shapes included
    metrics = json.loads((trained_model / "metrics.json").read_text())["rejection"]
    assert metrics["split"] == "test" and metrics["accepted"] + metrics["rejected"] == json.loads(
        (trained_model / "metrics.json").read_text())["test"]["n"]
    assert 'id="rejection"' in (trained_model / "report.html").read_text()


def test_non_flowers_come_back_unknown_with_best_guess_kept(trained_model):
    r = run_cli("predict", str(trained_model), str(NOT_FLOWERS), "-f", "json")
    assert r.returncode == 0, r.stderr
    preds = [p for p in json.loads(r.stdout) if p["status"] != "error"]  # LICENSE.txt is reported as "not an image"
    assert len(preds) == 17
    unknown = [p for p in preds if p["label"] == "unknown"]
    assert all(p["status"] == "unknown" for p in unknown)
    assert len(unknown) >= 15, [(p["path"], p["similarity"]) for p in preds if p["label"] != "unknown"]
    for p in unknown:
        assert p["top_k"][0]["label"] in LABELS and 0 <= p["confidence"] <= 1 and p["similarity"] is not None
    flowers = json.loads(run_cli("predict", str(trained_model), str(UNSEEN), "-f", "json").stdout)
    assert sum(p["label"] == "unknown" for p in flowers) <= 2


def test_threshold_override_and_no_reject(trained_model):
    cat = str(NOT_FLOWERS / "chelsea.jpg")
    plain = json.loads(run_cli("predict", str(trained_model), cat, "-f", "json", "--no-reject").stdout)[0]
    assert plain["label"] in LABELS
    loose = json.loads(run_cli("predict", str(trained_model), cat, "-f", "json", "--threshold", "-1").stdout)[0]
    assert loose["label"] == plain["label"]
    strict = json.loads(run_cli("predict", str(trained_model), str(UNSEEN / "daisy"), "-f", "json", "--threshold", "1.01").stdout)
    assert all(p["label"] == "unknown" for p in strict)
    model = imgclf.load(trained_model)
    assert model.predict([cat], reject=False)[0].label == plain["label"]
    assert model.predict([cat])[0].label == "unknown"


def test_evaluate_with_ood_reports_acceptance_rejection_and_auroc(trained_model, tmp_path):
    out = tmp_path / "eval.json"
    r = run_cli("evaluate", str(trained_model), str(UNSEEN), "--ood", str(NOT_FLOWERS), "--json", str(out))
    assert r.returncode == 0, r.stderr
    rej = json.loads(out.read_text())["rejection"]
    assert rej["accepted"] + rej["rejected"] == 10 and rej["ood_n"] == 17
    assert rej["ood_rejection_rate"] >= 0.9 and rej["auroc"] >= 0.95
    assert "AUROC" in r.stdout


def test_unknown_folder_is_trained_as_negatives(tmp_path, cache_dir):
    data = copy_photos(tmp_path / "data", per_label=8, labels=LABELS[:2])
    (data / "_background").mkdir()
    for f in sorted(NOT_FLOWERS.glob("*.jpg"))[:10]:
        shutil.copy(f, data / "_background" / f.name)
    result = imgclf.train(data, tmp_path / "m", cache_dir=cache_dir)
    assert result.labels == LABELS[:2] + ["unknown"]
    model = imgclf.load(tmp_path / "m")
    preds = model.predict(sorted(NOT_FLOWERS.glob("*.jpg"))[10:], reject=False)
    assert sum(p.label == "unknown" for p in preds) >= 5  # the head itself learned "unknown"


def test_beta_quantiles_match_scipy():
    from scipy.special import betaincinv

    from imgclf.heads.rejection import beta_quantile

    for a, b in ((951, 50), (10, 1), (56, 3), (2, 1), (9500, 501)):
        for q in (0.025, 0.5, 0.975):
            assert abs(beta_quantile(q, a, b) - betaincinv(a, b, q)) < 1e-9, (a, b, q)


def test_calibration_and_auroc_maths():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=1000)
    rule = calibrate(scores, 0.95, "test")
    assert abs(np.mean(scores >= rule.threshold) - 0.95) < 0.01
    # conformal: the k-th smallest of n scores, k = floor(0.05 (n + 1)); expected acceptance (n + 1 - k) / (n + 1)
    assert rule.n == 1000 and rule.threshold == np.floor(np.sort(scores)[49] * 1e6) / 1e6
    assert rule.expected_acceptance == round(951 / 1001, 6)
    lo, hi = rule.acceptance_interval
    assert 0.93 < lo < 0.95 < hi < 0.965
    small = calibrate(np.arange(10.0), 0.95, "ten")  # under 19 scores: the smallest, and it says the promise is weaker
    assert small.threshold == 0.0 and small.expected_acceptance == round(10 / 11, 6) and small.acceptance_interval[0] < 0.75
    floored = calibrate(np.arange(10.0), 0.95, "ten", floor=3.0)  # a backbone's floor: 3 of 10 scores fall below it
    assert floored.threshold == 3.0 and floored.expected_acceptance == round(7 / 11, 6) and "floor 3.0" in floored.calibrated_on
    fresh = rng.normal(size=(200, 1000))  # new photos from the same distribution: accepted at the expected rate
    assert lo <= np.mean(fresh >= rule.threshold) <= hi
    assert auroc([1, 2, 3], [0, -1]) == 1.0 and auroc([0], [1]) == 0.0 and auroc([1], [1]) == 0.5
    x = rng.normal(size=(30, 8))
    y = np.repeat([0, 1, 2], 10)
    protos = prototypes(x, y, [0, 1, 2])
    assert np.allclose(np.linalg.norm(protos, axis=1), 1)
    ref = Reference.fit(x, y, [0, 1, 2])
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert np.allclose(ref.similarity(x), 0.5 * ((u @ protos.T).max(1) + 1.0), atol=1e-5)  # a photo is its own nearest neighbour
    oof, folds = out_of_fold_similarity(x, y, [0, 1, 2], seed=0)
    assert folds == 5
    assert (oof < ref.similarity(x)).mean() > 0.9  # photos are less like a reference built without them


def test_the_compact_reference_keeps_the_same_directions_whichever_gram_matrix_it_decomposes():
    """With fewer photos than dimensions the top directions come from the photos' own Gram matrix; the cosines they
    give are those of the dimensions' Gram matrix (exact to float rounding), duplicates and all."""
    from imgclf.heads.linear import l2_normalize
    from imgclf.heads.rejection import COMPACT_DIMS, compact

    rng = np.random.default_rng(4)
    photos = l2_normalize((rng.normal(size=(600, 1280)) * np.linspace(3, 0.05, 1280) + 2 * rng.normal(size=1280)).astype(np.float32))
    photos[300:320] = photos[:20]  # copies: the Gram matrix is singular in places
    basis, coords = compact(photos)
    assert basis.shape == (1280, COMPACT_DIMS) and np.abs(basis.T @ basis - np.eye(COMPACT_DIMS)).max() < 1e-5
    _, vectors = np.linalg.eigh((photos.T @ photos).astype(np.float64))
    exact = vectors[:, -COMPACT_DIMS:]
    new = l2_normalize(rng.normal(size=(50, 1280)).astype(np.float32) + photos[:50])
    assert np.abs((new @ basis) @ coords - (new @ exact) @ (exact.T @ photos.T)).max() < 1e-4
