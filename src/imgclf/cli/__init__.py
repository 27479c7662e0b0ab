"""The ``imgclf`` command line: a thin layer of parsing over the library.

:mod:`imgclf.cli.commands` parses each command and calls the library; :mod:`imgclf.cli.render`
prints what comes back (tables, progress bars, JSON, CSV). User and data mistakes print one
``error: …`` line on stderr and exit with code 2 (a traceback only with ``--debug``).
"""

from __future__ import annotations

import os

# Before NumPy loads: OpenBLAS threads only spin against ONNX Runtime's and each other on the
# small matrices imgclf multiplies.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run ``argv`` (default: the process's arguments) and exit with its code."""
    from imgclf.cli.commands import run

    raise SystemExit(run(argv))


def __getattr__(name: str):
    if name == "app":  # the Click group, e.g. for click.testing.CliRunner
        from imgclf.cli.commands import app

        return app
    raise AttributeError(f"module 'imgclf.cli' has no attribute {name!r}")
