"""Any timm backbone with a local weights file, and clear errors when there are no weights."""

import json

import pytest

from imgclf.errors import ImgclfError
from tests.conftest import LABELS, UNSEEN, copy_photos, run_cli


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    """A state dict of a randomly initialised timm inception_v3, as a user would pass with --weights."""
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "inception_v3_random.pth"
    torch.save(timm.create_model("inception_v3", pretrained=False).state_dict(), path)
    return path


def test_inception_v3_with_weights_file_end_to_end(tmp_path, cache_dir, inception_weights):
    data = copy_photos(tmp_path / "data", per_label=4, labels=LABELS[:3])
    out = tmp_path / "model"
    r = run_cli("train", str(data), "-o", str(out), "--backbone", "inception_v3", "--weights", str(inception_weights), "-q")
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "imgclf.json").read_text())
    assert meta["backbone"]["timm_name"] == "inception_v3" and meta["backbone"]["dim"] == 2048
    assert meta["preprocessing"]["input_size"] == 299  # inception's own preprocessing
    assert meta["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    p = run_cli("predict", str(out), str(UNSEEN / "daisy"), "-f", "json")
    assert p.returncode == 0, p.stderr
    preds = json.loads(p.stdout)
    assert len(preds) == 2 and all(x["label"] in LABELS[:3] for x in preds)


def test_weights_that_do_not_fit(tmp_path, cache_dir, inception_weights):
    from imgclf.backbones import resolve

    with pytest.raises(ImgclfError, match="do not fit"):
        resolve("resnet18", weights=inception_weights, cache_dir=tmp_path)


def test_no_weights_offline_is_a_clear_error(tmp_path, cache_dir, monkeypatch):
    from imgclf.backbones import resolve

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ImgclfError, match="--weights"):
        resolve("resnet18", cache_dir=tmp_path)


def test_unknown_backbone_name(tmp_path):
    from imgclf.backbones import resolve

    with pytest.raises(ImgclfError, match="unknown backbone"):
        resolve("no_such_net_v9", cache_dir=tmp_path)


def test_pickled_code_in_weights_is_refused(tmp_path):
    """A weights file that would run code when unpickled is refused (weights_only)."""
    import pickle

    from imgclf.backbones import resolve

    class Evil:
        def __reduce__(self):
            return (exec, ("open('/tmp/imgclf_pwned','w').write('x')",))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"conv.weight": Evil()}))
    with pytest.raises(ImgclfError, match="safely"):
        resolve("resnet18", weights=path, cache_dir=tmp_path)
    import os

    assert not os.path.exists("/tmp/imgclf_pwned")


def test_safetensors_weights(tmp_path):
    pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    from imgclf.backbones import resolve

    model = timm.create_model("resnet18", pretrained=False, num_classes=0)
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    bb = resolve("resnet18", weights=path, cache_dir=tmp_path)
    assert bb.dim == 512 and bb.onnx_path.is_file()
    again = resolve("resnet18", weights=path, cache_dir=tmp_path)
    assert again.id == bb.id
