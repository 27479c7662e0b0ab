"""The studio's API in-process (FastAPI's TestClient over the real app, real photos, the real backbone): the guard
against other sites, paths that try to leave the project, journaled changes and undo, photos arriving, training
and answers, exports; and ``imgclf studio`` as a real process."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from imgclf.runtime.model import Model
from tests.conftest import LABELS, UNSEEN, copy_photos, run_cli

ROSE = sorted((UNSEEN / "roses").glob("*.jpg"))[0]
ORIGIN = "http://testserver"


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` but imgclf's own state, with its SHA-256."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".imgclf" not in p.parts}


@pytest.fixture
def studio(tmp_path, cache_dir):
    from imgclf.studio import create_studio_app

    folder = copy_photos(tmp_path / "outside" / "flowers", per_label=6, labels=LABELS[:3])
    (tmp_path / "outside" / "secret.txt").write_text("not the studio's")
    app = create_studio_app(folder, home=tmp_path / "home", allowed_hosts=["testserver", "127.0.0.1"])
    with TestClient(app) as client:
        client.headers.update({"x-studio-token": app.state.workspace.token, "origin": ORIGIN})
        client.folder = folder
        yield client


# --- nobody else in ----------------------------------------------------------------------------------------------
def test_a_change_without_the_token_or_from_another_origin_is_refused_before_it_runs(studio):
    before = tree(studio.folder)
    bare = {"origin": ORIGIN}
    assert studio.post("/api/labels", json={"name": "x"}, headers={"x-studio-token": ""}).status_code == 403
    foreign = studio.post("/api/labels", json={"name": "x"}, headers={"origin": "http://evil.example"})
    assert foreign.status_code == 403 and "Origin" in foreign.json()["detail"]
    no_origin = studio.build_request("POST", "/api/labels", json={"name": "x"})
    del no_origin.headers["origin"]
    assert studio.send(no_origin).status_code == 403
    wrong = studio.post("/api/labels/daisy/photos", files={"files": ("r.jpg", ROSE.read_bytes())},
                        headers={**bare, "x-studio-token": "guess"})
    assert wrong.status_code == 403 and "token" in wrong.json()["detail"]
    assert tree(studio.folder) == before and not (studio.folder / "x").exists()
    assert studio.get("/api/labels", headers={"host": "evil.example"}).status_code == 400  # DNS rebinding
    page = studio.get("/")
    assert studio.headers["x-studio-token"] in page.text and "default-src 'self'" in page.headers["content-security-policy"]
    photo = sorted((studio.folder / "daisy").iterdir())[0].relative_to(studio.folder).as_posix()
    shown = studio.get("/api/photo", params={"path": photo})
    assert shown.status_code == 200 and shown.headers["cross-origin-resource-policy"] == "same-origin"  # no <img> elsewhere


def test_no_path_a_request_names_leads_out_of_the_project(studio, tmp_path):
    outside = tmp_path / "outside"
    os.symlink(outside, studio.folder / "escape")  # a label folder that is a link out of the project
    before = tree(outside)
    for path in ("../secret.txt", "/etc/passwd", "daisy/../../secret.txt", ".imgclf/project.json", "escape/secret.txt"):
        assert studio.get("/api/photo", params={"path": path}).status_code == 404, path
        assert studio.post("/api/photos/remove", json={"paths": [path]}).status_code == 409, path
        assert studio.post("/api/photos/move", json={"paths": [path], "label": "daisy"}).status_code == 409, path
    for name in ("..", "../up", ".hidden", "a/b", "train"):
        assert studio.post("/api/labels", json={"name": name}).status_code == 409, name
    assert studio.delete("/api/labels/escape").status_code == 409
    assert studio.post("/api/labels/escape/rename", json={"name": "moved"}).status_code == 409
    assert studio.post("/api/labels/escape/photos", files={"files": ("r.jpg", ROSE.read_bytes())}).status_code == 409
    assert tree(outside) == before and (outside / "secret.txt").read_text() == "not the studio's"


# --- changes, journal, undo --------------------------------------------------------------------------------------
def test_every_change_is_journaled_and_undo_puts_every_file_back(studio):
    root = studio.folder
    before = tree(root)
    daisy = sorted((root / "daisy").iterdir())[0].relative_to(root).as_posix()
    steps = [
        lambda: studio.post("/api/labels", json={"name": "lilies"}),
        lambda: studio.post("/api/labels/lilies/photos", files=[("files", ("a.jpg", ROSE.read_bytes()))]),
        lambda: studio.post("/api/labels/roses/rename", json={"name": "rosa"}),
        lambda: studio.post("/api/photos/move", json={"paths": [daisy], "label": "rosa"}),
        lambda: studio.post("/api/photos/remove", json={"paths": ["rosa/" + daisy.split("/")[1]]}),
        lambda: studio.delete("/api/labels/lilies"),
    ]
    for step in steps:
        r = step()
        assert r.status_code == 200, r.text
    assert {lab["name"] for lab in studio.get("/api/labels").json()["labels"]} == {"daisy", "dandelion", "rosa"}
    assert studio.get("/api/labels").json()["trash"] == 2  # the removed photo and the removed label's photo
    history = studio.get("/api/history").json()["changes"]
    assert [c["summary"] for c in history][:2] == ["removed label lilies (its photos are in the trash)",
                                                   "removed 1 photo (they are in the trash)"]
    for _ in steps:
        assert studio.post("/api/undo").status_code == 200
    assert tree(root) == before  # every photo where it was, nothing added, nothing lost
    assert studio.post("/api/undo").json()["detail"] == "nothing to undo"
    # the added photo went to the trash on undo, not away: only "empty the trash" deletes, and only the trash
    assert studio.get("/api/labels").json()["trash"] == 1
    assert studio.post("/api/trash/empty").json() == {"deleted": 1}
    assert tree(root) == before and not (root / ".imgclf" / "trash").exists()


def test_photos_arrive_under_new_names_with_unreadable_files_and_copies_reported(studio):
    rose = ROSE.read_bytes()
    other = sorted((UNSEEN / "tulips").glob("*.jpg"))[0].read_bytes()
    existing = sorted((studio.folder / "daisy").iterdir())[0]
    r = studio.post("/api/labels/roses/photos", params={"source": "camera"}, files=[
        ("files", ("same.jpg", rose)), ("files", ("same.jpg", other)), ("files", ("notes.txt", b"not a photo")),
        ("files", ("again.jpg", rose)), ("files", ("daisy-copy.jpg", existing.read_bytes())),
        ("files", ("cut.jpg", rose[: len(rose) // 3]))]).json()
    by_name = [(a["name"], a["saved"]) for a in r["arrivals"]]
    assert by_name == [("same.jpg", True), ("same.jpg", True), ("notes.txt", False), ("again.jpg", False),
                       ("daisy-copy.jpg", True), ("cut.jpg", False)]
    first, second, text, again, copy, cut = r["arrivals"]
    assert first["path"] != second["path"] and first["path"].startswith("roses/same-")  # names cannot collide
    assert "not an image" in text["reason"] and again["reason"] == "already in roses"
    assert copy["copy_of"] == existing.relative_to(studio.folder).as_posix()
    assert cut["reason"]  # a truncated JPEG is refused with its reason
    assert (studio.folder / first["path"]).read_bytes() == rose
    assert r["change"]["summary"] == "added 3 photos to roses from camera"
    assert not [p for p in (studio.folder / "roses").iterdir() if p.name.startswith(".")]  # no temporary left
    # a near copy of a photo that was there before (smaller, recompressed) is saved and flagged, as check would
    from PIL import Image

    daisy = sorted((studio.folder / "daisy").iterdir())[1]
    buf = io.BytesIO()
    with Image.open(daisy) as im:
        im.convert("RGB").resize((im.width * 3 // 4, im.height * 3 // 4)).save(buf, "JPEG", quality=70)
    near = studio.post("/api/labels/roses/photos", files={"files": ("near.jpg", buf.getvalue())}).json()["arrivals"][0]
    assert near["saved"] and near["like"] == daisy.relative_to(studio.folder).as_posix() and "copy_of" not in near


def test_a_label_is_paged_newest_first_and_an_upload_over_the_limit_is_refused(studio, tmp_path):
    from imgclf.studio import create_studio_app

    page = studio.get("/api/labels/daisy/photos", params={"offset": 4, "limit": 4}).json()
    assert page["total"] == 6 and len(page["photos"]) == 2
    small = create_studio_app(studio.folder, home=tmp_path / "home", max_upload_mb=0.05)
    with TestClient(small) as c:
        c.headers.update({"x-studio-token": small.state.workspace.token, "origin": ORIGIN})
        assert c.post("/api/labels/daisy/photos", files={"files": ("big.jpg", b"\xff" * 200_000)}).status_code == 413


# --- training and answers -----------------------------------------------------------------------------------------
def test_train_then_answer_correct_and_export_from_the_api(studio):
    assert studio.post("/api/predict", files={"file": ("r.jpg", ROSE.read_bytes())}).status_code == 409
    assert studio.get("/api/results").json() == {"model": False}
    trainer = studio.app.state.workspace.trainer
    assert studio.post("/api/train").json()["state"] == "running"
    assert studio.post("/api/train").status_code == 409  # one run at a time
    trainer.wait(120)
    done = studio.get("/api/train").json()
    assert done["state"] == "done" and done["photos"] == 18, done
    results = studio.get("/api/results").json()
    est = results["estimate"]
    assert 0 < est["low"] <= est["accuracy"] <= est["high"] <= 1 and results["labels"] == LABELS[:3]
    assert [p["label"] for p in results["per_label"]] == LABELS[:3]
    assert results["label_sets"] is True and results["advice"] is None  # 6 photos a label: too few for a learning curve
    answer = studio.post("/api/predict", params={"neighbors": 2, "explain": True, "error_rate": 0.05},
                         files={"file": ("r.jpg", ROSE.read_bytes())}).json()
    assert answer["label"] == "roses" and len(answer["neighbors"]) == 2 and answer["set"][0] == "roses"
    assert answer["explanation"]["heatmap"].startswith("data:image/png;base64,")  # "show where it looked"
    assert all(not n["path"].startswith("/") for n in answer["neighbors"])  # relative: the page shows them
    assert studio.get("/api/photo", params={"path": answer["neighbors"][0]["path"]}).headers["content-type"] == "image/jpeg"
    # the correction loop: the answered photo goes into a label, and the next training counts it
    assert studio.post("/api/labels/roses/photos", params={"source": "a correction"},
                       files={"files": ("correction.jpg", ROSE.read_bytes())}).json()["change"]
    studio.post("/api/train")
    trainer.wait(120)
    assert studio.get("/api/train").json()["photos"] == 19
    # the model folder as a zip that loads and answers the same
    z = zipfile.ZipFile(io.BytesIO(studio.get("/api/export/model.zip").content))
    assert "flowers-model/model.onnx" in z.namelist()
    exports = studio.get("/api/export").json()
    assert exports["command"].startswith("imgclf train ") and exports["formats"]["onnx"]
    onnx = studio.post("/api/export/onnx").json()
    assert onnx["parity"]["passed"] and onnx["parity"]["top1_agreement"] == 1.0
    assert len(studio.get(onnx["download"]).content) == onnx["size"]
    assert studio.get("/api/export/file/..%2F..%2Fsecret.txt").status_code == 404
    from imgclf.studio.routes.exports import converter_available

    if converter_available():  # the tflite extra (make test installs it)
        lite = studio.post("/api/export/tflite").json()
        assert lite["parity"]["passed"] and lite["name"].endswith(".tflite")
        assert studio.get(lite["download"]).content[4:8] == b"TFL3"  # a TensorFlow Lite flatbuffer


def test_a_finding_fixed_or_kept_from_its_card_is_not_shown_again(tmp_path, cache_dir):
    from imgclf.project.places import relative
    from imgclf.studio import create_studio_app

    app = create_studio_app(copy_photos(tmp_path / "all"), home=tmp_path / "home")
    with TestClient(app) as c:
        c.headers.update({"x-studio-token": app.state.workspace.token, "origin": ORIGIN})
        c.post("/api/train")
        app.state.workspace.trainer.wait(120)
        findings = c.get("/api/results").json()["findings"]
        assert {"label_error", "outlier"} <= {f["kind"] for f in findings}  # the bundled example's known findings
        for f in findings:
            relative(f["path"])  # every path relative, inside the project
        wrong = next(f for f in findings if f["kind"] == "label_error")
        odd = next(f for f in findings if f["kind"] == "outlier")
        moved = c.post("/api/photos/move", json={"paths": [wrong["path"]], "label": wrong["suggested"]}).json()
        assert moved["change"]["moves"] == [[wrong["path"], f"{wrong['suggested']}/{wrong['path'].split('/')[1]}"]]
        assert c.post("/api/findings/keep", json={"path": odd["path"], "kind": odd["kind"]}).json() == {"kept": 1}
        left = {(g["path"], g["kind"]) for g in c.get("/api/results").json()["findings"]}
        assert (wrong["path"], "label_error") not in left and (odd["path"], "outlier") not in left
        assert len(left) == len(findings) - 2


def test_the_landing_page_makes_and_opens_projects_only_where_it_should(tmp_path, cache_dir):
    from imgclf.studio import create_studio_app

    app = create_studio_app(None, home=tmp_path / "home")
    with TestClient(app) as c:
        c.headers.update({"x-studio-token": app.state.workspace.token, "origin": ORIGIN})
        assert c.get("/api/project").json()["open"] is False
        assert c.get("/api/labels").status_code == 409
        made = c.post("/api/projects", json={"name": "pets", "kind": "verifier", "label": "my-cat"}).json()
        assert made["kind"] == "verifier" and Path(made["path"]) == tmp_path / "home" / "pets"
        assert [lab["name"] for lab in c.get("/api/labels").json()["labels"]] == ["my-cat"]
        assert c.post("/api/projects", json={"name": "../escape", "kind": "objects"}).status_code == 409
        faces = c.post("/api/projects", json={"name": "people", "kind": "faces"}).json()
        assert faces["backbone"] == "face"
        listed = [p["path"] for p in c.get("/api/projects").json()["projects"]]
        assert listed[:2] == [str(tmp_path / "home" / "people"), str(tmp_path / "home" / "pets")]
        assert c.post("/api/projects/open", json={"path": listed[1]}).json()["name"] == "pets"
        assert c.post("/api/projects/open", json={"path": str(tmp_path)}).status_code == 404
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == ["people", "pets"]
    split = copy_photos(tmp_path / "split" / "train", per_label=2, labels=LABELS[:2]).parent
    refused = run_cli("studio", str(split))
    assert refused.returncode == 2 and "split into train/ val/ test/" in refused.stderr and "Traceback" not in refused.stderr
    assert not (split / ".imgclf").exists()


# --- one project, several writers ----------------------------------------------------------------------------------
def test_the_command_line_cannot_train_a_project_the_studio_is_training(tmp_path, cache_dir):
    from imgclf.project import Project
    from imgclf.project.places import ProjectLock

    folder = copy_photos(tmp_path / "p", per_label=5, labels=LABELS[:2])
    project = Project.open(folder)
    project.state_dir.mkdir()
    with ProjectLock(project.state_dir, "train").held():
        r = run_cli("train", str(folder), "-o", str(tmp_path / "m"), "-q")
    assert r.returncode == 2 and "is being trained already" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "m").exists()


def test_imgclf_studio_runs_on_loopback_and_opens_a_folder_in_place(tmp_path, cache_dir):
    import signal
    import subprocess
    import sys
    import time

    from tests.test_serve import free_port

    folder = copy_photos(tmp_path / "mine", per_label=3, labels=LABELS[:2])
    before = tree(folder)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "imgclf.cli", "studio", str(folder), "--port", str(port)],
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        first, second = proc.stderr.readline(), proc.stderr.readline()
        assert first == f"imgclf studio for {folder}\n" and f"at http://127.0.0.1:{port}/" in second
        deadline = time.monotonic() + 30
        while True:
            try:
                labels = httpx.get(f"http://127.0.0.1:{port}/api/labels", timeout=2).json()["labels"]
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert [lab["name"] for lab in labels] == LABELS[:2]
        assert httpx.get(f"http://localhost:{port}/", timeout=2).status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    assert tree(folder) == before and (folder / ".imgclf" / "project.json").exists()


def test_a_cancelled_run_leaves_the_model_that_answers_as_it_was(studio):
    trainer = studio.app.state.workspace.trainer
    studio.post("/api/train")
    trainer.wait(120)
    model = studio.app.state.workspace.project.model_dir / "model.onnx"
    before = model.read_bytes()
    studio.post("/api/labels/roses/photos", files={"files": ("new.jpg", ROSE.read_bytes())})
    assert studio.post("/api/train").status_code == 200
    assert studio.post("/api/train/cancel").json() == {"cancelled": True}
    trainer.wait(120)
    assert studio.get("/api/train").json()["state"] == "cancelled"
    assert model.read_bytes() == before and studio.get("/api/results").json()["photos"] == 18
    assert studio.post("/api/predict", files={"file": ("r.jpg", ROSE.read_bytes())}).json()["label"] == "roses"


def test_the_page_loads_nothing_from_elsewhere():
    """No script, style, font, image or fetch from another host: every reference is to this server or a data: URL."""
    import re

    from imgclf.studio.app import STATIC_DIR

    remote = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//|fetch\(\s*["'`](?:https?:)?//|@import""")
    for path in sorted(STATIC_DIR.iterdir()):
        assert not remote.search(path.read_text(encoding="utf-8")), path.name
    assert remote.search('<script src="https://cdn.example/x.js">')  # the pattern finds what it is for


