"""``imgclf serve``: the REST API, through a real uvicorn server on 127.0.0.1 in a subprocess."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import LABELS, UNSEEN, run_cli

PHOTOS = sorted(p for p in UNSEEN.rglob("*.jpg"))
MAX_UPLOAD_MB = 2  # small, so the oversize tests stay cheap
LIMIT = MAX_UPLOAD_MB * 2**20
#: a reference that would make the browser fetch from another host
REMOTE = re.compile(r"""(?:\b(?:src|href)\s*=\s*["']?|url\(\s*["']?|@import\s+["']?)(?:https?:)?//""", re.I)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(model_dir: Path, log_path: Path, *args: str):
    """``imgclf serve MODEL_DIR`` in a subprocess on a free port; yields ``(base_url, process)``."""
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "imgclf.cli", "serve", str(model_dir), "--port", str(port), "--no-access-log", *args],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield url, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and its workers only
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.fixture(scope="module")
def server(trained_model, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "server.log"
    with running_server(trained_model, log, "--max-upload-mb", str(MAX_UPLOAD_MB)) as (url, proc):
        with httpx.Client(base_url=url, timeout=30) as client:
            client.proc = proc  # type: ignore[attr-defined]
            client.url = url  # type: ignore[attr-defined]
            yield client


@pytest.fixture(scope="module")
def expected(trained_model):
    """What ``imgclf predict --format json`` says about each unseen photo, by file name."""
    r = run_cli("predict", str(trained_model), *map(str, PHOTOS), "--format", "json", "--top-k", "5")
    assert r.returncode == 0, r.stderr
    return {Path(p["path"]).name: p for p in json.loads(r.stdout)}


def assert_same_prediction(got: dict, want: dict, top_k: int) -> None:
    assert list(got) == ["path", "status", "label", "confidence", "similarity", "top_k", "error"]
    assert got["status"] == want["status"] and got["error"] is None
    assert got["label"] == want["label"]
    assert got["similarity"] == pytest.approx(want["similarity"], abs=2e-5)
    assert got["confidence"] == pytest.approx(want["confidence"], abs=2e-5)
    assert [t["label"] for t in got["top_k"]] == [t["label"] for t in want["top_k"][:top_k]]
    for g, w in zip(got["top_k"], want["top_k"]):
        assert g["confidence"] == pytest.approx(w["confidence"], abs=2e-5)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


# --- predictions ----------------------------------------------------------------------


def test_predict_multipart_answers_like_the_cli(server, expected):
    for photo in PHOTOS:
        r = server.post("/predict", files={"file": (photo.name, photo.read_bytes(), "image/jpeg")})
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["path"] == photo.name
        assert_same_prediction(got, expected[photo.name], 3)
    correct = sum(expected[p.name]["label"] == p.parent.name for p in PHOTOS)
    assert correct >= 6


def test_predict_raw_body_and_top_k(server, expected):
    photo = PHOTOS[0]
    for top_k in (1, 5):
        r = server.post(f"/predict?top_k={top_k}", content=photo.read_bytes(), headers={"content-type": "image/jpeg"})
        assert r.status_code == 200, r.text
        assert len(r.json()["top_k"]) == top_k
        assert_same_prediction(r.json(), expected[photo.name], top_k)
    # curl --data-binary sends application/x-www-form-urlencoded: still the raw image.
    r = server.post("/predict", content=photo.read_bytes(), headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json()["label"] == expected[photo.name]["label"]
    assert server.post("/predict?top_k=0", content=photo.read_bytes()).status_code == 422


def test_predict_batch_keeps_order_and_reports_bad_files(server, expected):
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in PHOTOS]
    files.insert(3, ("files", ("notes.txt", b"just some text, not a photo", "text/plain")))
    r = server.post("/predict/batch?top_k=2", files=files)
    assert r.status_code == 200, r.text
    out = r.json()
    assert [o["path"] for o in out] == [name for _, (name, _, _) in files]
    bad = out.pop(3)
    assert bad["status"] == "error" and bad["label"] is None and bad["top_k"] == [] and "not an image" in bad["error"]
    for got, photo in zip(out, PHOTOS):
        assert_same_prediction(got, expected[photo.name], 2)
    for r in (
        server.post("/predict/batch", data={"note": "no files here"}),
        server.post("/predict/batch", content=PHOTOS[0].read_bytes(), headers={"content-type": "image/jpeg"}),
        server.post("/predict/batch", files={"files": (None, "a text field, not a file")}),
    ):
        assert r.status_code == 422 and "no files" in r.json()["detail"], r.text


def test_concurrent_requests_are_batched_and_correct(server, expected):
    before = server.get("/health").json()
    data = [(p.name, p.read_bytes()) for p in PHOTOS]

    def one(i: int):
        name, body = data[i % len(data)]
        with httpx.Client(timeout=60) as c:
            return name, c.post(server.url + "/predict", files={"file": (name, body, "image/jpeg")})

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(64)))
    for name, r in results:
        assert r.status_code == 200, r.text
        assert_same_prediction(r.json(), expected[name], 3)
    health = server.get("/health").json()
    assert health["images"] - before["images"] == 64
    assert health["largest_batch"] > 1, health  # concurrent requests shared inference batches
    assert health["batches"] - before["batches"] < 64


