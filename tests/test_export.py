"""``imgclf export``: TensorFlow Lite and SavedModel files that answer as ``model.onnx`` does, proven on photos."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import UNSEEN

runner = CliRunner()
needs_tf = pytest.mark.skipif(
    any(__import__("importlib").util.find_spec(m) is None for m in ("onnx2tf", "tensorflow", "ai_edge_litert")),
    reason="needs the tflite extra: pip install -e '.[tflite]'")


def _cli(*args: str):
    from imgclf.cli import app

    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def exported(trained_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported")
    tflite = _cli("export", str(trained_model), "--format", "tflite", "-o", str(out / "flowers.tflite"), "-q")
    assert tflite.exit_code == 0, tflite.output
    return out, tflite.output


def _reference(model_dir, photos):
    import imgclf

    model = imgclf.load(model_dir)
    return {str(p): pred for p, pred in zip(photos, model.predict(photos, top_k=5, reject=False))}


@needs_tf
def test_tflite_export_carries_the_classifier_and_says_how_to_feed_it(exported, trained_model):
    out, printed = exported
    meta = json.loads((out / "flowers.tflite.json").read_text())
    model = json.loads((trained_model / "imgclf.json").read_text())
    assert meta["labels"] == model["labels"] and meta["threshold"] == pytest.approx(model["rejection"]["threshold"])
    assert meta["input"] == {"name": "input", "shape": [1, 224, 224, 3], "layout": "NHWC", "dtype": "float32"}
    assert meta["preprocessing"]["mean"] == [0.5, 0.5, 0.5] and meta["preprocessing"]["resize_to"] == 256
    assert meta["parity"]["passed"] and meta["parity"]["photos"] >= 10 and meta["parity"]["max_probability_diff"] <= 1e-3
    assert "largest probability difference" in printed and "best label agrees on 100.0%" in printed


@needs_tf
def test_the_model_cards_tflite_snippet_runs_and_agrees_with_imgclf(exported, trained_model, tmp_path):
    out, _ = exported
    card = (trained_model / "README.md").read_text()
    section = card.split("### TensorFlow Lite", 1)[1]
    script = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "predict_tflite.py").write_text(script)
    photos = sorted(UNSEEN.rglob("*.jpg"))[:3]
    want = _reference(trained_model, photos)
    for photo in photos:
        got = subprocess.run([sys.executable, str(tmp_path / "predict_tflite.py"), str(out / "flowers.tflite"), str(photo)],
                             capture_output=True, text=True, timeout=120)
        assert got.returncode == 0, got.stderr
        rows = [line.split("\t") for line in got.stdout.splitlines() if not line.startswith("unknown")]
        assert rows[0][0] == want[str(photo)].top_k[0]["label"]
        for label, p in rows:
            expected = next(t["confidence"] for t in want[str(photo)].top_k if t["label"] == label)
            assert float(p) == pytest.approx(expected, abs=1e-3)


@needs_tf
def test_a_tampered_export_fails_its_check_and_leaves_nothing(trained_model, tmp_path, monkeypatch):
    """The check is real: a .tflite whose weights were changed after converting is refused (exit 1, no file at -o)."""
    from imgclf.exports import convert as conversion

    real = conversion.convert

    def tampered(*args, **kwargs):
        done = real(*args, **kwargs)
        data = bytearray(done.tflite.read_bytes())
        middle = len(data) // 2  # inside the weights (the file is 13 MB of them)
        data[middle:middle + 400_000] = bytes(400_000)
        done.tflite.write_bytes(bytes(data))
        return done

    monkeypatch.setattr(conversion, "convert", tampered)
    target = tmp_path / "out" / "flowers.tflite"
    result = _cli("export", str(trained_model), "--format", "tflite", "-o", str(target), "-q")
    assert result.exit_code == 1, result.output
    assert "does not answer as model.onnx does" in result.output and "nothing was written" in result.output
    assert not target.exists() and not target.with_suffix(".tflite.json").exists()
    assert list((tmp_path / "out").iterdir()) == []  # no temporary folder left either


@needs_tf
def test_saved_model_loads_in_tensorflow_and_in_keras_3(trained_model, exported, tmp_path):
    import keras
    import tensorflow as tf

    from imgclf.runtime.images import load_image
    from imgclf.runtime.model import Model

    result = _cli("export", str(trained_model), "--format", "saved_model", "-o", str(tmp_path / "sm"), "-q")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "sm" / "assets" / "imgclf.json").read_text())
    model = Model.load(trained_model)
    photos = sorted(UNSEEN.rglob("*.jpg"))[:4]
    x = model.preprocessing.batch([model.preprocessing.pixels(load_image(p)) for p in photos])
    want = model.run(x, ["probabilities", "similarity"])
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    served = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"](input=tf.constant(nhwc))
    layer = keras.layers.TFSMLayer(str(tmp_path / "sm"), call_endpoint="serving_default")(nhwc)
    for out in (served, layer):
        assert np.abs(np.asarray(out["probabilities"]) - want["probabilities"]).max() <= 1e-4
        assert np.abs(np.asarray(out["similarity"]) - want["similarity"]).max() <= 1e-4
    assert meta["input"]["layout"] == "NHWC" and meta["format"] == "saved_model"
    # the recipe the TensorFlow Lite sidecar gives, which test_one_photo_is_prepared_alike_... follows from the sidecar alone
    assert meta["preprocessing"] == json.loads((exported[0] / "flowers.tflite.json").read_text())["preprocessing"]


@needs_tf
def test_int8_tflite_is_smaller_and_agrees_on_the_best_label(trained_model, exported, tmp_path):
    out, _ = exported
    result = _cli("export", str(trained_model), "--format", "tflite", "--int8", "-o", str(tmp_path / "int8.tflite"), "-q")
    assert result.exit_code == 0, result.output
    parity = json.loads((tmp_path / "int8.tflite.json").read_text())["parity"]
    assert parity["int8"] and parity["top1_agreement"] >= 0.98
    assert (tmp_path / "int8.tflite").stat().st_size < (out / "flowers.tflite").stat().st_size / 3


def test_onnx_export_and_the_guards(trained_model, tmp_path):
    """Without TensorFlow: the portable ONNX graph passes its check; foreign files are never replaced; wrong options are one line."""
    import imgclf

    assert callable(imgclf.export)  # the Python verb
    target = tmp_path / "flowers.onnx"
    assert _cli("export", str(trained_model), "--format", "onnx", "-o", str(target), "--check-photos", str(UNSEEN), "-q").exit_code == 0
    assert json.loads((tmp_path / "flowers.onnx.json").read_text())["parity"]["photos"] == len(list(UNSEEN.rglob("*.jpg")))
    import onnx

    graph = onnx.load(str(target))
    onnx.checker.check_model(graph, full_check=True)  # valid ONNX, shapes included
    assert [o.name for o in graph.graph.output] == ["probabilities", "similarity", "embedding"]
    again = _cli("export", str(trained_model), "--format", "onnx", "-o", str(target), "-q")  # its own: replaced
    assert again.exit_code == 0
    foreign = tmp_path / "mine.tflite"
    foreign.write_bytes(b"a file of the user's")
    refused = _cli("export", str(trained_model), "--format", "onnx", "-o", str(foreign), "-q")
    assert refused.exit_code == 2 and "was not written by imgclf" in refused.output and foreign.read_bytes() == b"a file of the user's"
    assert _cli("export", str(trained_model), "--format", "onnx", "--int8", "-o", str(tmp_path / "x.onnx")).exit_code == 2


def test_missing_converter_is_one_line_naming_the_extra(trained_model, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx2tf" else real(name, *a))
    result = _cli("export", str(trained_model), "--format", "tflite", "-o", str(tmp_path / "m.tflite"))
    assert result.exit_code == 2 and "pip install 'imgclf[tflite]'" in result.output and "Traceback" not in result.output


def test_face_models_are_refused_with_the_reason():
    from imgclf.errors import ImgclfError
    from imgclf.exports import _refuse_faces

    face = SimpleNamespace(preprocessing=SimpleNamespace(crop="face_chip"), meta={"backbone": {"name": "face"}})
    with pytest.raises(ImgclfError, match="dlib's face detector"):
        _refuse_faces(face)


@needs_tf
def test_one_photo_is_prepared_alike_by_train_predict_serve_and_every_export(trained_model, exported, tmp_path):
    """The test-time preprocessing (resize the shorter side, centre crop, normalise) is one: the embedding training
    stores, the answer of ``predict`` (files and decoded images), of the HTTP API, and of the ONNX and TensorFlow Lite
    exports fed by the recipe their sidecars describe, written here from the sidecar alone, agree on the same photos."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter
    from fastapi.testclient import TestClient
    from PIL import Image, ImageOps

    import imgclf
    from imgclf.backbones import resolve
    from imgclf.embeddings import embed_files
    from imgclf.serve.app import create_app

    out, _ = exported
    assert _cli("export", str(trained_model), "--format", "onnx", "-o", str(tmp_path / "m.onnx"), "-q").exit_code == 0
    recipe = json.loads((tmp_path / "m.onnx.json").read_text())["preprocessing"]
    assert recipe == json.loads((out / "flowers.tflite.json").read_text())["preprocessing"]

    def prepared(path) -> np.ndarray:
        """The sidecar's recipe, NCHW, as a user outside imgclf would write it."""
        img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        scale = recipe["resize_to"] / min(img.size)
        img = img.resize((int(img.width * scale), int(img.height * scale)), Image.Resampling.BICUBIC)
        left, top = round((img.width - recipe["input_size"]) / 2), round((img.height - recipe["input_size"]) / 2)
        img = img.crop((left, top, left + recipe["input_size"], top + recipe["input_size"]))
        x = (np.asarray(img, np.float32) / 255 - np.array(recipe["mean"], np.float32)) / np.array(recipe["std"], np.float32)
        return x.transpose(2, 0, 1)[None]

    photos = sorted(UNSEEN.rglob("*.jpg"))[:4]
    model = imgclf.load(trained_model)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    tflite = Interpreter(model_path=str(out / "flowers.tflite"))
    tflite.allocate_tensors()
    stored = embed_files(photos, resolve(), None).vectors  # what train computes and stores
    with TestClient(create_app(trained_model)) as client:
        for i, photo in enumerate(photos):
            x = prepared(photo)
            probs, _, embedding = session.run(["probabilities", "similarity", "embedding"], {"input": x})
            tflite.set_tensor(tflite.get_input_details()[0]["index"], np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
            tflite.invoke()
            lite = next(tflite.get_tensor(d["index"]) for d in tflite.get_output_details() if d["shape"][-1] == len(model.labels))
            answers = {"predict": model.predict([photo], top_k=5, reject=False)[0],
                       "a decoded image": model.predict_image(Image.open(photo).convert("RGB"), top_k=5, reject=False)}
            served = client.post("/predict", files={"file": (photo.name, photo.read_bytes())}, params={"top_k": 5}).json()
            assert np.abs(embedding[0] - stored[i]).max() <= 1e-3 * np.abs(stored[i]).max()
            assert np.abs(lite[0] - probs[0]).max() <= 1e-3
            for how, answer in answers.items():
                got = {t["label"]: t["confidence"] for t in answer.top_k}
                assert max(abs(got[lab] - probs[0][j]) for j, lab in enumerate(model.labels)) <= 1e-3, how
            got = {t["label"]: t["confidence"] for t in served["top_k"]}
            assert max(abs(got[lab] - probs[0][j]) for j, lab in enumerate(model.labels)) <= 1e-3
