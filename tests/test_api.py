"""The Python API at the package root, and the fused ONNX model against the head."""

import json

import numpy as np
import pytest

import imgclf
from tests.conftest import LABELS, PHOTOS, UNSEEN, copy_photos


def test_api_train_load_predict_evaluate(tmp_path, cache_dir):
    data = copy_photos(tmp_path / "data", per_label=10)
    result = imgclf.train(data, tmp_path / "model", seed=3, cache_dir=cache_dir)
    assert isinstance(result, imgclf.TrainResult)
    assert result.labels == LABELS and result.model_dir == tmp_path / "model"
    model = imgclf.load(tmp_path / "model")
    preds = model.predict([UNSEEN / "daisy", UNSEEN / "sunflowers"], top_k=2)
    assert len(preds) == 4 and all(isinstance(p, imgclf.Prediction) for p in preds)
    assert all(p.label in LABELS + ["unknown"] and p.top_k[0]["label"] in LABELS and len(p.top_k) == 2 for p in preds)
    ev = imgclf.evaluate(model, UNSEEN)
    assert ev["n"] == 10
    # the accuracy is the share of photos whose best guess is their label, and the model is far better than chance
    assert ev["accuracy"] == round(sum(p["predicted"] == p["label"] for p in ev["photos"]) / 10, 6) and ev["accuracy"] >= 0.5


def test_same_seed_same_model(tmp_path, cache_dir):
    """Two trainings that share embeddings but not fitted heads (the head cache would hide non-deterministic fitting)."""
    import shutil

    data = copy_photos(tmp_path / "data", per_label=8)
    caches = []
    for name in ("cache-a", "cache-b"):
        own = tmp_path / name
        shutil.copytree(cache_dir / "embeddings", own / "embeddings")
        caches.append(own)
    a = imgclf.train(data, tmp_path / "a", seed=1, cache_dir=caches[0])
    b = imgclf.train(data, tmp_path / "b", seed=1, cache_dir=caches[1])
    assert all(any((c / "heads").iterdir()) for c in caches)  # each run fitted (and stored) its own head
    assert a.metrics["head"] == b.metrics["head"]
    pa = imgclf.load(a.model_dir).predict([UNSEEN])
    pb = imgclf.load(b.model_dir).predict([UNSEEN])
    assert [p.to_row() for p in pa] == [p.to_row() for p in pb]


def test_fused_onnx_equals_backbone_plus_head(trained_model, cache_dir):
    """model.onnx (backbone + head) gives the head's probabilities on cached embeddings."""
    import onnxruntime as ort

    from imgclf.backbones import resolve
    from imgclf.embeddings.cache import EmbeddingCache
    from imgclf.embeddings.compute import embed_files
    from imgclf.heads.linear import softmax, l2_normalize
    import onnx
    from onnx import numpy_helper

    bb = resolve(cache_dir=cache_dir)
    files = sorted(UNSEEN.glob("*/*"))
    emb = embed_files(files, bb, EmbeddingCache(cache_dir, bb.id))
    graph = onnx.load(str(trained_model / "model.onnx")).graph
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    expected = softmax(l2_normalize(emb.vectors) @ init["imgclf_head_weight"] + init["imgclf_head_bias"])
    model = imgclf.load(trained_model)
    from imgclf.runtime.loader import pixel_loader

    batch = model.preprocessing.batch([pixel_loader(model.preprocessing)(f) for f in files])  # the pipeline's own decoding
    sess = ort.InferenceSession(str(trained_model / "model.onnx"), providers=["CPUExecutionProvider"])
    probs, embedding = sess.run(["probabilities", "embedding"], {"input": batch})
    np.testing.assert_allclose(embedding, emb.vectors, atol=1e-4)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    meta = {p.key: p.value for p in onnx.load(str(trained_model / "model.onnx")).metadata_props}
    assert json.loads(meta["labels"]) == LABELS


def test_import_is_light():
    import subprocess
    import sys

    code = "import imgclf, sys; assert 'torch' not in sys.modules and 'onnxruntime' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_augmented_views_are_cached(tmp_path, cache_dir):
    """--augment embeds each extra view once; a second run computes nothing."""
    data = copy_photos(tmp_path / "data", per_label=4, labels=LABELS[:2])
    first = imgclf.train(data, tmp_path / "a", cache_dir=cache_dir, augment=3)
    assert first.metrics["head"]["augment_views"] == ["flip", "full", "full-flip"]
    entries = sorted(p.name for p in cache_dir.rglob("*.emb"))
    second = imgclf.train(data, tmp_path / "b", cache_dir=cache_dir, augment=3)
    assert sorted(p.name for p in cache_dir.rglob("*.emb")) == entries
    assert second.metrics["head"]["C"] == first.metrics["head"]["C"]
    n_train = sum(c["train"] for c in first.counts.values())
    views = [n for n in entries if n.endswith(("-flip.emb", "-full.emb", "-full-flip.emb"))]
    assert len(views) >= 3 * n_train


