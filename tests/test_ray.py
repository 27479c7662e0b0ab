"""The Ray engine against the local engine on the bundled photos, on a local Ray runtime (2 CPUs).

Skipped when the extra is not installed (``pip install -e '.[ray]'``); ``.ci/run`` installs it.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DISABLE_IMPORT_WARNING", "1")
ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

from conftest import UNSEEN, copy_photos, run_cli  # noqa: E402

from imgclf import engines  # noqa: E402
from imgclf.errors import ImgclfError  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")]
TOL = 1e-5


@pytest.fixture(scope="module")
def ray_runtime():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 2**20,
             logging_level="ERROR")
    yield ray
    ray.shutdown()


def _add_bad_files(folder: Path) -> list[str]:
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("not a photo, just text with a .jpg name\n")
    return ["empty.jpg", "notes.jpg"]


@pytest.fixture(scope="module")
def unseen_with_bad(tmp_path_factory) -> Path:
    """The held-out photos plus an empty file and a text file named .jpg."""
    root = tmp_path_factory.mktemp("unseen") / "unseen"
    shutil.copytree(UNSEEN, root)
    _add_bad_files(root / "daisy")
    return root


@pytest.fixture(scope="module")
def photos_with_bad(tmp_path_factory) -> Path:
    """The 70 training photos plus the same two bad files in one label folder."""
    root = copy_photos(tmp_path_factory.mktemp("photos") / "photos")
    _add_bad_files(root / "roses")
    return root


@pytest.fixture(scope="module")
def embeddings(ray_runtime, photos_with_bad, cache_dir, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("emb")
    return {
        engine: engines.embed(photos_with_bad, out / f"{engine}.parquet", engine, cache_dir=cache_dir, actors=2).output
        for engine in ("local", "ray")
    }


def test_predict_local_and_ray_agree(ray_runtime, trained_model, unseen_with_bad, tmp_path):
    for engine in ("local", "ray"):
        job = engines.predict(trained_model, [unseen_with_bad], tmp_path / f"{engine}.parquet", engine, actors=2)
        assert (job.rows, job.errors) == (12, 2)
    local = pq.read_table(tmp_path / "local.parquet").to_pylist()
    remote = pq.read_table(tmp_path / "ray.parquet").to_pylist()
    assert [r["path"] for r in local] == [r["path"] for r in remote]  # same files, same order
    for a, b in zip(local, remote):
        assert a["label"] == b["label"] and a["error"] == b["error"]
        assert [t["label"] for t in a["top_k"]] == [t["label"] for t in b["top_k"]]
        if a["error"] is None:
            assert abs(a["confidence"] - b["confidence"]) <= TOL
            assert np.allclose([t["confidence"] for t in a["top_k"]], [t["confidence"] for t in b["top_k"]], atol=TOL)
    errors = {Path(r["path"]).name: r["error"] for r in remote if r["error"]}
    assert errors == {"empty.jpg": "empty file", "notes.jpg": "not an image (unrecognised format)"}
    assert all(r["label"] is None and r["confidence"] is None for r in remote if r["error"])

    from imgclf.runtime.model import Model  # and both match plain `imgclf predict`

    plain = {p.path: p for p in Model.load(trained_model).predict([unseen_with_bad])}
    for r in remote:
        assert plain[r["path"]].label == r["label"]
        assert plain[r["path"]].error == r["error"]
    # label sets (--error-rate) from the actors, as the model answers them
    engines.predict(trained_model, [unseen_with_bad], tmp_path / "sets.parquet", "ray", actors=2, error_rate=0.05)
    sets = {r["path"]: r["set"] for r in pq.read_table(tmp_path / "sets.parquet").to_pylist()}
    want = {p.path: p.label_set for p in Model.load(trained_model).predict([unseen_with_bad], error_rate=0.05)}
    assert sets == want and sum(s == [] for s in sets.values()) == 2  # the two unreadable files: no labels


def test_embed_local_and_ray_agree(embeddings, photos_with_bad, cache_dir):
    from imgclf.backbones import resolve
    from imgclf.files.digests import content_hash

    local, remote = (pq.read_table(embeddings[e]) for e in ("local", "ray"))
    assert local.num_rows == remote.num_rows == 72
    for col in ("path", "hash", "label", "split", "error"):
        assert local[col].to_pylist() == remote[col].to_pylist(), col
    a, b = local["embedding"].to_pylist(), remote["embedding"].to_pylist()
    bb = resolve(cache_dir=cache_dir)
    for row, va, vb in zip(remote.to_pylist(), a, b):
        if row["error"]:
            assert va is None and vb is None
            continue
        assert len(va) == bb.dim and np.allclose(va, vb, atol=TOL)
        assert row["hash"] == content_hash((photos_with_bad / row["path"]).read_bytes())
        assert row["label"] == row["path"].split("/")[0]
    bad = {r["path"]: r["error"] for r in remote.to_pylist() if r["error"]}
    assert bad == {"roses/empty.jpg": "empty file", "roses/notes.jpg": "not an image (unrecognised format)"}
    meta = json.loads(pq.read_schema(embeddings["ray"]).metadata[b"imgclf"])
    assert meta["kind"] == "embeddings" and meta["backbone"]["id"] == bb.id


def test_train_on_ray_embeddings_matches_normal_train(embeddings, photos_with_bad, cache_dir, tmp_path):
    from imgclf.training import train

    fresh = tmp_path / "cache"  # no cached embeddings: vectors from today's pipeline (the backbone ships with imgclf)
    fresh.mkdir()
    normal = train(photos_with_bad, tmp_path / "normal", cache_dir=fresh)
    result = run_cli("train", str(photos_with_bad), "-o", str(tmp_path / "from-ray"), "--embeddings", str(embeddings["ray"]), "-q")
    assert result.returncode == 0, result.stderr
    from_ray = json.loads((tmp_path / "from-ray" / "metrics.json").read_text())
    m = normal.metrics
    assert from_ray["counts"] == m["counts"]
    assert from_ray["head"]["C"] == m["head"]["C"]
    assert sorted(s["path"] for s in from_ray["skipped"]) == sorted(s["path"] for s in m["skipped"])
    for split in ("val", "test"):
        assert from_ray[split]["accuracy"] == m[split]["accuracy"]
        got = {p["path"]: p for p in from_ray[split]["photos"]}
        for p in m[split]["photos"]:
            assert got[p["path"]]["predicted"] == p["predicted"]
            assert abs(got[p["path"]]["confidence"] - p["confidence"]) <= 1e-4


def test_embeddings_of_another_backbone_are_refused(embeddings, photos_with_bad, cache_dir):
    from imgclf.backbones import resolve
    from imgclf.data import scan_labelled
    from imgclf.engines.embeddings_file import load_embeddings

    bb = resolve(cache_dir=cache_dir)
    ds = scan_labelled(photos_with_bad)
    assert len(load_embeddings(embeddings["ray"], ds, bb).paths) == 70
    with pytest.raises(ImgclfError, match="was embedded with backbone .* but this training uses efficientnet_lite2-x"):
        load_embeddings(embeddings["ray"], ds, replace(bb, id="efficientnet_lite2-x", name="efficientnet_lite2"))


def test_cli_predict_on_a_running_cluster(ray_runtime, trained_model, unseen_with_bad, tmp_path):
    """`--address` joins a running cluster (here the test's runtime); .csv and .jsonl outputs; progress never breaks a pipe."""
    address = ray.get_runtime_context().gcs_address
    out = tmp_path / "preds.jsonl"
    result = run_cli("predict", str(trained_model), str(unseen_with_bad / "*" / "*.jpg"), "--engine", "ray",
                     "--address", address, "--output", str(out), "--actors", "1")
    assert result.returncode == 0, result.stderr
    assert "12 predictions written" in result.stderr and "(2 unreadable)" in result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12 and sum(r["error"] is not None for r in rows) == 2
    assert ray.is_initialized()  # the CLI disconnected without stopping the cluster

    result = run_cli("predict", str(trained_model), str(unseen_with_bad), "--output", str(tmp_path / "p.csv"), "-k", "2")
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0].startswith("path,status,label,confidence,similarity,error,top1_label,top1_confidence,top2_label")
    by_path = {r["path"]: r for r in rows}
    for line in lines[1:]:
        path, status, label = line.split(",")[:3]
        assert by_path[path]["status"] == status and (by_path[path]["label"] or "") == label


