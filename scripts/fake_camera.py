"""A camera for Chromium's fake media-stream device, made from real photos: a Y4M video that shows each photo for a
while (``--use-file-for-fake-video-capture=FILE.y4m`` plays it in a loop).

    python scripts/fake_camera.py OUT.y4m PHOTO [PHOTO ...] [--seconds 1] [--fps 10]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

SIZE = (320, 240)


def frame(photo: Path, size=SIZE, shift: int = 0, whole: bool = False) -> bytes:
    """One 4:2:0 frame of ``photo`` cropped to ``size``; ``shift`` moves the crop (a hand-held camera), each of 256
    shifts to another place, so no two frames of a video of fewer than 256 frames per photo are the same. ``whole``
    shows the whole photo on a dark background instead of filling the frame (a portrait keeps its head)."""
    with Image.open(photo) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        target = (size[0] + 16, size[1] + 16)
        big = ImageOps.pad(im, target, color=(24, 24, 28)) if whole else ImageOps.fit(im, target)
    x, y = shift % 16, (shift // 16) % 16
    ycc = np.asarray(big.crop((x, y, x + size[0], y + size[1])).convert("YCbCr"))
    planes = [ycc[:, :, 0], ycc[::2, ::2, 1], ycc[::2, ::2, 2]]
    return b"FRAME\n" + b"".join(np.ascontiguousarray(p).tobytes() for p in planes)


def write_y4m(out: Path, photos: list[Path], seconds: float = 1.0, fps: int = 10, size=SIZE, whole: bool = False) -> Path:
    """Write the video: each of ``photos`` for ``seconds``, at ``fps`` frames a second (``whole``: see :func:`frame`)."""
    with open(out, "wb") as f:
        f.write(f"YUV4MPEG2 W{size[0]} H{size[1]} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        n = 0
        for photo in photos:
            for _ in range(max(1, round(seconds * fps))):
                f.write(frame(photo, size, n, whole))
                n += 1
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("photos", type=Path, nargs="+")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--whole", action="store_true", help="Show each whole photo instead of filling the frame.")
    args = ap.parse_args()
    print(write_y4m(args.out, args.photos, args.seconds, args.fps, whole=args.whole))