# --- model, health, docs, page --------------------------------------------------------


def test_model_health_and_docs(server, trained_model):
    m = server.get("/model").json()
    assert m["labels"] == LABELS
    assert m["backbone"]["name"] == "efficientnet_lite0"
    assert m["threshold"] == json.loads((trained_model / "imgclf.json").read_text())["rejection"]["threshold"]
    metrics = json.loads((trained_model / "metrics.json").read_text())
    assert m["metrics"]["test"]["accuracy"] == metrics["test"]["accuracy"]
    assert m["max_upload_mb"] == MAX_UPLOAD_MB and m["max_megapixels"] == 80
    h = server.get("/health").json()
    assert h["status"] == "ok"
    docs = server.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text.lower() and "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert server.get("/docs-assets/swagger-ui-bundle.js").status_code == 200  # served locally: works offline
    paths = server.get("/openapi.json").json()["paths"]
    assert {"/predict", "/predict/batch", "/health", "/model"} <= set(paths)
    assert "multipart/form-data" in paths["/predict"]["post"]["requestBody"]["content"]


def test_web_page_and_assets_are_served_locally(server):
    page = server.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    html = page.text
    for asset, ctype in (("/static/app.js", "javascript"), ("/static/style.css", "text/css")):
        assert asset in html
        r = server.get(asset)
        assert r.status_code == 200 and ctype in r.headers["content-type"]
        assert not REMOTE.search(r.text), REMOTE.search(r.text)  # no CDN, no remote fonts
        assert "http://" not in r.text.replace("http://www.w3.org/2000/svg", "") and "https://" not in r.text
    assert not REMOTE.search(html), REMOTE.search(html)
    assert server.get("/static/nope.js").status_code == 404


# --- bad requests ---------------------------------------------------------------------


def test_no_file_is_422(server):
    for r in (
        server.post("/predict"),
        server.post("/predict", content=b""),
        server.post("/predict", files={"image": ("a.jpg", PHOTOS[0].read_bytes(), "image/jpeg")}),
        server.post("/predict", data={"file": "not a file upload"}, files={"other": ("x", b"x")}),
    ):
        assert r.status_code == 422, r.text
        assert "no file" in r.json()["detail"]


def test_not_an_image_is_415(server):
    for body in (b"%PDF-1.4 definitely not a photo", b"\x00" * 5000, "café".encode()):
        r = server.post("/predict", files={"file": ("photo.jpg", body, "image/jpeg")})
        assert r.status_code == 415, r.text
        assert "not an image" in r.json()["detail"]


