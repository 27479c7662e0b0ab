import shutil
from pathlib import Path

import pytest
from PIL import Image

from imgclf.data import assign_splits, scan_labelled
from imgclf.runtime.inputs import walk_files
from imgclf.errors import ImgclfError
from tests.conftest import LABELS, PHOTOS, copy_photos


def splits(root: Path) -> dict[str, str]:
    ds = scan_labelled(root, cache_root=root.parent / "cache")  # the splits remembered, as train and check do
    return {p.path.relative_to(root).as_posix(): p.split for p in ds.photos}


def test_scan_finds_labels_and_all_three_splits():
    ds = scan_labelled(PHOTOS)
    assert ds.labels == LABELS
    assert len(ds.photos) == 70
    assert {p.split for p in ds.photos} == {"train", "val", "test"}
    assert not ds.given_splits


def test_split_is_stable_when_photos_are_added(tmp_path):
    root = copy_photos(tmp_path / "data", per_label=8)
    before = splits(root)
    for lab in LABELS:  # add the rest of the photos, plus a renamed copy in a nested folder
        for f in sorted((PHOTOS / lab).iterdir())[8:]:
            shutil.copy(f, root / lab / f.name)
        (root / lab / "more" / "deeper").mkdir(parents=True)
        shutil.copy(next((PHOTOS / lab).iterdir()), root / lab / "more" / "deeper" / "extra.JPEG")
    after = splits(root)
    assert len(after) == len(before) + 6 * 5 + 5
    assert all(after[k] == v for k, v in before.items())
    assert all(f"{lab}/more/deeper/extra.JPEG" in after for lab in LABELS)


def test_split_fractions_are_respected():
    keys = [f"photo_{i}.jpg" for i in range(20000)]
    s = assign_splits(keys, 0.1, 0.2)
    assert (s.count("test"), s.count("val")) == (4000, 2000)


def test_given_splits(tmp_path):
    for split, n in (("train", 10), ("val", 3), ("test", 3)):
        copy_photos(tmp_path / split, per_label=n)
    ds = scan_labelled(tmp_path)
    assert ds.given_splits
    counts = ds.counts()
    assert counts["daisy"] == {"train": 10, "val": 3, "test": 3}


def test_given_train_without_val_carves_validation(tmp_path):
    copy_photos(tmp_path / "train")
    copy_photos(tmp_path / "test", per_label=2)
    ds = scan_labelled(tmp_path)
    c = ds.counts()
    assert sum(v["val"] for v in c.values()) > 0 and all(v["test"] == 2 for v in c.values())


def test_one_label_is_a_dataset_unless_two_are_asked_for(tmp_path):
    copy_photos(tmp_path, 3, LABELS[:1])
    assert scan_labelled(tmp_path).labels == LABELS[:1]  # a verifier's data
    with pytest.raises(ImgclfError, match="only one label"):
        scan_labelled(tmp_path, min_labels=2)


def test_split_labels_disagree(tmp_path):
    copy_photos(tmp_path / "train", per_label=3, labels=LABELS[:2])
    copy_photos(tmp_path / "val", per_label=3, labels=LABELS[:3])
    with pytest.raises(ImgclfError, match="disagree: roses in val/ only"):
        scan_labelled(tmp_path)


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda root: None, "data folder not found"),
        (lambda root: root.mkdir(), "no label folders"),
        (lambda root: (copy_photos(root, 3, LABELS[:2]), shutil.copy(next(PHOTOS.glob("daisy/*")), root / "loose.jpg")), "beside label folders"),
        (lambda root: ((root / "a").mkdir(parents=True), (root / "b").mkdir()), "no files found"),
    ],
)
def test_dataset_errors(tmp_path, setup, message):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(ImgclfError, match=message):
        scan_labelled(root)


def test_junk_is_ignored_and_symlink_loops_terminate(tmp_path):
    root = copy_photos(tmp_path / "d", per_label=2, labels=LABELS[:2])
    (root / "daisy" / ".DS_Store").write_bytes(b"junk")
    (root / "daisy" / "Thumbs.db").write_bytes(b"junk")
    (root / "daisy" / "__MACOSX").mkdir()
    (root / "daisy" / "__MACOSX" / "._x.jpg").write_bytes(b"junk")
    (root / "daisy" / "loop").symlink_to(root / "daisy")
    (root / "LICENSE.txt").write_text("not a photo, not an error")
    files = list(walk_files(root / "daisy"))
    assert len(files) == 2
    assert scan_labelled(root).labels == LABELS[:2]


def test_images_found_by_content_not_extension(tmp_path):
    root = tmp_path / "d"
    for lab in ("a", "b"):
        (root / lab).mkdir(parents=True)
        Image.new("RGB", (64, 64), "red").save(root / lab / "photo.jpg", format="PNG")
        Image.new("RGB", (64, 64), "blue").save(root / lab / "noext", format="WEBP")
    ds = scan_labelled(root)
    assert len(ds.photos) == 4
