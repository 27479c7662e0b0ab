import numpy as np
import pytest
from PIL import Image

from imgclf.runtime.preprocessing import Preprocessing, center_crop, resize_shorter
from tests.conftest import PHOTOS


def test_matches_timm_eval_transform():
    timm_data = pytest.importorskip("timm.data")
    pre = Preprocessing()
    transform = timm_data.create_transform(
        input_size=(3, 224, 224), interpolation="bicubic", mean=pre.mean, std=pre.std, crop_pct=pre.crop_pct
    )
    for path in sorted(PHOTOS.glob("*/*"))[:6]:
        img = Image.open(path).convert("RGB")
        ours = pre(img)
        theirs = transform(img).numpy()
        assert ours.shape == (3, 224, 224) and ours.dtype == np.float32
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_resize_keeps_aspect_and_crop_is_central():
    img = Image.new("RGB", (400, 200))
    assert resize_shorter(img, 256).size == (512, 256)
    marked = Image.new("RGB", (300, 256))
    marked.putpixel((38, 16), (255, 0, 0))  # the top-left corner of the central 224 x 224 square
    marked.putpixel((261, 239), (0, 255, 0))  # its bottom-right corner
    crop = center_crop(marked, 224)
    assert crop.size == (224, 224)
    assert crop.getpixel((0, 0)) == (255, 0, 0) and crop.getpixel((223, 223)) == (0, 255, 0)


def test_roundtrip_dict():
    pre = Preprocessing(input_size=299, crop_pct=0.9, interpolation="bilinear", mean=(0.1, 0.2, 0.3), std=(1, 2, 3))
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    assert pre.resize_to == 332
