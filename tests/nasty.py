"""Build folders of hostile and unusual image files from the bundled photos, with Pillow.

``make_accepted(dir)`` writes files that must decode; ``make_rejected(dir)`` writes files
that must be skipped and returns ``{file name: expected reason fragment}``;
``make_ignored(dir)`` writes OS junk that must be ignored silently.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import PHOTOS


def photo(label: str = "daisy", index: int = 0) -> Image.Image:
    img = Image.open(sorted((PHOTOS / label).iterdir())[index])
    img.load()
    return img.convert("RGB")


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels."""
    buf = io.BytesIO()
    Image.new("L", (16, 16)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8  # after the signature: length(4) type(4) data(13) crc(4)
    data[ihdr + 8 : ihdr + 16] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4 : ihdr + 21]))
    data[ihdr + 21 : ihdr + 25] = struct.pack(">I", crc)
    return bytes(data)


def make_accepted(d: Path, label: str = "daisy") -> list[str]:
    """Unusual but valid files: each must decode to an RGB image."""
    d.mkdir(parents=True, exist_ok=True)
    base = photo(label, 0)
    names = []

    def save(name: str, img: Image.Image, fmt: str, **kw) -> None:
        img.save(d / name, fmt, **kw)
        names.append(name)

    save("png_named_as.jpg", base, "PNG")
    save("upper.JPG", photo(label, 1), "JPEG")
    save("no_extension", photo(label, 2), "WEBP")
    save("animated.gif", photo(label, 3).convert("P"), "GIF", save_all=True,
         append_images=[photo(label, 4).convert("P")], duration=100)
    save("bitmap.bmp", photo(label, 5), "BMP")
    save("scan.tiff", photo(label, 6), "TIFF")
    save("print.jpg", photo(label, 7).convert("CMYK"), "JPEG")
    save("grey.png", photo(label, 8).convert("L"), "PNG")
    save("grey_alpha.png", photo(label, 9).convert("LA"), "PNG")
    rgba = photo(label, 10).convert("RGBA")
    rgba.putalpha(128)
    save("transparent.png", rgba, "PNG")
    save("palette_transparent.png", photo(label, 11).convert("P"), "PNG", transparency=0)
    deep = Image.fromarray(np.asarray(photo(label, 12).convert("L"), dtype=np.uint16) * 257)  # mode I;16
    save("deep16.png", deep, "PNG")
    big = np.asarray(photo(label, 12).convert("L").resize((3000, 2400)), dtype=np.uint16) * 257
    save("deep16_big.png", Image.fromarray(big), "PNG")  # converted in strips, reduced first
    save("[bold red]markup ]name[.jpg", photo(label, 13), "JPEG")  # shown literally, never as markup
    save("deep16.tiff", deep, "TIFF")
    save("float.tiff", photo(label, 13).convert("F"), "TIFF")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    save("rotated_exif.jpg", base.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif.tobytes())
    save("phone.avif", photo(label, 1), "AVIF")
    try:
        from pillow_heif import register_heif_opener  # imgclf registers it only when it meets a HEIF file

        register_heif_opener()
        save("iphone.heic", photo(label, 2), "HEIF")
    except ImportError:  # pragma: no cover
        pass
    return names


def make_rejected(d: Path) -> dict[str, str]:
    """Files that must be skipped, with a fragment of the expected reason."""
    d.mkdir(parents=True, exist_ok=True)
    good = jpeg_bytes(photo("roses", 0))
    expected = {}

    def write(name: str, data: bytes, reason: str) -> None:
        (d / name).write_bytes(data)
        expected[name] = reason

    write("empty.jpg", b"", "empty file")
    write("truncated.jpg", good[: len(good) // 2], "corrupt or truncated")
    png = io.BytesIO()
    photo("roses", 2).save(png, "PNG")
    damaged = bytearray(png.getvalue())
    damaged[len(damaged) // 2] ^= 0xFF  # one flipped bit inside the compressed data: CRC mismatch
    write("corrupt.png", bytes(damaged), "corrupt or truncated")
    write("notes.jpg", b"shopping list: milk, eggs\n" * 20, "not an image")
    write("document.pdf.jpg", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n" * 10, "not an image")
    write("clip.mp4.jpg", b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 4000, "not an image")
    write("readme.txt", b"these are my photos\n", "not an image")
    write("bomb.png", png_bomb(), "decompression bomb")
    tiny = io.BytesIO()
    photo("roses", 1).resize((8, 6)).save(tiny, "PNG")
    write("tiny.png", tiny.getvalue(), "too small")
    os.symlink(d / "gone.jpg", d / "broken_link.jpg")
    expected["broken_link.jpg"] = "broken symlink"
    os.mkfifo(d / "pipe.jpg")
    expected["pipe.jpg"] = "not a regular file"
    if os.geteuid() != 0:  # root reads every file, whatever its mode
        write("locked.jpg", good, "permission denied")
        os.chmod(d / "locked.jpg", 0)
    return expected


def make_ignored(d: Path) -> None:
    """OS junk and loops that a scan must pass over silently."""
    d.mkdir(parents=True, exist_ok=True)
    (d / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + b"\x00" * 100)
    (d / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + b"\x00" * 100)
    (d / ".hidden.jpg").write_bytes(jpeg_bytes(photo("tulips", 0)))
    (d / "__MACOSX").mkdir(exist_ok=True)
    (d / "__MACOSX" / "._photo.jpg").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 100)
    (d / "loop").symlink_to(d, target_is_directory=True)