def test_unknown_engine_and_output_format_are_user_errors(trained_model, tmp_path):
    r = run_cli("predict", str(trained_model), str(UNSEEN), "--engine", "spark", "--output", str(tmp_path / "p.parquet"))
    assert r.returncode == 2 and "unknown engine 'spark'" in r.stderr
    r = run_cli("predict", str(trained_model), str(UNSEEN), "--output", str(tmp_path / "p.xlsx"))
    assert r.returncode == 2 and "unknown output format '.xlsx'" in r.stderr
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_ray_predicts_a_model_of_several_labels_per_photo(ray_runtime, multilabel_model, multilabel_data, unseen_with_bad, tmp_path):
    """The actors answer a multi-label model as it answers itself: every label over its threshold, none for a bad file."""
    from imgclf.runtime.model import Model

    inputs = [multilabel_data / "unseen", unseen_with_bad / "daisy"]
    job = engines.predict(multilabel_model, inputs, tmp_path / "several.parquet", "ray", actors=2)
    assert (job.rows, job.errors) == (9, 2)
    got = {r["path"]: r for r in pq.read_table(tmp_path / "several.parquet").to_pylist()}
    want = {p.path: p for p in Model.load(multilabel_model).predict(inputs)}
    assert set(got) == set(want)
    for path, p in want.items():
        assert [a["label"] for a in got[path]["labels"]] == [a["label"] for a in p.labels] and got[path]["status"] == p.status
        assert np.allclose([a["confidence"] for a in got[path]["labels"]], [a["confidence"] for a in p.labels], atol=TOL)
    assert sum(r["labels"] == [] and r["error"] is not None for r in got.values()) == 2
