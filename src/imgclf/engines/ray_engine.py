"""The Ray engine: the same decode → ONNX pipeline, spread over a Ray cluster with Ray Data.

The driver lists the photos (with imgclf's own rules, so both engines see the same files),
Ray Data streams them through ``map_batches`` on a pool of actors, each holding one
:class:`~imgclf.engines.core.Runner` (one ONNX Runtime session, loaded once per actor), and
the driver writes the rows as they come back, in input order. The model (or backbone)
file travels through Ray's object store, so the workers need imgclf installed but no
copy of the model folder; the photos must be readable at the same absolute paths on
every node (a shared file system), or be URIs Ray can read (``s3://…``, ``gs://…``).

Without an address a local Ray runtime is started (and stopped afterwards), so the same
command runs on a laptop and, with ``--address``, on a cluster.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DISABLE_IMPORT_WARNING", "1")

from imgclf.engines.core import EMBEDDINGS, PREDICTIONS, Item  # noqa: E402
from imgclf.errors import ImgclfError  # noqa: E402
from imgclf.runtime.batching import DEFAULT_BATCH
from imgclf.runtime.session import cpu_count  # noqa: E402

#: Object store of a local runtime, MB: rows are small (paths, scores, vectors), never images.
LOCAL_OBJECT_STORE_MB = 256
#: Most input blocks; more blocks stream more smoothly, fewer cost less scheduling.
MAX_BLOCKS = 2000


def import_ray():
    """``ray`` with Ray Data, or a clear error naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImgclfError("--engine ray needs Ray: pip install 'imgclf[ray]'") from None
    return ray


