"""``train --fine-tune``: the real LP-FT path on the bundled photos, with few epochs, and its fall-back to the
frozen model when fine-tuning does not beat it on the validation photos."""

from __future__ import annotations

import json

import numpy as np
import pytest

import imgclf
from imgclf.training.finetune import FineTuneConfig
from tests.conftest import PHOTOS, UNSEEN, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, cache_dir):
    """A fine-tuned model kept whatever its validation accuracy (``fall_back=False``)."""
    out = tmp_path_factory.mktemp("models") / "tuned"
    imgclf.train(PHOTOS, out, cache_dir=cache_dir, fine_tune=FineTuneConfig(epochs=2, fall_back=False))
    return out


def test_fine_tune_records_its_run_and_exports_the_same_interface(tuned):
    metrics = json.loads((tuned / "metrics.json").read_text())
    ft = metrics["fine_tune"]
    assert [h["epoch"] for h in ft["history"]][:1] == [0] and 2 <= len(ft["history"]) <= 3
    assert ft["best_epoch"] in (0, 1, 2) and ft["epochs"] == 2 and ft["kept"] == "fine-tuned"
    assert ft["estimated_seconds"] > 0 and ft["seconds"] > 0
    meta = json.loads((tuned / "imgclf.json").read_text())
    assert meta["head"]["fine_tuned"] is True
    assert "- fine-tuned: the backbone's last 3 stages with the head" in (tuned / "README.md").read_text()
    preds = json.loads(run_cli("predict", str(tuned), str(UNSEEN), "--format", "json", "--no-reject").stdout)
    assert len(preds) == 10 and np.mean([p["label"] == p["path"].split("/")[-2] for p in preds]) >= 0.6


def test_fine_tune_starts_from_the_head_that_never_saw_validation(tuned):
    """Epoch 0 is the linear probe fitted on the training split: the refitted head has seen the
    validation photos and would score them (almost) perfectly, so early stopping would keep it."""
    metrics = json.loads((tuned / "metrics.json").read_text())
    epoch0 = metrics["fine_tune"]["history"][0]
    assert epoch0["val_accuracy"] == pytest.approx(metrics["fine_tune"]["probe_val_accuracy"], abs=1e-6)
    assert epoch0["val_loss"] > 0.05


def test_a_fine_tune_that_does_not_beat_the_frozen_model_falls_back_to_it(tmp_path, cache_dir, trained_model):
    """A run that cannot change the network (learning rates 0) answers no validation photo better than the frozen
    head: the frozen model is trained instead, exactly as without ``--fine-tune``, and the record says why."""
    out = tmp_path / "fell-back"
    imgclf.train(PHOTOS, out, cache_dir=cache_dir, fine_tune=FineTuneConfig(epochs=1, lr=0.0, head_lr=0.0))
    ft = json.loads((out / "metrics.json").read_text())["fine_tune"]
    assert ft["kept"] == "frozen" and ft["best_val_accuracy"] == ft["probe_val_accuracy"]
    assert "validation photos right than the frozen model" in ft["why"]
    meta = json.loads((out / "imgclf.json").read_text())
    assert not meta["head"].get("fine_tuned") and meta["settings"]["fine_tune"] is False and meta["settings"]["can_grow"]
    assert "was tried and not kept: it answered no more of the" in (out / "README.md").read_text()
    ours, frozen = imgclf.load(out).predict(sorted(UNSEEN.rglob("*.jpg"))), imgclf.load(trained_model).predict(sorted(UNSEEN.rglob("*.jpg")))
    assert [p.label for p in ours] == [p.label for p in frozen]
    assert np.allclose([p.confidence for p in ours], [p.confidence for p in frozen], atol=1e-6)


def test_the_summary_says_what_fine_tuning_did(tmp_path, cache_dir):
    """The command line's summary names the outcome the metrics record: kept with its validation gain, or not kept
    and why."""
    out = tmp_path / "m"
    result = run_cli("train", str(PHOTOS), "-o", str(out), "--fine-tune", "--epochs", "2")
    assert result.returncode == 0, result.stderr
    ft = json.loads((out / "metrics.json").read_text())["fine_tune"]
    assert "fine-tuning 2 epochs" in result.stderr + result.stdout
    said = "fine-tuning not kept" if ft["kept"] == "frozen" else f"{ft['best_val_accuracy']:.3f} after epoch {ft['best_epoch']}"
    assert said in result.stdout
    assert json.loads((out / "imgclf.json").read_text())["head"].get("fine_tuned", False) is (ft["kept"] == "fine-tuned")


def test_a_validation_gain_is_kept_only_beyond_chance():
    """The sign test on the photos only one of the two answers right: 5 fixed and none broken of 50 photos is kept,
    4 is not, nor 5 fixed against 1 broken, nor no change; 40 fixed against 10 broken of 2,000 is."""
    from imgclf.training.finetune import beats_frozen

    frozen = np.arange(50) < 45

    def fixed(n, broken=0):
        tuned = frozen.copy()
        tuned[45:45 + n] = True
        tuned[:broken] = False
        return tuned

    assert beats_frozen(fixed(5), frozen, 0.05) == (True, pytest.approx(1 / 32))
    assert not beats_frozen(fixed(4), frozen, 0.05)[0]
    assert beats_frozen(fixed(5, broken=1), frozen, 0.05) == (False, pytest.approx(7 / 64))
    assert not beats_frozen(frozen, frozen, 0.05)[0] and beats_frozen(frozen, frozen, 0.05)[1] == 1.0
    frozen = np.arange(2000) >= 40
    tuned = frozen.copy()
    tuned[:40], tuned[-10:] = True, False
    assert beats_frozen(tuned, frozen, 0.05)[0]
