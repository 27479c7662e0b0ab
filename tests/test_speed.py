"""The fast path: reduced-size decoding within a tested tolerance, the pipeline, the int8 backbone.

No timing assertions here: the numbers belong to ``benchmarks/throughput.py`` and
``benchmarks/quantize.py``.
"""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.errors import ImageError, ImgclfError
from imgclf.runtime.images import decode
from imgclf.runtime.batching import run_batched
from imgclf.runtime.loader import draft_side, preprocess_data
from imgclf.runtime.session import cpu_count, create_session
from imgclf.runtime.preprocessing import Preprocessing, normalize, normalize_fast, resize_crop
from tests.conftest import PHOTOS, copy_photos, run_cli


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    b = io.BytesIO()
    img.save(b, "JPEG", quality=quality)
    return b.getvalue()


def big_photos() -> dict[str, bytes]:
    """JPEGs big enough for reduced-size decoding: a real 1411² photo, and real flower photos enlarged 8×."""
    skimage = pytest.importorskip("skimage")
    out = {"retina.jpg": (Path(skimage.__file__).parent / "data" / "retina.jpg").read_bytes()}
    for f in sorted(PHOTOS.glob("*/*"))[::7]:
        im = Image.open(f).convert("RGB")
        out[f"{f.name} x8"] = jpeg(im.resize((im.width * 8, im.height * 8), Image.Resampling.LANCZOS))
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_reduced_size_decoding_stays_within_tolerance(cache_dir, trained_model):
    """Big JPEGs decode at reduced size (DCT scaling); the embedding barely moves and no label changes."""
    from imgclf.backbones import resolve
    from imgclf.runtime.model import Model

    bb = resolve(cache_dir=cache_dir)
    pre = bb.preprocessing
    photos = big_photos()
    ref, fast = [], []
    for name, data in photos.items():
        full, small = decode(data), decode(data, max_side=draft_side(pre))
        assert small.size[0] < full.size[0], f"{name}: not decoded at reduced size"
        assert min(small.size) >= draft_side(pre) >= 2 * pre.resize_to, f"{name}: decoded smaller than the margin"
        ref.append(preprocess_data(data, pre, fast=False))
        fast.append(preprocess_data(data, pre))
    ref, fast = np.stack(ref), np.stack(fast)
    assert np.abs(ref - fast).mean(axis=(1, 2, 3)).max() < 0.01  # normalised units (1 level = 0.0078)
    sess = create_session(bb.onnx_path)
    emb = [sess.run(None, {"input": x})[0] for x in (ref, fast)]
    cos = cosine(*emb)
    assert cos.min() >= 0.999, dict(zip(photos, cos.round(5)))
    model = Model.load(trained_model)
    labels_ref = model.probabilities(ref).argmax(1)
    labels_fast = model.probabilities(fast).argmax(1)
    assert labels_ref.tolist() == labels_fast.tolist()


def test_small_photos_are_not_decoded_smaller_and_fast_preprocessing_matches():
    """Below the draft margin nothing is reduced; the fast resize/normalise equal the reference within rounding."""
    pre = Preprocessing()
    diffs, total = 0, 0
    for f in sorted(PHOTOS.glob("*/*")):
        data = f.read_bytes()
        assert decode(data, max_side=draft_side(pre)).size == decode(data).size
        ref, fast = preprocess_data(data, pre, fast=False), preprocess_data(data, pre)
        levels = np.abs(ref - fast) * np.asarray(pre.std, np.float32)[:, None, None] * 255
        assert levels.max() <= 2.01  # at most two 8-bit levels (resampling positions move by ulps)
        diffs += int((levels > 0.5).sum())
        total += levels.size
    assert diffs / total < 1e-3
    img = Image.open(next(PHOTOS.glob("*/*"))).convert("RGB").resize((224, 224))
    np.testing.assert_allclose(normalize_fast(img, pre), normalize(img, pre), atol=1e-6)