def test_corrupt_image_is_422_with_the_reason(server):
    data = PHOTOS[0].read_bytes()
    r = server.post("/predict", files={"file": ("cut.jpg", data[: len(data) // 3], "image/jpeg")})
    assert r.status_code == 422, r.text
    assert "corrupt or truncated" in r.json()["detail"]


def test_decompression_bomb_is_422(server):
    before = rss_mb(server.proc.pid)
    # 268 M pixels in a ~30 kB file: over imgclf's own limit for any image.
    bomb = png_bytes(Image.new("1", (16384, 16384)))
    assert len(bomb) < 200_000
    r = server.post("/predict", files={"file": ("bomb.png", bomb, "image/png")})
    assert r.status_code == 422, r.text
    assert "decompression bomb" in r.json()["detail"]
    # 90 M pixels (270 MB once decoded) in ~11 kB: over the server's --max-megapixels (80).
    bomb = png_bytes(Image.new("1", (10000, 9000)))
    r = server.post("/predict", files={"file": ("bomb2.png", bomb, "image/png")})
    assert r.status_code == 422, r.text
    assert "decompression bomb" in r.json()["detail"] and "10000x9000" in r.json()["detail"]
    assert rss_mb(server.proc.pid) - before < 100  # refused from the header, never decoded


def test_oversize_declared_length_is_413_before_reading(server):
    big = b"\xff\xd8" + b"\0" * (LIMIT + 200_000)
    r = server.post("/predict", content=big, headers={"content-type": "image/jpeg"})
    assert r.status_code == 413, r.text
    assert "too large" in r.json()["detail"]
    r = server.post("/predict", files={"file": ("big.jpg", big, "image/jpeg")})
    assert r.status_code == 413
    r = server.post("/predict/batch", files=[("files", ("a.jpg", big[: LIMIT // 2])), ("files", ("b.jpg", big[: LIMIT // 2 + 100_000]))])
    assert r.status_code == 413


def test_oversize_streamed_body_is_413_while_reading(server):
    """A chunked body (no Content-Length) is refused as soon as it crosses the limit."""
    pid = server.proc.pid
    before = rss_mb(pid)
    host, port = server.base_url.host, server.base_url.port
    chunk = b"\0" * 65536
    frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    intended = 200 * 2**20
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n")
        s.setblocking(False)
        sent, pending = 0, b""
        deadline = time.monotonic() + 20
        while sent < intended and time.monotonic() < deadline:
            readable, writable, _ = select.select([s], [s], [], 1)
            if readable:
                break  # the server answered while we were still sending
            if writable:
                pending = pending or frame
                n = s.send(pending)
                sent, pending = sent + n, pending[n:]
        s.setblocking(True)
        s.settimeout(10)
        head = b""
        while b"}" not in head:
            data = s.recv(65536)
            if not data:
                break
            head += data
    assert head.startswith(b"HTTP/1.1 413 "), head[:200]
    assert b"too large" in head
    assert sent < intended / 4, f"server let {sent / 2**20:.0f} MB in before answering"
    # A client that only reads after sending everything gets the 413 too (no reset).
    r = server.post("/predict", content=(chunk for _ in range(8 * LIMIT // len(chunk))), headers={"content-type": "image/jpeg"})
    assert r.status_code == 413
    assert rss_mb(pid) - before < 3 * MAX_UPLOAD_MB + 30  # nothing like the bodies was buffered


def test_bad_requests_leave_the_server_healthy(server, expected):
    assert server.proc.poll() is None
    assert server.get("/health").json()["status"] == "ok"
    r = server.post("/predict", files={"file": (PHOTOS[1].name, PHOTOS[1].read_bytes(), "image/jpeg")})
    assert r.status_code == 200
    assert_same_prediction(r.json(), expected[PHOTOS[1].name], 3)


# --- no torch, CLI --------------------------------------------------------------------


def test_server_never_imports_torch(server, trained_model):
    maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
    assert "onnxruntime" in maps
    assert "libtorch" not in maps and "/torch/" not in maps
    code = (
        "import sys; from imgclf.serve.app import create_app; import imgclf.cli; "
        f"create_app({str(trained_model)!r}); bad = [m for m in ('torch', 'timm', 'torchvision') if m in sys.modules]; "
        "assert not bad, bad"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_serve_with_two_workers(trained_model, tmp_path):
    with running_server(trained_model, tmp_path / "log", "--workers", "2") as (url, proc):
        r = httpx.post(url + "/predict", files={"file": (PHOTOS[2].name, PHOTOS[2].read_bytes())}, timeout=30)
        assert r.status_code == 200 and r.json()["label"] in LABELS
        assert httpx.get(url + "/model").json()["labels"] == LABELS


def test_serve_missing_model_is_a_clear_error(tmp_path):
    r = run_cli("serve", str(tmp_path / "nope"), "--port", str(free_port()))
    assert r.returncode == 2
    assert "model folder not found" in r.stderr


def test_json_contracts_in_process(trained_model):
    """The routes' JSON, exactly, through FastAPI's in-process client (the real server is tested above)."""
    from fastapi.testclient import TestClient

    from imgclf.serve.app import create_app

    labels = json.loads((trained_model / "labels.json").read_text())
    with TestClient(create_app(trained_model, max_upload_mb=1)) as client:
        health = client.get("/health").json()
        assert list(health) == ["status", "version", "uptime_s", "requests", "in_flight", "batches", "images", "largest_batch"]
        assert health["status"] == "ok" and health["requests"] == 0
        info = client.get("/model").json()
        assert info["labels"] == labels and info["max_upload_mb"] == 1 and 0 < info["threshold"] < 1
        assert set(info["metrics"]) >= {"train", "test", "counts"}
        assert client.post("/predict").json() == {
            "detail": "no file: send the image as multipart form field 'file' or as the request body"}
        r = client.post("/predict", content=b"not an image at all")
        assert r.status_code == 415 and r.json() == {"detail": "not an image (unrecognised format)"}
        r = client.post("/predict?top_k=0", content=b"x")
        assert r.status_code == 422
        big = client.post("/predict", content=b"\0" * (2 * 2**20))
        assert big.status_code == 413 and big.json()["detail"].startswith("upload too large: over 1 MB")
        photo = PHOTOS[0]
        row = client.post("/predict?top_k=2", files={"file": (photo.name, photo.read_bytes())}).json()
        assert list(row) == ["path", "status", "label", "confidence", "similarity", "top_k", "error"]
        assert row["path"] == photo.name and len(row["top_k"]) == 2 and client.get("/health").json()["requests"] == 2  # this one and the 415
        schema = client.get("/openapi.json").json()
        assert set(schema["components"]["schemas"]["PredictionOut"]["properties"]) == {*row, "explanation", "neighbors", "set", "levels",
                                                                                        "labels"}


def test_predict_explains_and_finds_neighbors_in_process(trained_model):
    """``/predict?explain=true&neighbors=3``: the row of ``predict --explain --neighbors 3``, the overlay as a data URL."""
    import base64
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    from imgclf.serve.app import create_app

    photo = PHOTOS[1]
    cli = json.loads(run_cli("predict", str(trained_model), str(photo), "--neighbors", "3", "-f", "json").stdout)[0]
    with TestClient(create_app(trained_model)) as client:
        row = client.post("/predict?explain=true&neighbors=3", files={"file": (photo.name, photo.read_bytes())}).json()
        plain = client.post("/predict?neighbors=3", files={"file": (photo.name, photo.read_bytes())}).json()
        bad = client.post("/predict?explain=true", content=b"not an image")
    assert row["label"] == cli["label"]
    for got in (row["neighbors"], plain["neighbors"]):  # the server decodes at full size: the same photos, scores to 1e-3
        assert [(n["path"], n["label"]) for n in got] == [(n["path"], n["label"]) for n in cli["neighbors"]]
        assert [n["similarity"] for n in got] == pytest.approx([n["similarity"] for n in cli["neighbors"]], abs=1e-3)
    assert row["confidence"] == pytest.approx(cli["confidence"], abs=1e-3)
    e = row["explanation"]
    assert e["label"] == row["top_k"][0]["label"] and e["heatmap"].startswith("data:image/png;base64,")
    overlay = Image.open(io.BytesIO(base64.b64decode(e["heatmap"].split(",", 1)[1])))
    w, h = Image.open(photo).size
    assert overlay.format == "PNG" and max(overlay.size) <= 240 and 0 <= e["peak"][0] < w and 0 <= e["peak"][1] < h
    assert bad.status_code == 415


def test_training_photos_are_served_only_from_the_index(trained_model):
    from fastapi.testclient import TestClient

    from imgclf.serve.app import create_app

    rel = json.loads((trained_model / "neighbors.json").read_text())["photos"][0][0]
    with TestClient(create_app(trained_model)) as client:
        ok = client.get("/training-photo", params={"path": rel})
        assert ok.status_code == 200 and ok.headers["content-type"] == "image/jpeg" and ok.content[:2] == b"\xff\xd8"
        for bad in ("../../../etc/passwd", "/etc/passwd", rel + ".missing", "LICENSE.txt"):
            assert client.get("/training-photo", params={"path": bad}).status_code == 404, bad
        info = client.get("/model").json()
        assert info["explain"] is True and info["neighbors"] is True
