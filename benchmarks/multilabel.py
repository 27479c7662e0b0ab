"""Several labels per photo, before imgclf answers them: how well heads on its embeddings can, on collages.

Usage: python benchmarks/multilabel.py [DATA_DIR] [--seeds 3] [--train 400] [--test 200] [--work DIR]
       (default: ../shared/datasets/flowers-bench; collages are made under --work, a temporary folder by default)

Per seed, each label's photos are split 70 / 30; training collages are made only of the first part and test collages
only of the second, so no test photo was ever seen. A collage is 1 to 3 photos of different labels, 160–260 px each,
at random places of a grey 448 × 448 canvas (its labels: the kinds shown). Every collage is embedded once by the
default backbone (cached), and again as 10 views (whole, and a 3 × 3 grid of half-size crops). Then:

- scikit-learn's one-vs-rest logistic regression on the raw embeddings (the baseline the issue names);
- independent logistic heads on L2-normalised embeddings, class-balanced or not, at several C — what imgclf's
  single-label head does, one sigmoid per label; ``C by CV`` chooses C by 5-fold cross-validated mean AP on the
  training collages alone, as a trained model would have to;
- the same heads scoring each of the 10 views, a label's probability the largest (several objects: one view each),
  and heads on the views' max-pooled embedding.

Printed: mean AP (mean ± spread over seeds) and the mean per-label expected calibration error (10 bins) of each.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads, as the CLI does

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from imgclf.data import scan_labelled  # noqa: E402

GRID = (1.0, 3.0, 10.0, 30.0, 100.0)
BASELINE = "scikit-learn one-vs-rest, raw embeddings"


def collages(by_label: dict[str, list[Path]], n: int, seed: int, out: Path, tag: str) -> list[tuple[Path, list[int]]]:
    """``n`` collages of 1–3 photos of different labels and their label indices: each photo 160–260 px on its longer
    side, at a random place of a grey 448 × 448 canvas, overlapping the ones before by at most a third of its area."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    labels = sorted(by_label)
    made = []
    for i in range(n):
        chosen = sorted(rng.choice(len(labels), int(rng.integers(1, 4)), replace=False).tolist())
        canvas, boxes = Image.new("RGB", (448, 448), (128, 128, 128)), []
        for k in chosen:
            photos = by_label[labels[k]]
            with Image.open(photos[int(rng.integers(len(photos)))]) as im:
                im = im.convert("RGB")
                side = int(rng.integers(160, 261))
                im.thumbnail((side, side))
                for _ in range(30):  # a place that hides little of the photos already there
                    x, y = int(rng.integers(0, 449 - im.width)), int(rng.integers(0, 449 - im.height))
                    box = (x, y, x + im.width, y + im.height)
                    if all(_overlap(box, b) <= (im.width * im.height) / 3 for b in boxes):
                        break
                boxes.append(box)
                canvas.paste(im, box[:2])
        path = out / f"{tag}-{i}.jpg"
        canvas.save(path, quality=90)
        made.append((path, chosen))
    return made


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def views(paths: list[Path], bb) -> np.ndarray:
    """(n, 10, dim): each photo's embedding whole and of a 3 × 3 grid of half-size crops a quarter apart."""
    from PIL import Image

    from imgclf.runtime.session import create_session

    session = create_session(Path(bb.onnx_path).read_bytes(), 2)
    name, pre, out = session.get_inputs()[0].name, bb.preprocessing, []
    for path in paths:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            crops = [im] + [im.crop((x * w // 4, y * h // 4, x * w // 4 + w // 2, y * h // 4 + h // 2))
                            for y in range(3) for x in range(3)]
            out.append(session.run(None, {name: pre.batch([pre.pixels(c) for c in crops])})[0])
    return np.stack(out)


def mean_ap(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(np.mean([average_precision_score(y[:, k], p[:, k]) for k in range(y.shape[1])]))


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean over labels of the expected calibration error of each label's probability."""
    out = []
    for k in range(y.shape[1]):
        edges = np.minimum((p[:, k] * bins).astype(int), bins - 1)
        out.append(sum(abs(p[edges == b, k].mean() - y[edges == b, k].mean()) * (edges == b).mean()
                       for b in range(bins) if (edges == b).any()))
    return float(np.mean(out))


def heads(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, C: float, balanced: bool) -> np.ndarray:
    """Independent logistic heads (one per label) on L2-normalised embeddings: test probabilities."""
    from sklearn.linear_model import LogisticRegression

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    weight = "balanced" if balanced else None
    return np.stack([LogisticRegression(C=C, class_weight=weight, max_iter=5000).fit(unit(x), y[:, k])
                     .predict_proba(unit(x_test))[:, 1] for k in range(y.shape[1])], 1)


def chosen_by_cv(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, seed: int) -> np.ndarray:
    """The heads at the C whose 5-fold cross-validated mean AP on the training collages is best."""
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(x)) % 5
    scores = []
    for C in GRID:
        p = np.zeros(y.shape)
        for f in range(5):
            p[fold == f] = heads(x[fold != f], y[fold != f], x[fold == f], C, False)
        scores.append(mean_ap(y, p))
    return heads(x, y, x_test, GRID[int(np.argmax(scores))], False)


def one_seed(photos: dict[str, list[Path]], seed: int, n_train: int, n_test: int, work: Path) -> dict[str, np.ndarray]:
    """Every head's test probabilities for one seed's collages, and the test labels under ``"truth"``."""
    from imgclf.backbones import resolve
    from imgclf.embeddings import EmbeddingCache, embed_files
    from imgclf.files.locations import default_cache_dir
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    rng = np.random.default_rng(seed)
    order = {lab: [ps[i] for i in rng.permutation(len(ps))] for lab, ps in sorted(photos.items())}
    cut = {lab: int(0.7 * len(ps)) for lab, ps in order.items()}
    train = collages({lab: ps[:cut[lab]] for lab, ps in order.items()}, n_train, seed, work, f"s{seed}-train")
    test = collages({lab: ps[cut[lab]:] for lab, ps in order.items()}, n_test, seed + 1000, work, f"s{seed}-test")
    bb = resolve(cache_dir=default_cache_dir())
    emb = embed_files([p for p, _ in train + test], bb, EmbeddingCache(default_cache_dir(), bb.id))
    vectors = dict(zip(emb.paths, emb.vectors))

    def xy(rows):
        y = np.zeros((len(rows), len(photos)), int)
        for i, (_, ks) in enumerate(rows):
            y[i, ks] = 1
        return np.stack([vectors[p] for p, _ in rows]), y

    (x, y), (xt, yt) = xy(train), xy(test)
    found = {"truth": yt, BASELINE: OneVsRestClassifier(LogisticRegression(max_iter=5000)).fit(x, y).predict_proba(xt)}
    for C in GRID:
        found[f"sigmoid heads, unit embeddings, C = {C:g}"] = heads(x, y, xt, C, False)
        found[f"sigmoid heads, unit embeddings, C = {C:g}, class-balanced"] = heads(x, y, xt, C, True)
    found["sigmoid heads, unit embeddings, C by CV"] = chosen_by_cv(x, y, xt, seed)
    v, vt = views([p for p, _ in train], bb), views([p for p, _ in test], bb)
    for C in (10.0, 30.0):
        found[f"sigmoid heads on the whole photo, the most probable of 10 views, C = {C:g}"] = np.max(
            [heads(x, y, vt[:, k], C, False) for k in range(vt.shape[1])], axis=0)
        found[f"sigmoid heads on each label's strongest view (max-pooled views), C = {C:g}"] = heads(
            v.max(1), y, vt.max(1), C, False)
    found["scikit-learn one-vs-rest, max-pooled views"] = OneVsRestClassifier(LogisticRegression(max_iter=5000)).fit(
        v.max(1), y).predict_proba(vt.max(1))
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, nargs="?", default=ROOT.parent / "shared" / "datasets" / "flowers-bench")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--train", type=int, default=400)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    photos: dict[str, list[Path]] = {}
    for p in scan_labelled(args.data).photos:
        photos.setdefault(p.label, []).append(p.path)
    results: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="imgclf-multilabel-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for seed in range(args.seeds):
            found = one_seed(photos, seed, args.train, args.test, work)
            truth = found.pop("truth")
            for name, p in found.items():
                results.setdefault(name, []).append((mean_ap(truth, p), ece(truth, p)))
    print(f"## Several labels per collage: {args.seeds} seeds, {args.train} training and {args.test} test collages each\n")
    print("| head | mean AP (mean ± sd over seeds) | per-label ECE |\n|---|---|---|")
    base = np.mean([r[0] for r in results[BASELINE]])
    for name, rows in sorted(results.items(), key=lambda kv: -np.mean([r[0] for r in kv[1]])):
        r = np.array(rows)
        print(f"| {name} | {r[:, 0].mean():.3f} ± {r[:, 0].std():.3f} ({r[:, 0].mean() - base:+.3f}) | {r[:, 1].mean():.3f} |")


if __name__ == "__main__":
    main()