def test_resize_crop_handles_every_shape_and_big_non_jpeg():
    pre = Preprocessing()
    rng = np.random.default_rng(0)
    for w, h in [(256, 256), (224, 500), (500, 224), (300, 256), (256, 300), (17, 40), (1000, 257)]:
        img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        assert resize_crop(img, pre.resize_to, pre.input_size).size == (224, 224)
        assert pre.fast(img).shape == (3, 224, 224)
    # a big PNG (no DCT scaling): reduced by whole factors first, still within tolerance
    photo = Image.open(sorted(PHOTOS.glob("*/*"))[3]).convert("RGB")
    big = photo.resize((photo.width * 10, photo.height * 10), Image.Resampling.LANCZOS)
    a, b = pre(big), pre.fast(big)
    assert np.abs(a - b).mean() < 0.01


def test_batches_of_pixels_equal_the_single_image_path():
    """Bulk paths load uint8 pixels and normalise whole batches: bit-identical to ``fast`` per image."""
    from imgclf.runtime.loader import load_pixels

    files = sorted(PHOTOS.glob("*/*"))[:5]
    for pre in (Preprocessing(), Preprocessing(input_size=240, crop_pct=0.882, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))):
        pixels = [load_pixels(f.read_bytes(), pre) for f in files]
        assert all(p.dtype == np.uint8 and p.shape == (pre.input_size, pre.input_size, 3) for p in pixels)
        batch = pre.batch(pixels)
        assert batch.dtype == np.float32 and batch.shape == (5, 3, pre.input_size, pre.input_size)
        np.testing.assert_array_equal(batch, np.stack([preprocess_data(f.read_bytes(), pre) for f in files]))
        np.testing.assert_array_equal(batch[2], pre.fast(decode(files[2].read_bytes(), max_side=draft_side(pre))))
        img = Image.fromarray(pixels[0])
        np.testing.assert_allclose(batch[0], normalize(img, pre), atol=1e-6)  # the reference normalisation
    assert pre.batch([]).shape == (0, 3, pre.input_size, pre.input_size)


@pytest.mark.parametrize("streams,loaders", [(1, 4), (2, 4), (2, 0)])
def test_pipeline_keeps_order_and_reports_errors_with_several_loaders(streams, loaders):
    rnd = random.Random(0)
    delays = [rnd.random() * 0.004 for _ in range(103)]
    threads_seen: set[str] = set()

    def load(i: int) -> np.ndarray:
        threads_seen.add(threading.current_thread().name)
        time.sleep(delays[i])  # finish out of order
        if i % 10 == 3:
            raise ImageError(f"bad {i}")
        if i % 17 == 5:
            raise ValueError("a loader bug")  # must not take the run down
        return np.full((2,), i, np.float32)

    batches = []

    def forward(batch: np.ndarray):
        batches.append(len(batch))
        time.sleep(0.002)  # concurrent streams finish out of order too
        return [batch * 2, batch[:, :1]]

    out = list(run_batched(range(103), load, forward, batch_size=8, loaders=loaders, streams=streams))
    assert [i for i, _ in out] == list(range(103))
    for i, res in out:
        if i % 10 == 3:
            assert isinstance(res, ImageError) and res.reason == f"bad {i}"
        elif i % 17 == 5:
            assert isinstance(res, ImageError) and "ValueError" in res.reason
        else:
            assert res[0].tolist() == [2 * i, 2 * i] and res[1].tolist() == [i]
    assert max(batches) <= 8 and sum(batches) == sum(1 for _, r in out if not isinstance(r, ImageError))
    kinds = {t.split("_")[0] for t in threads_seen}
    if loaders:  # loading threads, never more than cores
        assert kinds == {"imgclf-decode"}
        assert 1 <= len(threads_seen) <= cpu_count()
    else:  # loaders=0: each stream loads its own batch
        assert kinds == {"imgclf-infer"} and 1 <= len(threads_seen) <= min(streams, cpu_count())


