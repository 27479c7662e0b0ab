"""The default install has no torch (issue 16): train, predict, evaluate, embed and serve in processes
where importing torch or timm fails; and the shipped ONNX backbone equals a fresh export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from tests.conftest import PHOTOS, UNSEEN, copy_photos

BLOCKED = ("torch", "timm", "torchvision", "safetensors", "onnxscript")


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory) -> dict:
    """An environment in which ``import torch`` (and timm …) raises ImportError, with an empty cache of its own."""
    root = tmp_path_factory.mktemp("no-torch")
    for name in BLOCKED:
        (root / "blocked" / name).mkdir(parents=True)
        (root / "blocked" / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed (blocked by the test)')\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "blocked"), os.environ.get("PYTHONPATH", "")]),
            "IMGCLF_CACHE_DIR": str(root / "cache")}


def imgclf(env: dict, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imgclf.cli", *args], capture_output=True, text=True, env=env, timeout=300, **kw)


def test_the_blocker_blocks(no_torch):
    r = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, env=no_torch)
    assert r.returncode == 1 and "blocked by the test" in r.stderr


def test_train_predict_evaluate_embed_without_torch(no_torch, tmp_path):
    data = copy_photos(tmp_path / "data", per_label=6)
    model = tmp_path / "model"
    r = imgclf(no_torch, "train", str(data), "-o", str(model))
    assert r.returncode == 0, r.stderr
    assert "exporting backbone" not in r.stderr + r.stdout  # the shipped export, nothing built
    meta = json.loads((model / "imgclf.json").read_text())
    assert meta["backbone"]["id"] == "efficientnet_lite0-579344248a93e230-e1" and "torch" not in meta["versions"]
    r = imgclf(no_torch, "predict", str(model), str(UNSEEN), "-f", "json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)) == 10
    r = imgclf(no_torch, "evaluate", str(model), str(UNSEEN))
    assert r.returncode == 0 and r.stdout.startswith("accuracy: "), r.stderr
    r = imgclf(no_torch, "embed", str(data), "-o", str(tmp_path / "e.jsonl"), "-q")
    assert r.returncode == 0, r.stderr


def test_serve_without_torch(no_torch, trained_model, tmp_path):
    from tests.test_serve import free_port

    port = free_port()
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "imgclf.cli", "serve", str(trained_model), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=no_torch)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(150):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        photo = next((UNSEEN / "tulips").iterdir())
        r = httpx.post(url + "/predict", content=photo.read_bytes(), timeout=30)
        assert r.status_code == 200 and r.json()["label"], (tmp_path / "serve.log").read_text()
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("args, extra", [
    (("--fine-tune",), "--fine-tune needs torch: pip install 'imgclf[torch]'"),
    (("--backbone", "resnet18"), "backbone resnet18 is built with torch and timm: pip install 'imgclf[torch]'"),
])
def test_what_needs_torch_says_which_extra(no_torch, tmp_path, args, extra):
    data = copy_photos(tmp_path / "data", per_label=3)
    r = imgclf(no_torch, "train", str(data), "-o", str(tmp_path / "m"), *args)
    assert r.returncode == 2 and r.stderr.strip() == f"error: {extra}", r.stderr


def test_shipped_backbone_equals_a_fresh_export(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("timm")
    import onnxruntime as ort

    from imgclf.backbones import SHIPPED_DIR, builtin_weights_file
    from imgclf.backbones.torch_export import export_backbone
    from imgclf.runtime.loader import load_pixels
    from imgclf.runtime.preprocessing import Preprocessing

    export_backbone("tf_efficientnet_lite0", builtin_weights_file("efficientnet_lite0"), tmp_path / "fresh", builtin=True)
    pre = Preprocessing()
    photos = sorted(PHOTOS.rglob("*.jpg"))[::7] + sorted(UNSEEN.rglob("*.jpg"))[:2]
    batch = pre.batch([load_pixels(p.read_bytes(), pre) for p in photos])
    outs = []
    for onnx_path in (SHIPPED_DIR / "efficientnet_lite0" / "backbone.onnx", tmp_path / "fresh" / "backbone.onnx"):
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        outs.append(session.run(None, {session.get_inputs()[0].name: batch})[0])
    assert outs[0].shape == (len(photos), 1280)
    assert np.abs(outs[0] - outs[1]).max() <= 1e-5
    shipped = json.loads((SHIPPED_DIR / "efficientnet_lite0" / "backbone.json").read_text())
    fresh = json.loads((tmp_path / "fresh" / "backbone.json").read_text())
    assert shipped["preprocessing"] == fresh["preprocessing"] and shipped["dim"] == fresh["dim"]
