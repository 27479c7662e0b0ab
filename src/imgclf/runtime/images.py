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
from PIL import Image, ImageFile, UnidentifiedImageError

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
            data = read_at_most(f, st.st_size, MAX_FILE_BYTES)
    except PermissionError:
        raise ImageError("permission denied") from None
    except OSError as e:
        raise ImageError(f"cannot read file ({e.strerror or e})") from None
    if data is None:
        raise ImageError(f"file too large (more than {MAX_FILE_BYTES // 2**20} MB)")
    return data


def read_at_most(f, expected: int, limit: int) -> bytes | None:
    """The rest of the open file ``f`` (``expected`` bytes by its size), or None when it holds more than ``limit``:
    one read of the expected size, never a buffer of ``limit`` bytes unless the file grew meanwhile."""
    data = f.read(min(expected, limit) + 1)
    if len(data) > expected:  # it grew since its size was read
        data += f.read(limit + 1 - len(data))
    return None if len(data) > limit else data


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
        transpose = _orientation(img)
        big = _pixel_bytes(img) >= _TRIM_BYTES
        img = to_rgb(img, max_side)  # the decoded image is freed here if it was converted
        if transpose is not None:
            img = img.transpose(transpose)
        if big:
            _return_memory()
        return img
    except ImageError:
        raise
    except MemoryError:
        raise ImageError("image too large to convert") from None
    except Exception as e:
        raise ImageError(f"cannot convert image ({type(e).__name__}: {_short(e)})") from None


def load_image(path: str | os.PathLike, max_side: int | None = None) -> Image.Image:
    """Read and decode one file; see :func:`decode`."""
    return decode(read_bytes(path), max_side=max_side)


def to_rgb(img: Image.Image, max_side: int | None = None) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited on white.

    An image that needs converting is reduced first (box filter, by a whole factor) when its
    RGB copy would take more than :data:`MAX_CONVERTED_BYTES`, or, for high-depth images,
    to no less than ``max_side`` on its shorter side: memory is bounded in bytes, whatever the mode.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _HIGH_DEPTH:
        return _high_depth_to_rgb(img, _reduce_factor(img.size, max_side))
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
    elif mode == "1":
        img = img.convert("L")
    factor = _reduce_factor(img.size, None)
    if factor > 1 and img.mode in ("L", "RGB", "RGBA", "CMYK"):
        img = img.reduce(factor)
    if img.mode == "RGBA":
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img.convert("RGB")


#: Greyscale modes of more than 8 bits, scaled to 8 bits by :func:`_high_depth_to_rgb`.
_HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
#: Largest RGB image :func:`to_rgb` makes by converting (Pillow keeps 4 bytes a pixel): 64 MP.
MAX_CONVERTED_BYTES = 256 * 2**20
#: Bytes of the float32 rows a high-depth image is converted in at a time.
_STRIP_BYTES = 2 * 2**20  # (converted in float64, twice that, so no sum can overflow)


def _reduce_factor(size: tuple[int, int], max_side: int | None) -> int:
    """The whole factor an image is reduced by before conversion (1: none)."""
    w, h = size
    factor = 1
    while (w // factor) * (h // factor) * 4 > MAX_CONVERTED_BYTES:
        factor += 1
    if max_side is not None:
        factor = max(factor, min(w, h) // max_side)
    return max(1, factor)


def _high_depth_to_rgb(img: Image.Image, factor: int) -> Image.Image:
    """Scale 16-bit, 32-bit integer and float greyscale images to 8-bit RGB, ``factor`` times smaller.

    Works on strips of rows (never a full-size float copy): 16-bit values are divided by 257;
    floats in [0, 1] are multiplied by 255; other ranges beyond [0, 255] are stretched to it.
    """
    w, h = img.size
    if img.mode.startswith("I;16"):
        scale, offset = 1 / 257, 0.0
    else:
        lo, hi = np.inf, -np.inf
        for strip in _strips(img, factor):
            finite = strip[np.isfinite(strip)]
            if finite.size:
                lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
        if not np.isfinite(lo):
            lo = hi = 0.0
        if img.mode == "F" and lo >= 0 and hi <= 1:
            scale, offset = 255.0, 0.0
        elif hi > 255 or lo < 0:
            scale, offset = (255.0 / (hi - lo), lo) if hi > lo else (0.0, lo)
        else:
            scale, offset = 1.0, 0.0
    ow, oh = w // factor, h // factor
    out = np.empty((oh, ow), np.uint8)
    row = 0
    for strip in _strips(img, factor):
        rows = strip.shape[0] // factor
        # in float64, NaN at the offset and infinities at float32's ends: no sum or difference below can overflow
        strip = np.nan_to_num(strip.astype(np.float64), copy=False, nan=offset, posinf=_FLOAT32_MAX, neginf=-_FLOAT32_MAX)
        if factor > 1:
            strip = strip[: rows * factor, : ow * factor].reshape(rows, factor, ow, factor).mean(axis=(1, 3))
        strip -= offset
        strip *= scale
        out[row : row + rows] = np.clip(strip, 0, 255).astype(np.uint8)
        row += rows
    return Image.fromarray(out[:row], "L").convert("RGB")


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _strips(img: Image.Image, factor: int):
    """float32 arrays of consecutive rows of ``img``, each a whole number of ``factor`` rows (the last one may be shorter)."""
    w, h = img.size
    step = factor * max(1, _STRIP_BYTES // (4 * w * factor))
    usable = h - h % factor
    for y in range(0, usable, step):
        yield np.asarray(img.crop((0, y, w, min(y + step, usable))), dtype=np.float32)


#: After decoding an image of at least this many bytes, freed memory is handed back to the OS.
_TRIM_BYTES = 32 * 2**20


def _pixel_bytes(img: Image.Image) -> int:
    """Bytes Pillow holds for ``img``'s pixels."""
    w, h = img.size
    return w * h * (1 if img.mode in ("1", "L", "P") else 2 if img.mode.startswith("I;16") else 4)


def _return_memory() -> None:
    """Give freed heap memory back to the OS (glibc's ``malloc_trim``), so a server's RSS falls after a huge image."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90,
}


def thumbnail_jpeg(path: str | os.PathLike, size: int, quality: int = 80) -> bytes | None:
    """A JPEG of the upright photo at ``path`` at most ``size`` px on its longer side, or None if it cannot be read."""
    try:
        return jpeg_thumbnail(load_image(path, max_side=size), size, quality)
    except (ImageError, OSError, ValueError):
        return None


def jpeg_thumbnail(img: Image.Image, size: int, quality: int = 80) -> bytes:
    """A JPEG of the decoded RGB ``img`` at most ``size`` px on its longer side (``img`` is reduced in place)."""
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def upright_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of the upright photo (after EXIF orientation) from its header alone; None if unreadable."""
    try:
        with Image.open(io.BytesIO(data), formats=_formats_for(data)) as img:
            w, h = img.size
            turned = _orientation(img) in (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270,
                                           Image.Transpose.TRANSPOSE, Image.Transpose.TRANSVERSE)
    except Exception:
        return None
    return (h, w) if turned else (w, h)


def _orientation(img: Image.Image) -> Image.Transpose | None:
    """The transpose that makes ``img`` upright from its EXIF orientation tag; an unreadable EXIF block is ignored."""
    try:
        return _TRANSPOSE.get(img.getexif().get(0x0112))
    except Exception:
        return None


def _draft_size(size: tuple[int, int], min_short_side: int) -> tuple[int, int]:
    w, h = size
    scale = min_short_side / min(w, h)
    return (max(1, int(w * scale + 0.5)), max(1, int(h * scale + 0.5)))


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:120]