def test_written_files_are_not_private(trained_model):
    import stat

    assert stat.S_IMODE(trained_model.stat().st_mode) & 0o055 == 0o055
    for name in ("metrics.json", "imgclf.json", "report.html", "labels.json"):
        mode = stat.S_IMODE((trained_model / name).stat().st_mode)
        assert mode & 0o044 == 0o044, (name, oct(mode))


def test_fitted_heads_are_cached_and_damage_is_ignored(tmp_path, cache_dir):
    data = copy_photos(tmp_path / "data", per_label=6, labels=LABELS[:3])
    first = imgclf.train(data, tmp_path / "a", cache_dir=cache_dir, seed=7)
    entries = list((cache_dir / "heads").glob("*.npz"))
    assert entries
    for e in entries:
        e.write_bytes(b"damaged")
    second = imgclf.train(data, tmp_path / "b", cache_dir=cache_dir, seed=7)  # refits, same result
    assert second.metrics["head"] == first.metrics["head"] and second.metrics["test"] == first.metrics["test"]
    third = imgclf.train(data, tmp_path / "c", cache_dir=cache_dir, seed=7)  # from the cache
    assert third.metrics["test"] == first.metrics["test"]


def test_test_time_augmentation_averages_the_mirror_image(trained_model, tmp_path):
    from PIL import Image, ImageOps

    from imgclf.runtime.loader import preprocess_image

    model = imgclf.load(trained_model)
    photos = sorted(UNSEEN.rglob("*.jpg"))
    batch = np.stack([preprocess_image(Image.open(p).convert("RGB"), model.preprocessing) for p in photos])
    plain, mirrored, tta = model.scores(batch), model.scores(batch[..., ::-1].copy()), model.scores(batch, tta=True)
    assert np.allclose(tta[:, :-1], (plain[:, :-1] + mirrored[:, :-1]) / 2, atol=1e-6)
    assert np.allclose(tta[:, -1], plain[:, -1])  # the "unknown" rule sees the photo itself
    assert np.abs(tta - plain).max() > 1e-3  # the mirror image really is scored
    # the mirror of a centre crop is the centre crop of the mirrored photo (even margins here)
    img = Image.open(photos[0]).convert("RGB").resize((300, 256))
    assert np.allclose(preprocess_image(ImageOps.mirror(img), model.preprocessing), preprocess_image(img, model.preprocessing)[..., ::-1], atol=1e-6)
    # through predict and evaluate
    preds = model.predict(photos, tta=True, top_k=5)
    assert [p.top_k[0]["confidence"] for p in preds] == pytest.approx([float(r[:-1].max()) for r in tta], abs=5e-3)  # predict decodes the fast way
    ev = imgclf.evaluate(model, UNSEEN, tta=True)
    assert ev["tta"] == "flip" and ev["n"] == 10


def test_head_regularisation_when_it_cannot_be_chosen(trained_model, cache_dir):
    """A class with one training photo: no validation or CV to choose C, so the grid's middle value."""
    from imgclf.backbones import resolve
    from imgclf.embeddings.cache import EmbeddingCache
    from imgclf.embeddings.compute import embed_files
    from imgclf.heads.linear import C_GRID, fit_head

    bb = resolve(cache_dir=cache_dir)
    files = [sorted((PHOTOS / lab).iterdir())[i] for lab, n in (("daisy", 3), ("roses", 1)) for i in range(n)]
    x = embed_files(files, bb, EmbeddingCache(cache_dir, bb.id)).vectors
    head = fit_head(x, np.array([0, 0, 0, 1]), 2)
    assert head.C == C_GRID[len(C_GRID) // 2] == 100.0


def test_a_loaded_model_keeps_no_copy_of_its_graph_in_python(trained_model):
    """The session is built from model.onnx's bytes (the bytes whose checksum was checked); once built, those bytes
    are not kept beside the graph (a 20,000-photo model's 41 MB would stay in every server)."""
    import gc
    import tracemalloc

    from imgclf.runtime.model import Model

    size = (trained_model / "model.onnx").stat().st_size
    tracemalloc.start()
    try:
        model = Model.load(trained_model)
        gc.collect()
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak >= size and held < size / 10
    assert model.predict([sorted((UNSEEN / LABELS[0]).glob("*.jpg"))[0]])[0].label in LABELS + ["unknown"]
