"""``imgclf serve`` against hostile clients: slow-loris, disconnects, other sites' pages (issue 14)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from imgclf.serve.security import host_name, is_loopback, loopback_hosts
from tests.conftest import run_cli
from tests.test_serve import PHOTOS, running_server

TIMEOUT = 2.0  # --request-timeout: headers due within 2 s, bodies checked over 1 s windows


@pytest.fixture(scope="module")
def guarded(trained_model, tmp_path_factory):
    log = tmp_path_factory.mktemp("guarded") / "server.log"
    with running_server(trained_model, log, "--request-timeout", str(TIMEOUT), "--allowed-host", "photos.lan") as (url, proc):
        yield url, proc, log


def _connect(url: str) -> socket.socket:
    host, port = httpx.URL(url).host, httpx.URL(url).port
    s = socket.create_connection((host, port), timeout=5)
    s.setblocking(False)
    return s


def _closed(s: socket.socket) -> bool:
    try:
        return s.recv(65536) == b""
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


def _trickle(socks: list[socket.socket], data: bytes, seconds: float) -> None:
    """Send ``data`` one byte at a time to every open socket, 4 bytes a second."""
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        for s in socks:
            try:
                s.send(data[i % len(data) : i % len(data) + 1])
            except (BlockingIOError, OSError):
                pass
        i += 1
        time.sleep(0.25)


def test_slow_headers_and_bodies_are_dropped_while_others_are_served(guarded):
    url, proc, log = guarded
    slow_headers = [_connect(url) for _ in range(200)]
    for s in slow_headers:
        s.send(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    slow_body = [_connect(url) for _ in range(5)]
    for s in slow_body:
        s.send(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n")
    idle = [_connect(url) for _ in range(5)]  # never send a byte
    started = time.monotonic()
    _trickle(slow_headers + slow_body, b"X-Slow: loris\r\n", 1.0)
    # while they trickle, a real client is answered at once
    r = httpx.post(url + "/predict", content=PHOTOS[0].read_bytes(), timeout=10)
    assert r.status_code == 200 and r.json()["label"]
    _trickle(slow_headers + slow_body, b"X-Slow: loris\r\n", 3 * TIMEOUT)
    elapsed = time.monotonic() - started
    for group, name in ((slow_headers, "slow headers"), (slow_body, "slow body"), (idle, "idle")):
        open_ = sum(not _closed(s) for s in group)
        assert open_ == 0, f"{open_} of {len(group)} {name} connections still open after {elapsed:.1f} s"
        for s in group:
            s.close()
    text = log.read_text()
    assert "dropped a slow client" in text and "request body arriving at" in text
    assert "Traceback" not in text
    assert httpx.get(url + "/health", timeout=5).status_code == 200


def test_client_that_disconnects_mid_upload_logs_one_line(guarded):
    url, proc, log = guarded
    before = log.read_text().count("\n")
    s = _connect(url)
    s.setblocking(True)
    s.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\nContent-Length: 500000\r\n\r\n")
    s.sendall(PHOTOS[0].read_bytes()[:20000])
    time.sleep(0.3)
    s.close()
    time.sleep(1.0)
    new = log.read_text().splitlines()[before:]
    assert [line for line in new if "disconnected" in line], new
    assert not [line for line in new if "Traceback" in line or "Exception in ASGI" in line], new
    assert len(new) == 1, new
    assert httpx.get(url + "/health", timeout=5).status_code == 200


def test_security_headers_on_page_api_and_docs(guarded):
    url, _, _ = guarded
    for path in ("/", "/static/app.js", "/health", "/docs"):
        r = httpx.get(url + path, timeout=5)
        assert r.status_code == 200, path
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
        assert ("'unsafe-inline'" in csp) == (path == "/docs"), path


def test_loopback_server_answers_only_loopback_and_allowed_host_names(guarded):
    url, _, _ = guarded
    port = httpx.URL(url).port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", "photos.lan", f"PHOTOS.lan:{port}"):
        assert httpx.get(url + "/health", headers={"host": host}, timeout=5).status_code == 200, host
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", ""):
        r = httpx.get(url + "/health", headers={"host": host}, timeout=5)
        assert r.status_code == 400 and "not allowed" in r.json()["detail"], host
        assert r.headers["x-content-type-options"] == "nosniff"


def test_host_rules():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("photos.lan")
    assert host_name("[::1]:8000") == "::1" and host_name("LocalHost:80") == "localhost" and host_name("a.b") == "a.b"
    assert loopback_hosts(["x"]) == ["localhost", "127.0.0.1", "::1", "x"]


def test_allowed_hosts_in_process(trained_model):
    from imgclf.serve.app import create_app

    app = create_app(trained_model, allowed_hosts=["testserver"])
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/health", headers={"host": "evil.example"}).status_code == 400


def test_open_connections_are_bounded(guarded):
    from imgclf.serve.connections import GuardedH11Protocol

    url, _, log = guarded
    limit = GuardedH11Protocol.MAX_CONNECTIONS
    socks = [_connect(url) for _ in range(limit + 20)]
    try:
        time.sleep(0.5)  # well before the header timeout
        closed = sum(_closed(s) for s in socks)
        assert 20 <= closed <= 25, f"{closed} of {len(socks)} closed at once"
        assert "refused a connection" in log.read_text()
    finally:
        for s in socks:
            s.close()
    time.sleep(0.2)
    assert httpx.get(url + "/health", timeout=5).status_code == 200


# --- issue 24: training photos, explanations and errors ----------------------------------------------------


@pytest.fixture
def data_copy(trained_model, tmp_path):
    """A copy of the trained model whose data folder is a copy of the bundled photos (free to change), and that folder."""
    import json
    import shutil

    from tests.conftest import PHOTOS as BUNDLED

    data = tmp_path / "data"
    shutil.copytree(BUNDLED, data)
    model = tmp_path / "model"
    shutil.copytree(trained_model, model)
    meta = json.loads((model / "imgclf.json").read_text())
    meta["data"]["root"] = str(data)
    (model / "imgclf.json").write_text(json.dumps(meta))
    return model, data


def test_training_photos_come_from_the_file_that_was_checked(data_copy, tmp_path, monkeypatch):
    """A label folder swapped for a symlink between the check and the open gives no photo from outside."""
    import os

    from imgclf.serve import service

    model, data = data_copy
    outside = tmp_path / "outside"
    outside.mkdir()
    index = json.loads((model / "neighbors.json").read_text())["photos"]
    rel = next(p for p, _ in index if p.startswith("daisy/"))
    secret = outside / Path(rel).name
    secret.write_bytes((data / rel).read_bytes())
    real_open = os.open

    def swap_then_open(path, flags, *a):  # the race, made deterministic: swapped just before the open
        if str(path).startswith(str(data.resolve() / "daisy")) and not (data / "daisy").is_symlink():
            (data / "daisy").rename(tmp_path / "daisy-moved")
            (data / "daisy").symlink_to(outside, target_is_directory=True)
        return real_open(path, flags, *a)

    monkeypatch.setattr(service.os, "open", swap_then_open)
    assert service.open_inside(data, rel) is None
    monkeypatch.undo()
    (data / "daisy").unlink()
    (tmp_path / "daisy-moved").rename(data / "daisy")
    assert service.open_inside(data, rel)[1] == (data / rel).read_bytes()


def test_training_photos_keep_the_pixel_limit_are_cached_and_same_origin(data_copy, monkeypatch):
    from PIL import Image

    from imgclf.serve import service
    from imgclf.serve.app import create_app

    model, data = data_copy
    index = json.loads((model / "neighbors.json").read_text())["photos"]
    small, big = index[0][0], index[1][0]
    Image.new("RGB", (1500, 1000), (200, 30, 30)).save(data / big)  # 1.5 MP, over this server's limit of 1 MP
    decoded = []
    real = service.decode
    monkeypatch.setattr(service, "decode", lambda *a, **k: decoded.append(1) or real(*a, **k))
    with TestClient(create_app(model, max_megapixels=1)) as client:
        first = client.get("/training-photo", params={"path": small})
        again = client.get("/training-photo", params={"path": small})
        refused = client.get("/training-photo", params={"path": big})
    assert first.status_code == 200 and again.content == first.content and len(decoded) == 1  # decoded once, then cached
    assert first.headers["cross-origin-resource-policy"] == "same-origin"
    assert refused.status_code == 404 and len(decoded) == 1  # never decoded


def test_explained_answers_decode_as_plain_ones(trained_model, tmp_path):
    """A big JPEG: /predict, ?explain=true and ?neighbors=3 give the same confidence as the command line."""
    from PIL import Image

    from imgclf.serve.app import create_app

    photo = tmp_path / "big.jpg"
    Image.open(PHOTOS[0]).convert("RGB").resize((3000, 2000)).save(photo, quality=92)
    cli = json.loads(run_cli("predict", str(trained_model), str(photo), "-f", "json").stdout)[0]
    with TestClient(create_app(trained_model)) as client:
        rows = [client.post(f"/predict{q}", files={"file": (photo.name, photo.read_bytes())}).json()
                for q in ("", "?explain=true", "?neighbors=3")]
    assert {r["confidence"] for r in rows} == {cli["confidence"]} and {r["similarity"] for r in rows} == {cli["similarity"]}


def test_explain_is_refused_where_it_would_take_many_passes(trained_model, monkeypatch):
    from imgclf.serve.app import create_app

    with TestClient(create_app(trained_model)) as client:
        model = client.app.state.service.model
        monkeypatch.setattr(model, "explanation_method", "occlusion")  # as a fine-tuned or quantised model says
        monkeypatch.setattr(model, "explainable", False)
        r = client.post("/predict?explain=true", files={"file": (PHOTOS[0].name, PHOTOS[0].read_bytes())})
        plain = client.post("/predict", files={"file": (PHOTOS[0].name, PHOTOS[0].read_bytes())})
    assert r.status_code == 422 and isinstance(r.json()["detail"], str) and "imgclf predict --explain" in r.json()["detail"]
    assert plain.status_code == 200


def test_every_error_is_one_documented_shape(trained_model):
    from imgclf.serve.app import create_app

    with TestClient(create_app(trained_model)) as client:
        invalid = client.post("/predict?top_k=0", content=PHOTOS[0].read_bytes())
        empty = client.post("/predict", content=b"")
        spec = client.get("/openapi.json").json()
    for r in (invalid, empty):
        assert r.status_code == 422 and isinstance(r.json()["detail"], str), r.json()
    assert "top_k" in invalid.json()["detail"]
    for path, status in (("/predict", "400"), ("/predict", "422"), ("/predict", "503"), ("/model", "400"), ("/health", "400")):
        op = next(iter(spec["paths"][path].values()))
        schema = op["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (path, status, schema)
    assert spec["components"]["schemas"]["ErrorOut"]["properties"]["detail"]["type"] == "string"
