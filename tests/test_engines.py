"""The local batch engine (``predict --output``, ``embed``) without the Ray extra: CSV and JSON Lines."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from conftest import UNSEEN, copy_photos, run_cli

from imgclf import engines
from imgclf.errors import ImgclfError


@pytest.fixture
def unseen_with_bad(tmp_path):
    root = tmp_path / "unseen"
    shutil.copytree(UNSEEN, root)
    (root / "tulips" / "empty.jpg").write_bytes(b"")
    return root


def test_local_predict_to_jsonl_matches_model_predict(trained_model, unseen_with_bad, tmp_path):
    from imgclf.runtime.model import Model

    job = engines.predict(trained_model, [unseen_with_bad], tmp_path / "p.jsonl", top_k=2)
    assert (job.rows, job.errors) == (11, 1)
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    plain = Model.load(trained_model).predict([unseen_with_bad], top_k=2)
    assert [r["path"] for r in rows] == [p.path for p in plain]
    for r, p in zip(rows, plain):
        assert (r["label"], r["error"]) == (p.label, p.error)
        assert r["top_k"] == p.top_k
    assert [r["error"] for r in rows if r["error"]] == ["empty file"]


def test_cli_embed_csv_and_predict_csv(trained_model, tmp_path, cache_dir):
    data = copy_photos(tmp_path / "photos", per_label=2)
    r = run_cli("embed", str(data), "-o", str(tmp_path / "e.csv"), "-q")
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "e.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 and {row["label"] for row in rows} == {"daisy", "dandelion", "roses", "sunflowers", "tulips"}
    assert all(np.isfinite(json.loads(row["embedding"])).all() for row in rows)

    r = run_cli("predict", str(trained_model), str(data / "*" / "*.jpg"), "-o", str(tmp_path / "p.csv"))
    assert r.returncode == 0, r.stderr
    assert "10 predictions written" in r.stderr
    assert (tmp_path / "p.csv").read_text().startswith("path,status,label,confidence,similarity,error,top1_label")


def test_no_match_for_a_glob_is_a_user_error(trained_model, tmp_path):
    with pytest.raises(ImgclfError, match="no files match"):
        engines.predict(trained_model, [str(tmp_path / "*.jpg")], tmp_path / "p.jsonl")
    assert not list(tmp_path.iterdir())
