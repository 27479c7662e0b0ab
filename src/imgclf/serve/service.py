"""The loaded model behind the API: uploads read within limits, decoded in threads, classified in micro-batches."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from fastapi import Request
from starlette.datastructures import UploadFile

from imgclf.errors import ImageError, ImgclfError
from imgclf.runtime.faces import NoFaceError
from imgclf.runtime.images import MAX_FILE_BYTES, decode, jpeg_thumbnail, read_at_most, upright_size
from imgclf.runtime.model import Model
from imgclf.runtime.batching import safe_load
from imgclf.runtime.loader import draft_side, load_pixels
from imgclf.serve.batching import MicroBatcher
from imgclf.serve.limits import PayloadTooLarge


#: Training-photo thumbnails a server keeps in memory (about 5 KB each).
THUMBNAILS_KEPT = 512


def open_inside(base: Path, relative: str) -> tuple[tuple, bytes] | None:
    """``((device, inode, size, mtime), bytes)`` of the regular file ``base/relative``, read from one open descriptor that
    is checked to be a file inside ``base`` (a symlink swapped in while checking cannot lead outside); None otherwise."""
    base = base.resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base):
        return None
    try:
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
            return None
        opened = Path(f"/proc/self/fd/{f.fileno()}")
        try:  # where the descriptor really leads (Linux); elsewhere the same file must still be there, inside
            real = Path(os.readlink(opened)) if opened.is_symlink() else None
        except OSError:
            real = None
        if real is not None and not real.is_relative_to(base):
            return None
        try:
            again = (base / relative).resolve()
            same = again.is_relative_to(base) and os.path.samestat(st, os.stat(again))
        except OSError:
            same = False
        if not same:
            return None
        data = read_at_most(f, st.st_size, MAX_FILE_BYTES)
        return None if data is None else ((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns), data)


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == "multipart/form-data"


async def read_parts(request: Request, field: str | None, max_files: int, max_bytes: int) -> list[tuple[str, bytes]]:
    """``(file name, bytes)`` of the file parts of a multipart request (named ``field``, or any), at most ``max_files``
    of them and none over ``max_bytes`` (:class:`PayloadTooLarge`)."""
    form = await request.form(max_files=max_files, max_fields=max_files)
    try:
        parts = [(k, v) for k, v in form.multi_items() if isinstance(v, UploadFile) and (field is None or k == field)]
        files = []
        for i, (_, up) in enumerate(parts):
            data = await up.read()
            if len(data) > max_bytes:
                raise PayloadTooLarge(max_bytes)
            files.append((up.filename or f"upload-{i + 1}", data))
    finally:
        await form.close()
    return files


def thumbnail(data: bytes, side: int, max_pixels: int) -> bytes | None:
    """A JPEG of at most ``side`` px of the photo in ``data``, or None when it cannot be read or has more than
    ``max_pixels`` pixels (refused from its header, before decoding)."""
    size = upright_size(data)
    if size and size[0] * size[1] > max_pixels:
        return None
    try:
        return jpeg_thumbnail(decode(data, max_side=side), side, quality=85)
    except ImageError:
        return None


def _drawn(explanation, photo) -> dict:
    """An explanation as the API answers it: the overlay as a PNG data URL, and where the map peaks."""
    return {"heatmap": "data:image/png;base64," + base64.b64encode(explanation.png(photo)).decode("ascii"),
            **explanation.to_dict()}


class Service:
    """The loaded model plus the threads that serve it."""

    def __init__(self, model: Model, max_upload_bytes: int, max_batch: int, max_batch_files: int,
                 max_in_flight: int, decode_threads: int, max_pixels: int):
        self.model = model
        self.max_pixels = max_pixels
        self.max_upload_bytes = max_upload_bytes
        self.max_batch_files = max_batch_files
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.started = time.time()
        self.requests = 0
        self.batcher = MicroBatcher(model.scores, max_batch=model.photos_per_run(max_batch), collate=model.preprocessing.batch)
        self.decode_threads = decode_threads
        self._indexed: set[str] | None = None
        self._thumbs: OrderedDict = OrderedDict()
        self._thumb_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    @property
    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.decode_threads, thread_name_prefix="imgclf-decode")
        return self._pool

    def close(self) -> None:
        self.batcher.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _check_size(self, data: bytes) -> None:
        size = upright_size(data)
        if size and size[0] * size[1] > self.max_pixels:
            raise ImageError(
                f"image too large ({size[0]}x{size[1]} pixels, this server's limit is {self.max_pixels:,}): "
                "possible decompression bomb"
            )

    def _load(self, data: bytes) -> np.ndarray:
        self._check_size(data)
        return load_pixels(data, self.model.preprocessing)  # as predict does: big JPEGs decoded at reduced size

    def _detailed(self, name: str, data: bytes, top_k: int, explain: bool, neighbors: int, error_rate: float | None = None) -> dict:
        """One upload's row with its explanation (the overlay as a PNG data URL) and/or neighbours, in a decode thread;
        decoded as :meth:`_load` decodes for plain predictions (same size limit, same reduced JPEG decoding, same answer)."""
        self._check_size(data)
        photo = decode(data, max_side=draft_side(self.model.preprocessing))
        if not explain:
            return self.model.predict_image(photo, top_k, name, neighbors, error_rate=error_rate).to_row()
        pred, explanations = self.model.explain_labels(photo, None, top_k, name, neighbors, error_rate=error_rate)
        drawn = [_drawn(e, photo) for e in explanations]
        pred.explanation = dict(drawn[0])
        if self.model.multi_label and pred.labels:  # a map for every label it answered
            pred.explanation["maps"] = drawn
        return pred.to_row()

    async def predict_detailed(self, name: str, data: bytes, top_k: int, explain: bool, neighbors: int,
                               error_rate: float | None = None) -> dict | ImageError:
        """:meth:`predict` of one upload with ``explain`` and ``neighbors``, outside the micro-batches (one pass of its own)."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.pool, self._detailed, name, data, top_k, explain, neighbors, error_rate)
        except NoFaceError as e:
            return self.model.failed(name, e, error_rate).to_row()
        except ImageError as e:
            return e
        except ImgclfError:
            raise  # the model cannot explain or keeps no index: the route answers 422
        except Exception as e:  # a decoder must never take the server down
            return ImageError(f"cannot read image ({type(e).__name__}: {str(e)[:120]})")

    async def answer(self, upload: tuple[str, bytes], top_k: int, explain: bool = False, neighbors: int = 0,
                     error_rate: float | None = None) -> dict | ImageError:
        """One upload answered as ``/predict`` answers it (micro-batched, or on its own with ``explain`` or
        ``neighbors``), counted in flight meanwhile; raises :class:`ImgclfError` when the model cannot give what was
        asked (label sets of a model without them: before anything is decoded)."""
        self.model.check_error_rate(error_rate)
        self.in_flight += 1
        try:
            if explain or neighbors:
                return await self.predict_detailed(*upload, top_k, explain, neighbors, error_rate)
            (result,) = await self.predict([upload], top_k, error_rate)
            return result
        finally:
            self.in_flight -= 1

    def training_thumbnail(self, path: str, side: int = 128) -> bytes | None:
        """A JPEG of at most ``side`` px of the training photo ``path`` (relative, as in ``neighbors.json``), or
        None when it is not one of the model's indexed photos, its data folder is not reachable, or it is larger
        than this server decodes. The bytes come from the very file that was checked to lie inside the data folder
        (opened once); thumbnails are cached by the file's identity."""
        if self._indexed is None:
            self._indexed = {p for p, _ in self.model.neighbor_index or []}
        root = (self.model.meta.get("data") or {}).get("root")
        if path not in self._indexed or not root:
            return None
        opened = open_inside(Path(root), path)
        if opened is None:
            return None
        identity, data = opened
        key = (path, side, identity)
        with self._thumb_lock:
            if key in self._thumbs:
                self._thumbs.move_to_end(key)
                return self._thumbs[key]
        thumb = thumbnail(data, side, self.max_pixels)
        if thumb is None:
            return None
        with self._thumb_lock:
            self._thumbs[key] = thumb
            while len(self._thumbs) > THUMBNAILS_KEPT:
                self._thumbs.popitem(last=False)
        return thumb

    def busy(self, n: int) -> bool:
        """Whether ``n`` more images would go over ``max_in_flight``."""
        return self.in_flight + n > self.max_in_flight

    async def read_files(self, request: Request, field: str | None, raw: bool = True) -> list[tuple[str, bytes]]:
        """Uploaded files: multipart parts (named ``field``, or any file part) or, if ``raw``, the body."""
        if is_multipart(request):
            return await read_parts(request, field, self.max_batch_files, self.max_upload_bytes)
        if not raw:
            return []
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > self.max_upload_bytes:
                raise PayloadTooLarge(self.max_upload_bytes)
        if not buf:
            return []
        return [(request.headers.get("x-filename") or "upload", bytes(buf))]

    async def predict(self, uploads: list[tuple[str, bytes]], top_k: int, error_rate: float | None = None) -> list[dict | ImageError]:
        """Decode (in threads) and classify (batched) uploads; an ImageError per unusable one. Label sets asked of a
        model without them raise :class:`ImgclfError` before anything is decoded."""
        self.model.check_error_rate(error_rate)
        loop = asyncio.get_running_loop()
        decoded = await asyncio.gather(
            *(loop.run_in_executor(self.pool, safe_load, self._load, data) for _, data in uploads)
        )
        good = [arr for arr in decoded if not isinstance(arr, ImageError)]
        rows = iter(await self.batcher.run(good) if good else [])
        out: list[dict | ImageError] = []
        for (name, _), arr in zip(uploads, decoded):
            if isinstance(arr, NoFaceError):
                out.append(self.model.failed(name, arr, error_rate).to_row())
            elif isinstance(arr, ImageError):
                out.append(arr)
            else:
                out.append(self.model.prediction(name, next(rows), top_k, error_rate=error_rate).to_row())
        return out


