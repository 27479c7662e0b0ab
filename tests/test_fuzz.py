"""Mutated real image bytes: the decoder and predict either succeed or report a skip, nothing else."""

from __future__ import annotations

import io
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from imgclf.errors import ImageError
from imgclf.runtime.images import decode
from tests.conftest import PHOTOS


def _seeds() -> list[bytes]:
    img = Image.open(sorted((PHOTOS / "tulips").iterdir())[0]).convert("RGB").resize((96, 64))
    out = []
    for fmt, kw in (("JPEG", {"quality": 80}), ("PNG", {}), ("GIF", {}), ("WEBP", {}), ("BMP", {}), ("TIFF", {})):
        buf = io.BytesIO()
        (img.convert("P") if fmt == "GIF" else img).save(buf, fmt, **kw)
        out.append(buf.getvalue())
    for mode, fmt in (("I;16", "PNG"), ("F", "TIFF")):  # high-depth images, converted in strips
        buf = io.BytesIO()
        deep = Image.fromarray((np.asarray(img.convert("L"), dtype=np.uint16) * 257)) if mode == "I;16" else img.convert("F")
        deep.save(buf, fmt)
        out.append(buf.getvalue())
    return out


SEEDS = _seeds()


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "truncate"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[pos] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80]))
        elif kind == "cut":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        elif kind == "truncate":
            del data[pos:]
    return bytes(data)


@contextmanager
def time_limit(seconds: int):
    def alarm(*_):
        raise TimeoutError(f"decoding took over {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_decoder_returns_an_image_or_a_reason(data):
    with time_limit(10):
        try:
            img = decode(data)
        except ImageError as e:
            assert e.reason
        else:
            assert img.mode == "RGB" and min(img.size) >= 16


@pytest.fixture(scope="module")
def model(trained_model):
    from imgclf.runtime.model import Model

    return Model.load(trained_model)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated(), min_size=1, max_size=4))
def test_predict_reports_every_file(model, tmp_path_factory, files):
    d = tmp_path_factory.mktemp("fuzz")
    paths = []
    for i, data in enumerate(files):
        paths.append(d / f"{i}.jpg")
        paths[-1].write_bytes(data)
    with time_limit(30):
        preds = model.predict(paths)
    assert [Path(p.path) for p in preds] == paths
    for p in preds:
        assert (p.label in [*model.labels, "unknown"] and p.error is None) or (p.label is None and p.error)



# --- the model folder's JSON files: any value is used or refused in one line ----------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["photos", "test", "val", "path", "label", "n",
                                                                                   "accuracy", "counts", "root"]), inner, max_size=4),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def loaded(trained_model):
    import imgclf

    return imgclf.load(trained_model)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(neighbors=_json_values, metrics=_json_values)
def test_any_neighbors_or_metrics_file_is_read_or_refused_in_one_line(loaded, tmp_path_factory, neighbors, metrics):
    import json
    import shutil

    from imgclf.errors import ImgclfError
    from imgclf.runtime import artifact

    folder = tmp_path_factory.mktemp("fuzzed")
    for name in ("imgclf.json", "labels.json"):
        shutil.copy(loaded.dir / name, folder / name)
    (folder / "neighbors.json").write_text(json.dumps(neighbors))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    parsed = artifact.Folder(folder, loaded.meta, loaded.labels)
    unpinned = type("Session", (), {"get_outputs": loaded._session.get_outputs, "get_modelmeta": lambda self: None})()
    for read in (lambda: artifact.read_neighbors(parsed, unpinned), lambda: artifact.read_metrics(parsed)):
        try:
            read()
        except ImgclfError as e:
            assert "\n" not in str(e) and ("damaged" in str(e) or "inconsistent" in str(e)), str(e)
