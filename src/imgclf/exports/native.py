"""Native libraries kept quiet: what TensorFlow and LiteRT print at start-up is not the user's business."""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def quiet_native():
    """TensorFlow's C++ start-up lines (CUDA probing, oneDNN notes) kept off the terminal: file descriptors 1 and 2
    point at /dev/null meanwhile. Python exceptions pass through untouched."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)
