"""``imgclf studio``: the studio app under uvicorn on one address, loopback unless asked otherwise."""

from __future__ import annotations

import os
import sys


def run_studio(folder: str | os.PathLike | None, *, host: str = "127.0.0.1", port: int = 8080, open_browser: bool = False,
               allowed_hosts: list[str] | None = None, max_upload_mb: float = 20, log_level: str = "warning") -> None:
    """Serve the studio until interrupted; print its address (and open it in a browser with ``open_browser``)."""
    import uvicorn

    from imgclf.serve.security import is_loopback, loopback_hosts
    from imgclf.serve.server import check_port
    from imgclf.studio.app import create_studio_app

    check_port(host, port)
    allowed = list(allowed_hosts or [])
    hosts = loopback_hosts(allowed) if is_loopback(host) else (allowed or None)
    app = create_studio_app(folder, max_upload_mb=max_upload_mb, allowed_hosts=hosts)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    where = f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}/"
    what = app.state.workspace.project
    if what is not None:  # a line of its own: a long path does not push the address past 80 columns
        print(f"imgclf studio for {what.root}", file=sys.stderr)
    print(f"{'  ' if what else 'imgclf studio '}at {where}  (Ctrl+C stops it)", file=sys.stderr, flush=True)
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(1.0, webbrowser.open, [where]).start()
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
