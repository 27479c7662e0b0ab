"""``train --fine-tune``: the real LP-FT path on the bundled photos, with few epochs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import PHOTOS, UNSEEN, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("models") / "tuned"
    result = run_cli("train", str(PHOTOS), "-o", str(out), "--fine-tune", "--epochs", "2")
    assert result.returncode == 0, result.stderr
    return out, result


def test_fine_tune_records_its_run_and_exports_the_same_interface(tuned):
    out, result = tuned
    metrics = json.loads((out / "metrics.json").read_text())
    ft = metrics["fine_tune"]
    assert [h["epoch"] for h in ft["history"]][:1] == [0] and 2 <= len(ft["history"]) <= 3
    assert ft["best_epoch"] in (0, 1, 2) and ft["epochs"] == 2
    assert ft["estimated_seconds"] > 0 and ft["seconds"] > 0
    assert "fine-tuning 2 epochs" in result.stderr + result.stdout
    meta = json.loads((out / "imgclf.json").read_text())
    assert meta["head"]["fine_tuned"] is True
    preds = json.loads(run_cli("predict", str(out), str(UNSEEN), "--format", "json", "--no-reject").stdout)
    assert len(preds) == 10 and np.mean([p["label"] == p["path"].split("/")[-2] for p in preds]) >= 0.6


def test_fine_tune_starts_from_the_head_that_never_saw_validation(tuned):
    """Epoch 0 is the linear probe fitted on the training split: the refitted head has seen the
    validation photos and would score them (almost) perfectly, so early stopping would keep it."""
    out, _ = tuned
    metrics = json.loads((out / "metrics.json").read_text())
    epoch0 = metrics["fine_tune"]["history"][0]
    assert epoch0["val_accuracy"] == pytest.approx(metrics["fine_tune"]["probe_val_accuracy"], abs=1e-6)
    assert epoch0["val_loss"] > 0.05