@pytest.mark.parametrize("streams,loaders", [(1, 2), (2, 2), (2, 0)])
def test_pipeline_streams_in_bounded_memory_and_stops_early(streams, loaders):
    pulled = 0
    consumed = 0
    most_ahead = 0

    def items():
        nonlocal pulled, most_ahead
        for i in range(10_000):
            pulled += 1
            most_ahead = max(most_ahead, pulled - consumed)
            yield i

    def forward(batch):
        return [batch]

    batch = 16
    for i, _ in run_batched(items(), lambda i: np.zeros(4, np.float32), forward, batch, loaders, streams=streams):
        consumed += 1
        if consumed == 500:
            break
    # queued loads + the batches in inference (one more when streams load their own) + the batch being consumed
    assert most_ahead <= 2 * batch + loaders + (streams + 1 + (loaders == 0)) * batch + 1
    assert pulled < 600


def test_forward_errors_reach_the_caller():
    def forward(batch):
        raise RuntimeError("inference failed")

    with pytest.raises(RuntimeError, match="inference failed"):
        list(run_batched(range(10), lambda i: np.zeros(2, np.float32), forward, 4))


def test_session_never_spins_and_never_oversubscribes(cache_dir):
    from imgclf.backbones import resolve

    sess = create_session(resolve(cache_dir=cache_dir).onnx_path, threads=64)
    opts = sess.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.intra_op_num_threads == cpu_count()


def test_predict_on_a_jpeg_loads_no_heif_plugin(trained_model):
    """The usual formats open with Pillow's common plugins only (lazy imports keep predict fast)."""
    photo = next(PHOTOS.glob("*/*.jpg"))
    code = (
        "import sys, imgclf\n"
        f"m = imgclf.load({str(trained_model)!r})\n"
        f"p = m.predict([{str(photo)!r}])\n"
        "assert p[0].label, p\n"
        "assert 'pillow_heif' not in sys.modules, 'pillow_heif imported for a JPEG'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_quantize_flag_builds_a_cached_int8_backbone(cache_dir, tmp_path, monkeypatch):
    """--quantize: an int8 backbone keyed apart from the float one, cached, close to it; refused with --fine-tune."""
    import onnx

    from imgclf.backbones import resolve
    from imgclf.data import scan_labelled

    data = copy_photos(tmp_path / "photos", per_label=4)
    out = tmp_path / "model"
    result = run_cli("train", str(data), "-o", str(out), "-q", "--quantize")
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "imgclf.json").read_text())
    assert meta["backbone"]["quantization"] == "int8"

    fp = resolve(cache_dir=cache_dir)
    train_photos = [p.path for p in scan_labelled(data, 0.1, 0.1).photos if p.split == "train"]
    import imgclf.backbones.quantize as quantize

    def rebuild(*args):
        raise AssertionError("the int8 backbone was rebuilt instead of found in the cache")

    monkeypatch.setattr(quantize, "_quantize", rebuild)
    q = resolve(cache_dir=cache_dir, quantize=True, calibration=train_photos)
    assert q.id == meta["backbone"]["id"] and q.id.startswith(fp.id + "-int8") and q.quantization == "int8"
    ops = {n.op_type for n in onnx.load(str(q.onnx_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops

    x = np.stack([preprocess_data(p.read_bytes(), fp.preprocessing) for p in train_photos[:8]])
    e_fp, e_q = (create_session(b.onnx_path).run(None, {"input": x})[0] for b in (fp, q))
    assert cosine(e_fp, e_q).mean() > 0.95

    pred = run_cli("predict", str(out), str(next((data / "roses").iterdir())), "--format", "json")
    assert pred.returncode == 0, pred.stderr
    assert json.loads(pred.stdout)[0]["label"]

    with pytest.raises(ImgclfError, match="readable training photos"):
        resolve(cache_dir=cache_dir, quantize=True, calibration=[])
    refused = run_cli("train", str(data), "-o", str(tmp_path / "m2"), "-q", "--quantize", "--fine-tune")
    assert refused.returncode == 2 and "--quantize and --fine-tune cannot be combined" in refused.stderr
