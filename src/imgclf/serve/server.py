"""Run the app under uvicorn: one process, or ``workers`` processes that each load the model."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def run_server(
    model_dir: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, max_upload_mb: float = 10.0,
    max_megapixels: float = 80.0, allowed_hosts: list[str] | None = None, request_timeout: float = 10.0,
    access_log: bool = True, log_level: str = "info",
) -> None:
    """Serve ``model_dir`` until interrupted; the cores are shared out between the ``workers`` processes.

    On a loopback ``host`` only loopback ``Host`` names are answered, plus ``allowed_hosts``
    (:mod:`imgclf.serve.security`); clients get ``request_timeout`` seconds to send their headers
    (:mod:`imgclf.serve.connections`).
    """
    import uvicorn

    from imgclf.runtime.session import cpu_count
    from imgclf.serve.connections import TIMEOUT_VARIABLE, GuardedH11Protocol
    from imgclf.serve.security import is_loopback, loopback_hosts

    check_port(host, port)
    threads = max(1, cpu_count() // workers)
    os.environ[TIMEOUT_VARIABLE] = str(request_timeout)
    allowed_hosts = list(allowed_hosts or [])
    hosts = loopback_hosts(allowed_hosts) if is_loopback(host) else (allowed_hosts or None)
    where = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    opts = dict(host=host, port=port, log_level=log_level, access_log=access_log, http=GuardedH11Protocol)
    if workers == 1:
        from imgclf.serve.app import create_app

        application = create_app(model_dir, max_upload_mb=max_upload_mb, threads=threads, max_megapixels=max_megapixels,
                                 allowed_hosts=hosts)
        print(f"serving {model_dir} at {where}/ (API docs at {where}/docs)", file=sys.stderr, flush=True)
        uvicorn.run(application, **opts)
        return
    from imgclf.runtime.model import Model

    Model.load(model_dir, threads=1)  # fail here, with a clear message, not in every worker
    os.environ.update(
        IMGCLF_SERVE_MODEL_DIR=str(Path(model_dir).resolve()),
        IMGCLF_SERVE_MAX_UPLOAD_MB=str(max_upload_mb),
        IMGCLF_SERVE_THREADS=str(threads),
        IMGCLF_SERVE_MAX_MEGAPIXELS=str(max_megapixels),
        IMGCLF_SERVE_ALLOWED_HOSTS=json.dumps(hosts),
    )
    print(f"serving {model_dir} at {where}/ with {workers} workers (API docs at {where}/docs)", file=sys.stderr, flush=True)
    uvicorn.run("imgclf.serve.app:app_from_env", factory=True, workers=workers, **opts)


def check_port(host: str, port: int) -> None:
    """Refuse, in one line, an address that cannot be listened on (a port in use, a host not of this machine)."""
    import errno
    import socket

    from imgclf.errors import ImgclfError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ImgclfError(f"cannot serve on {host}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ImgclfError(f"port {port} on {host} is in use: choose another with --port, or stop what is using it") from None
            raise ImgclfError(f"cannot serve on {host}:{port}: {e.strerror or e}") from None