def test_a_project_of_several_things_per_photo_trains_answers_and_fixes_its_labels(tmp_path, cache_dir, multilabel_data):
    """A "several things per photo" project: a collage dropped on each label it shows is one photo with both labels;
    the results say how many labels are found, a likely missing label is added from its card (undoably), and an
    answer names every label over its mark."""
    import csv

    from imgclf.studio import create_studio_app

    app = create_studio_app(None, home=tmp_path / "home")
    with TestClient(app) as c:
        c.headers.update({"x-studio-token": app.state.workspace.token, "origin": ORIGIN})
        made = c.post("/api/projects", json={"name": "garden", "kind": "several"}).json()
        assert made["kind"] == "several"
        rows = list(csv.DictReader((multilabel_data / "labels.csv").open()))
        at = next(i for i, r in enumerate(rows) if r["path"] == "collages/03.jpg")
        dropped = rows[:at] + [{**rows[at], "labels": rows[at]["labels"].split(";")[0]}] + rows[at + 1:]  # one label lost
        collage = dropped[at]
        by_label: dict[str, list[Path]] = {}
        for r in dropped:
            for lab in r["labels"].split(";"):
                by_label.setdefault(lab, []).append(multilabel_data / r["path"])
        for lab, paths in by_label.items():
            got = c.post(f"/api/labels/{lab}/photos", files=[("files", (p.name, p.read_bytes())) for p in paths]).json()
            assert all(a["saved"] for a in got["arrivals"])
        c.post("/api/train")
        app.state.workspace.trainer.wait(180)
        assert c.get("/api/train").json()["photos"] == 110  # a collage in two labels is one photo
        results = c.get("/api/results").json()
        several = results["multi_label"]
        assert 0.5 < several["recall"] <= 1 and 0.5 < several["precision"] <= 1 and set(results["thresholds"]) == set(LABELS)
        assert [p["label"] for p in results["per_label"]] == LABELS and all("precision" in p for p in results["per_label"])
        missing = [f for f in results["findings"] if f["kind"] == "missing_label"]
        wanted = next((f for f in missing if f["path"].endswith(Path(collage["path"]).name)), missing[0])
        added = c.post("/api/photos/copy", json={"paths": [wanted["path"]], "label": wanted["label"]}).json()
        assert added["change"]["moves"][0][1].startswith(wanted["label"] + "/")
        assert (Path(made["path"]) / added["change"]["moves"][0][1]).read_bytes() == (Path(made["path"]) / wanted["path"]).read_bytes()
        c.post("/api/undo")
        assert not (Path(made["path"]) / added["change"]["moves"][0][1]).exists()
        collage_bytes = (multilabel_data / "unseen" / "roses+tulips.jpg").read_bytes()
        answer = c.post("/api/predict", files={"file": ("c.jpg", collage_bytes)}).json()
        assert [a["label"] for a in answer["labels"]] == [a["label"] for a in Model.load(Path(made["path"]) / ".imgclf" / "model")
                                                          .predict([multilabel_data / "unseen" / "roses+tulips.jpg"])[0].labels]