@contextlib.contextmanager
def runtime(address: str | None = None, num_cpus: int | None = None, object_store_mb: int = LOCAL_OBJECT_STORE_MB):
    """Connect to the Ray cluster at ``address``, or start a local runtime; reuse one already started.

    A runtime started here is shut down on exit. No dashboard, no usage statistics.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    opts = dict(logging_level=logging.ERROR, log_to_driver=False)
    address = address or os.environ.get("RAY_ADDRESS") or None  # Ray's own way to name a cluster
    try:
        if address:
            ray.init(address=address, **opts)
        else:
            ray.init(num_cpus=num_cpus or cpu_count(), object_store_memory=object_store_mb * 2**20,
                     include_dashboard=False, **opts)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
        raise ImgclfError(f"cannot start or reach {where}: {str(e).splitlines()[0][:200]}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


# --- actors: one Runner (one ONNX session) each ------------------------------------------------------

def _ship(ray, folder: Path, names: list[str]) -> dict:
    """The model files, put once in the object store: workers need no copy of the folder."""
    return {"ref": [ray.put({name: (folder / name).read_bytes() for name in names})]}


@contextlib.contextmanager
def _materialised(files: dict):
    """A temporary folder holding the shipped files while the actor loads them."""
    import ray

    folder = Path(tempfile.mkdtemp(prefix="imgclf-ray-"))
    try:
        for name, data in ray.get(files["ref"][0]).items():
            (folder / name).write_bytes(data)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _items(table) -> list[Item]:
    cols = table.to_pydict()
    n = table.num_rows
    get = lambda name: cols.get(name) or [None] * n  # noqa: E731
    paths, sources, data, labels, splits = get("path"), get("source"), get("bytes"), get("label"), get("split")
    return [Item(paths[i], sources[i], data[i], labels[i], splits[i]) for i in range(n)]


class PredictActor:
    """A Ray Data actor: loads the shipped model once, then turns batches of paths into prediction rows."""

    def __init__(self, files, top_k: int, threshold: float | None, reject: bool, threads: int, batch_size: int,
                 error_rate: float | None = None):
        from imgclf.engines.core import PredictRunner
        from imgclf.runtime.model import Model

        with _materialised(files) as folder:
            model = Model.load(folder, threads=threads)
        self.runner = PredictRunner(model, top_k, threads, threshold=threshold, reject=reject, error_rate=error_rate)
        self.batch_size = batch_size

    def __call__(self, table):
        from imgclf.engines.outputs import to_arrow

        return to_arrow(list(self.runner.iter_rows(_items(table), self.batch_size)), PREDICTIONS,
                        label_set=self.runner.error_rate is not None, multi_label=self.runner.model.multi_label)


class EmbedActor:
    """A Ray Data actor: loads the shipped backbone once, then turns batches of paths into embedding rows."""

    def __init__(self, files, onnx_name: str, preprocessing: dict, threads: int, batch_size: int, encoder: str | None = None):
        from imgclf.engines.core import EmbedRunner
        from imgclf.runtime.preprocessing import Preprocessing

        with _materialised(files) as folder:
            self.runner = EmbedRunner(folder / onnx_name, Preprocessing.from_dict(preprocessing), threads, encoder)
        self.batch_size = batch_size

    def __call__(self, table):
        from imgclf.engines.outputs import to_arrow

        return to_arrow(list(self.runner.iter_rows(_items(table), self.batch_size)), EMBEDDINGS)


# --- driver ---------------------------------------------------------------------------------------------

def _configure_data(ray) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # rows come back in input order, as with the local engine
    ctx.enable_progress_bars = False  # the CLI shows one bar for the whole job
    ctx.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def _source(ray, items: list[Item] | None, uris: list[str] | None, batch_size: int, actors: int):
    if uris:
        return ray.data.read_binary_files(uris, include_paths=True)
    rows = [{k: v for k, v in (("path", i.path), ("source", i.source), ("label", i.label), ("split", i.split)) if v is not None}
            for i in items]
    blocks = min(MAX_BLOCKS, max(1, actors, math.ceil(len(rows) / (2 * batch_size))))
    return ray.data.from_items(rows, override_num_blocks=min(blocks, len(rows)))


def _run(
    ray, actor, kwargs: dict, items: list[Item] | None, uris: list[str] | None, actors: int | None,
    cpus_per_actor: float, batch_size: int, progress: Callable[[int, int | None], None] | None,
) -> Iterator:
    _configure_data(ray)
    if actors is None:
        actors = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_actor))
    ds = _source(ray, items, uris, batch_size, actors)
    ds = ds.map_batches(
        actor, fn_constructor_kwargs=kwargs, batch_size=batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus_per_actor,
    )
    total = len(items) if items is not None else None
    done = 0
    for table in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=2):
        done += table.num_rows
        yield table
        if progress:
            progress(done, total)


def run_predict(
    ray, model_dir: str | os.PathLike, items: list[Item] | None = None, uris: list[str] | None = None,
    top_k: int = 3, threshold: float | None = None, reject: bool = True, actors: int | None = None,
    cpus_per_actor: int = 1, batch_size: int = DEFAULT_BATCH, progress=None, error_rate: float | None = None,
) -> Iterator:
    """Arrow tables of prediction rows, in input order, computed by ``actors`` Ray actors."""
    from imgclf.runtime.model import Model

    model = Model.load(model_dir, threads=1)  # a broken model folder fails here, once, with a clear message
    model.check_error_rate(error_rate)
    folder = Path(model_dir)
    names = [f.name for f in sorted(folder.iterdir()) if f.is_file() and f.suffix in (".onnx", ".json")]
    kwargs = dict(files=_ship(ray, folder, names), top_k=top_k, threshold=threshold, reject=reject,
                  threads=max(1, int(cpus_per_actor)), batch_size=batch_size, error_rate=error_rate)
    return _run(ray, PredictActor, kwargs, items, uris, actors, cpus_per_actor, batch_size, progress)


def run_embed(
    ray, backbone, items: list[Item], actors: int | None = None, cpus_per_actor: int = 1,
    batch_size: int = DEFAULT_BATCH, progress=None,
) -> Iterator:
    """Arrow tables of embedding rows, in input order, computed by ``actors`` Ray actors."""
    onnx = Path(backbone.onnx_path)
    kwargs = dict(files=_ship(ray, onnx.parent, [onnx.name]), onnx_name=onnx.name, preprocessing=backbone.preprocessing.to_dict(),
                  threads=max(1, int(cpus_per_actor)), batch_size=batch_size, encoder=backbone.encoder)
    return _run(ray, EmbedActor, kwargs, items, None, actors, cpus_per_actor, batch_size, progress)
