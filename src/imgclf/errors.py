"""Exceptions that carry a message meant for the user."""

from __future__ import annotations


class ImgclfError(Exception):
    """A user or data mistake: the CLI prints ``error: <message>`` and exits with code 2."""


class ImageError(ImgclfError):
    """One file could not be used as an image; ``reason`` says why in a few words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
