"""Decode image files into RGB Pillow images, or say exactly why not.

The format is sniffed from the bytes, never from the extension. Every failure is an
:class:`~imgclf.errors.ImageError` with a short reason; nothing else escapes.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import struct
import threading
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from imgclf.errors import ImageError

#: Formats imgclf decodes. Pillow guesses among these only, so a PDF or a video with an
#: image extension is refused instead of half-read.
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "MPO", "HEIF", "AVIF")
#: Largest accepted image, in pixels (a 108-megapixel phone photo fits); larger files are decompression bombs.
MAX_PIXELS = 128_000_000
#: Smallest accepted side, in pixels.
MIN_SIDE = 16
#: Largest accepted file, in bytes.
MAX_FILE_BYTES = 512 * 1024 * 1024

ImageFile.LOAD_TRUNCATED_IMAGES = False
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

#: JPEG, PNG, GIF and BMP files, recognised by their first bytes, are opened with Pillow's
#: common plugins only; every other format loads all plugins (and pillow-heif) on first
#: use. That keeps ~0.1 s of imports off ``imgclf predict`` for the usual photos.
_COMMON = ((b"\xff\xd8\xff", ("JPEG",)), (b"\x89PNG", ("PNG",)), (b"GIF8", ("GIF",)), (b"BM", ("BMP",)))
_openable: tuple[str, ...] | None = None
_init_lock = threading.Lock()


def openable_formats() -> tuple[str, ...]:
    """The subset of :data:`FORMATS` this Pillow build can open (loads every plugin once)."""
    global _openable
    with _init_lock:
        if _openable is None:
            try:  # HEIC (iPhone photos) through the pillow-heif plugin; AVIF is built into Pillow.
                from pillow_heif import register_heif_opener

                register_heif_opener()
            except ImportError:  # pragma: no cover - the dependency is declared, but decoding works without it
                pass
            Image.init()
            _openable = tuple(f for f in FORMATS if f in Image.OPEN)
    return _openable


def __getattr__(name: str):
    if name == "OPENABLE":  # computed on first use, see openable_formats()
        return openable_formats()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _formats_for(data: bytes) -> tuple[str, ...]:
    for magic, formats in _COMMON:
        if data.startswith(magic):
            Image.preinit()
            return formats
    return openable_formats()


def read_bytes(path: str | os.PathLike) -> bytes:
    """Read a regular file's bytes, turning every OS problem into :class:`ImageError`."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageError("broken symlink" if os.path.islink(path) else "file not found") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ImageError("symlink loop") from None
        raise ImageError(f"cannot read file ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError("is a folder")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError("not a regular file (device, pipe or socket)")
    if st.st_size > MAX_FILE_BYTES:
        raise ImageError(f"file too large ({st.st_size / 2**20:.0f} MB, limit {MAX_FILE_BYTES // 2**20} MB)")
    try:
        with open(path, "rb") as f:
            return f.read(MAX_FILE_BYTES + 1)
    except PermissionError:
        raise ImageError("permission denied") from None
    except OSError as e:
        raise ImageError(f"cannot read file ({e.strerror or e})") from None


def decode(data: bytes, max_side: int | None = None) -> Image.Image:
    """Decode image bytes into an upright RGB image.

    ``max_side`` lets JPEG decoding use DCT scaling (``draft``) to a size no smaller
    than ``max_side`` on the shorter side; ``None`` decodes at full size.
    """
    if not data:
        raise ImageError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's chatter about odd metadata is not the user's problem
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=_formats_for(data))
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"image too large ({w}x{h} pixels, limit {MAX_PIXELS:,}): possible decompression bomb")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            if max_side is not None and img.format == "JPEG":
                img.draft("RGB", _draft_size(img.size, max_side))
            img.load()
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image (unrecognised format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"image too large (over {MAX_PIXELS:,} pixels): possible decompression bomb") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error) as e:
        raise ImageError(f"corrupt or truncated image ({_short(e)})") from None
    except MemoryError:
        raise ImageError("image too large to decode") from None
    except Exception as e:  # Pillow plugins raise a zoo of exceptions on hostile input.
        raise ImageError(f"cannot decode image ({type(e).__name__}: {_short(e)})") from None
    if min(img.size) < MIN_SIDE:
        raise ImageError(f"image too small ({img.size[0]}x{img.size[1]}, minimum side {MIN_SIDE} px)")
    try:
        img = _upright(img)
        return to_rgb(img)
    except ImageError:
        raise
    except Exception as e:
        raise ImageError(f"cannot convert image ({type(e).__name__}: {_short(e)})") from None


def load_image(path: str | os.PathLike, max_side: int | None = None) -> Image.Image:
    """Read and decode one file; see :func:`decode`."""
    return decode(read_bytes(path), max_side=max_side)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited on white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _high_depth_to_rgb(img)
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
    elif mode == "1":
        img = img.convert("L")
    if img.mode == "RGBA":
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img.convert("RGB")


def _high_depth_to_rgb(img: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit integer and float greyscale images to 8-bit RGB."""
    arr = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16"):
        arr = arr / 257.0
    elif img.mode == "F" and arr.size and np.nanmax(arr) <= 1.0 and np.nanmin(arr) >= 0.0:
        arr = arr * 255.0
    elif arr.size and (np.nanmax(arr) > 255 or np.nanmin(arr) < 0):
        lo, hi = np.nanmin(arr), np.nanmax(arr)
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    arr = np.nan_to_num(arr, nan=0.0).clip(0, 255).astype(np.uint8)
    return Image.fromarray(arr, "L").convert("RGB")


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; an unreadable EXIF block is ignored."""
    try:
        ImageOps.exif_transpose(img, in_place=True)  # in place: no copy of the (usual) upright image
    except Exception:
        pass
    return img


def _draft_size(size: tuple[int, int], min_short_side: int) -> tuple[int, int]:
    w, h = size
    scale = min_short_side / min(w, h)
    return (max(1, int(w * scale + 0.5)), max(1, int(h * scale + 0.5)))


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:120]
