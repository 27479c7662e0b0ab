"""The same photos and seed give the same model (less times and dates): the stages of ``train`` may be rearranged,
renamed and moved, but what they write must not change without a reason given here.

``tests/golden/flowers.json`` holds the bundled example's model as a signature: the graph's nodes and every weight
tensor's shape, type and three sums, the metadata, ``labels.json``, and every value of ``metrics.json``. Text must be
equal, numbers equal to 1e-4 (relative) — what two CPUs' floating point may differ by, as a model trained on an AMD
machine differed in its last bits from one trained on the machine that recorded the first digests; a real change moves
them far more. A change that is meant to alter the model (a new calibration, a new check) re-records it with
``python tests/test_same_model.py`` and says why in its commit.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden" / "flowers.json"
#: What the model answered when its heads were solved in float64 to SciPy's default tolerances, every fold on every
#: photo: the faster solver and the per-label budgets must give the same answers (recorded once, not re-recorded).
EXACT_ANSWERS = Path(__file__).parent / "golden" / "flowers-exact-answers.json"
#: Fields that say when or how fast, not what was learned.
VOLATILE = {"train_seconds", "seconds", "embedding"}


def _stable(obj):
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_stable(v) for v in obj]
    return obj


def _stable_metrics(model_dir: Path, photos_root: Path) -> dict:
    """``metrics.json`` less :data:`VOLATILE` fields, with the data folder's path replaced by ``DATA``."""
    metrics = (model_dir / "metrics.json").read_text().replace(str(photos_root.resolve()), "DATA").replace(str(photos_root), "DATA")
    return _stable(json.loads(metrics))


def digests(model_dir: Path, photos_root: Path) -> dict[str, str]:
    """SHA-256 of model.onnx and labels.json, and of metrics.json less :data:`VOLATILE` fields and with the data
    folder's path replaced by ``DATA``: two models trained on one machine compare equal byte for byte."""
    stable = json.dumps(_stable_metrics(model_dir, photos_root), sort_keys=True)
    return {"model.onnx": hashlib.sha256((model_dir / "model.onnx").read_bytes()).hexdigest(),
            "labels.json": hashlib.sha256((model_dir / "labels.json").read_bytes()).hexdigest(),
            "metrics.json": hashlib.sha256(stable.encode()).hexdigest()}


def signature(model_dir: Path, photos_root: Path) -> dict:
    """What the model folder holds, as text and numbers (:func:`differences` compares two): ``model.onnx``'s nodes,
    weights (shape, type and three sums) and metadata (less the digests of files that hold floats), ``labels.json``,
    and ``metrics.json`` less :data:`VOLATILE` fields with the data folder's path replaced by ``DATA``."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(model_dir / "model.onnx"))
    weights = {}
    for t in graph.graph.initializer:
        x = numpy_helper.to_array(t)
        v = x.astype(np.float64).ravel() if x.dtype.kind in "fiub" else np.zeros(1)
        weights[t.name] = {"shape": list(x.shape), "dtype": str(x.dtype),
                           "sums": [float(v.sum()), float(np.abs(v).sum()), float((v * np.cos(np.arange(v.size))).sum())]}
    nodes = [[n.op_type, list(n.input), list(n.output), sorted(a.name for a in n.attribute)] for n in graph.graph.node]
    meta = {}
    for p in graph.metadata_props:
        if not p.key.endswith("_sha256"):
            try:
                meta[p.key] = json.loads(p.value)
            except ValueError:
                meta[p.key] = p.value
    return {"nodes": nodes, "weights": weights, "metadata": meta, "labels": json.loads((model_dir / "labels.json").read_text()),
            "metrics": _stable_metrics(model_dir, photos_root)}


def differences(now, then, where: str = "", rel: float = 1e-4) -> list[str]:
    """Where ``now`` differs from ``then``: text and structure exactly, numbers beyond ``rel`` of their size."""
    if isinstance(then, dict) and isinstance(now, dict):
        if now.keys() != then.keys():
            return [f"{where}: keys {sorted(now.keys() ^ then.keys())}"]
        return [d for k in then for d in differences(now[k], then[k], f"{where}/{k}", rel)]
    if isinstance(then, list) and isinstance(now, list):
        if len(now) != len(then):
            return [f"{where}: {len(now)} items, recorded {len(then)}"]
        return [d for i, (a, b) in enumerate(zip(now, then)) for d in differences(a, b, f"{where}[{i}]", rel)]
    numbers = (int, float)
    if isinstance(then, numbers) and isinstance(now, numbers) and not isinstance(then, bool) and not isinstance(now, bool):
        return [] if abs(now - then) <= rel * max(1.0, abs(then)) else [f"{where}: {now!r}, recorded {then!r}"]
    return [] if now == then else [f"{where}: {now!r}, recorded {then!r}"]


def answers(model_dir: Path, photos_root: Path) -> dict:
    """What the model says about its own photos: the estimate, the temperature, the "unknown" threshold, the findings of
    the checks and the best label of every validation and test photo."""
    metrics = json.loads((model_dir / "metrics.json").read_text())

    def rel(path):
        return Path(path).relative_to(photos_root).as_posix() if path else None

    return {"estimate": {k: metrics["estimate"][k] for k in ("accuracy", "low", "high")},
            "temperature": metrics["head"]["temperature"], "threshold": metrics["rejection"]["threshold"],
            "findings": sorted([f["kind"], rel(f.get("path")), f.get("suggested"), f.get("labels")] for f in metrics["check"]["findings"]),
            "predicted": {rel(p["path"]): p["predicted"] for split in ("val", "test") for p in metrics[split]["photos"]}}


def test_the_bundled_example_gives_the_recorded_model(tmp_path, cache_dir):
    import imgclf
    from tests.conftest import PHOTOS

    imgclf.train(PHOTOS, tmp_path / "m", cache_dir=cache_dir)
    assert differences(signature(tmp_path / "m", PHOTOS), json.loads(GOLDEN.read_text()))[:10] == []
    now, exact = answers(tmp_path / "m", PHOTOS), json.loads(EXACT_ANSWERS.read_text())
    assert now["findings"] == exact["findings"]
    assert now["predicted"] == exact["predicted"]
    assert exact["estimate"]["low"] <= now["estimate"]["accuracy"] <= exact["estimate"]["high"]
    assert abs(now["threshold"] - exact["threshold"]) <= 0.01
    assert abs(now["temperature"] - exact["temperature"]) <= 0.05 * exact["temperature"]


if __name__ == "__main__":  # re-record
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import imgclf
    from tests.conftest import PHOTOS

    with tempfile.TemporaryDirectory() as tmp:
        imgclf.train(PHOTOS, Path(tmp) / "m", cache_dir=Path(tmp) / "cache")
        GOLDEN.write_text(json.dumps(signature(Path(tmp) / "m", PHOTOS), indent=1) + "\n")
    print(f"{GOLDEN}: {GOLDEN.stat().st_size} bytes")
