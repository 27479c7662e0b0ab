"""Models that grow and answers that say as much as is known, measured on flowers-bench with repeated splits.

Usage: python benchmarks/grow.py [DATA_DIR] [--seeds 5] [--only sets add private advice cost hierarchy]
       (default: ../shared/datasets/flowers-bench; models trained by ``imgclf.train`` on symlinked subsets)

1. ``sets``: label sets (``--error-rate A``). Per seed, a model trained on 80 % of each label's photos; the other
   20 % answered with sets at A = 0.05 and 0.1: coverage (share of sets holding the right label) against the promised
   1 − A, mean set size, and the best guess's accuracy beside them.
2. ``add``: per seed, a model of 60 % of the photos grown by ``imgclf add`` with another 20 %, against ``train`` on
   those 80 % in the same data folder (which keeps its photos' splits); answers on the last 20 %: how many agree,
   and each model's accuracy. Then ``imgclf forget`` of one label against ``train`` without it. Times of each.
3. ``private``: near-unknown AUROC, leave one label out: per held-out label and seed, a model of 80 % of the other
   labels' photos, normal and ``--private``; AUROC of the other 20 % of known photos against the held-out label's.
4. ``advice``: per seed, 30 photos of each label set aside to test; the gain in accuracy (labels weighed alike)
   :func:`imgclf.heads.curves.advise` predicts from 10, 20 and 40 training photos of each label with 30 more, against
   the real gain on the test photos (logistic heads with the checks' C, and the imgclf model itself).
5. ``cost``: what drawing the learning curve costs, on the bundled example, flowers-bench and 20,000 vectors.
6. ``hierarchy``: a three-level tree made of the flowers (``plants/{composite: daisy, dandelion, sunflowers;
   other: roses, tulips}``), trained with ``--hierarchy``: accuracy per level, and where answers stop.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads, as the CLI does

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import imgclf  # noqa: E402
from imgclf.data import scan_labelled  # noqa: E402
from imgclf.heads.rejection import auroc  # noqa: E402
from unknown import link_tree  # noqa: E402  (a label may hold "/": nested folders)

RATES = (0.05, 0.1)


def split(photos: list[tuple[Path, str]], shares: list[float], seed: int) -> list[list[tuple[Path, str]]]:
    """``photos`` cut into parts of ``shares`` of each label, in a random order fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    parts: list[list[tuple[Path, str]]] = [[] for _ in shares]
    for label in sorted({lab for _, lab in photos}):
        mine = [p for p in photos if p[1] == label]
        order = rng.permutation(len(mine))
        edges = np.round(np.cumsum([0] + shares) * len(mine)).astype(int)
        for k in range(len(shares)):
            parts[k] += [mine[i] for i in order[edges[k]:edges[k + 1]]]
    return parts


def spread(values) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.3f} (min {v.min():.3f}, max {v.max():.3f})"


def sets(photos, seeds: int, tmp: Path) -> None:
    rows = {a: [] for a in RATES}
    for seed in range(seeds):
        train, test = split(photos, [0.8, 0.2], seed)
        imgclf.train(link_tree(tmp / f"sets-{seed}", train), tmp / f"sets-model-{seed}", seed=seed)
        for a in RATES:
            r = imgclf.evaluate(tmp / f"sets-model-{seed}", link_tree(tmp / f"sets-test-{seed}-{a}", test), error_rate=a)
            s = r["label_sets"]
            rows[a].append((s["coverage"], s["mean_size"], r["accuracy"], s["single_label"], s["n"]))
    print(f"## Label sets: {seeds} models, each tested on the 20 % of photos it was not trained on\n")
    print("| error rate A | promised coverage | coverage (mean, min, max) | mean set size | best guess right | sets of one label |")
    print("|---|---|---|---|---|---|")
    for a, r in rows.items():
        r = np.array(r)
        print(f"| {a} | ≥ {1 - a:.2f} | {spread(r[:, 0])} | {r[:, 1].mean():.2f} | {r[:, 2].mean():.3f} | {r[:, 3].mean():.2f} |")
    pooled = {a: np.sum([c * n for c, _, _, _, n in r]) / np.sum([n for *_, n in r]) for a, r in rows.items()}
    print(f"\npooled over {int(np.sum([row[4] for row in rows[RATES[0]]]))} test photos: "
          + ", ".join(f"A = {a}: {c:.3f}" for a, c in pooled.items()) + "\n")


def grow(photos, seeds: int, tmp: Path) -> None:
    agree, acc, times = [], [], []
    for seed in range(seeds):
        base, extra, test = split(photos, [0.6, 0.2, 0.2], seed)
        data = link_tree(tmp / f"add-data-{seed}", base)
        imgclf.train(data, tmp / f"add-base-{seed}", seed=seed)
        started = time.perf_counter()
        imgclf.add(tmp / f"add-base-{seed}", link_tree(tmp / f"add-extra-{seed}", extra), tmp / f"add-grown-{seed}")
        grown_s = time.perf_counter() - started
        link_tree(data, extra)
        started = time.perf_counter()
        imgclf.train(data, tmp / f"add-union-{seed}", seed=seed)
        union_s = time.perf_counter() - started
        paths = [p for p, _ in test]
        truth = [lab for _, lab in test]
        a = [p.label for p in imgclf.load(tmp / f"add-grown-{seed}").predict(paths, reject=False)]
        b = [p.label for p in imgclf.load(tmp / f"add-union-{seed}").predict(paths, reject=False)]
        agree.append(np.mean([x == y for x, y in zip(a, b)]))
        acc.append((np.mean([x == t for x, t in zip(a, truth)]), np.mean([y == t for y, t in zip(b, truth)])))
        times.append((grown_s, union_s))
        label = sorted({lab for _, lab in photos})[seed % 5]
        started = time.perf_counter()
        imgclf.forget(tmp / f"add-union-{seed}", labels=[label], output=tmp / f"forget-{seed}")
        forget_s = time.perf_counter() - started
        shutil.move(str(data / label), str(tmp / f"away-{seed}"))
        imgclf.train(data, tmp / f"without-{seed}", seed=seed)
        kept = [i for i, t in enumerate(truth) if t != label]
        c = [p.label for p in imgclf.load(tmp / f"forget-{seed}").predict([paths[i] for i in kept], reject=False)]
        d = [p.label for p in imgclf.load(tmp / f"without-{seed}").predict([paths[i] for i in kept], reject=False)]
        times[-1] += (forget_s, float(np.mean([x == y for x, y in zip(c, d)])))
    acc, times = np.array(acc), np.array(times)
    kept = tmp / f"add-union-{seeds - 1}" / "training-photos.npz"
    with np.load(kept) as table:
        rows = len(table["y"])
    print(f"training-photos.npz: {kept.stat().st_size / rows / 1024:.2f} KB a photo ({rows} photos)\n")
    print(f"## imgclf add and forget: {seeds} splits, answers on the 20 % of photos neither model saw\n")
    print("| | agreement with train on the same photos | accuracy | train on them | seconds | train's seconds |")
    print("|---|---|---|---|---|---|")
    print(f"| add 20 % to a model of 60 % | {spread(agree)} | {acc[:, 0].mean():.3f} | {acc[:, 1].mean():.3f} | "
          f"{np.median(times[:, 0]):.2f} | {np.median(times[:, 1]):.2f} |")
    print(f"| forget one label | {spread(times[:, 3])} | | | {np.median(times[:, 2]):.2f} | |\n")


def private(photos, seeds: int, tmp: Path) -> None:
    labels = sorted({lab for _, lab in photos})
    rows = []
    for held in labels:
        for seed in range(seeds):
            known = [p for p in photos if p[1] != held]
            train, test = split(known, [0.8, 0.2], seed)
            out = [p for p, lab in photos if lab == held]
            data = link_tree(tmp / f"priv-{held}-{seed}", train)
            got = []
            for private_ in (False, True):
                name = tmp / f"priv-model-{held}-{seed}-{private_}"
                imgclf.train(data, name, seed=seed, private=private_)
                model = imgclf.load(name)
                s_in = [p.similarity for p in model.predict([p for p, _ in test])]
                s_out = [p.similarity for p in model.predict(out)]
                got.append(auroc(np.array(s_in), np.array(s_out)))
            rows.append((held, *got))
    print(f"## --private: near-unknown AUROC, leave one label out ({seeds} splits per label)\n")
    print("| held-out label | normal model | --private |\n|---|---|---|")
    for lab in labels:
        r = np.array([row[1:] for row in rows if row[0] == lab])
        print(f"| {lab} | {r[:, 0].mean():.3f} | {r[:, 1].mean():.3f} |")
    r = np.array([row[1:] for row in rows])
    print(f"| **mean** | **{r[:, 0].mean():.3f}** | **{r[:, 1].mean():.3f}** |\n")
    print(f"AUROC over the {len(rows)} runs: normal {spread(r[:, 0])}; --private {spread(r[:, 1])}\n")


def advice(photos, seeds: int, tmp: Path) -> None:
    print(f"## More photos? The gain in accuracy predicted, and the real one ({seeds} seeds, 30 test photos a label)\n")
    print("| photos a label | predicted gain (min to max) | real gain, logistic heads (C = 10) | real gain, imgclf model | per label: "
          "correlation of predicted and real gains |\n|---|---|---|---|---|")
    for start in (10, 20, 40):
        advice_from(photos, seeds, tmp, start, 30)
    print()


def advice_from(photos, seeds: int, tmp: Path, start: int, more: int) -> None:
    from imgclf.backbones import resolve
    from imgclf.checks.labels import C
    from imgclf.embeddings import EmbeddingCache, embed_files
    from imgclf.files.locations import default_cache_dir
    from imgclf.heads.curves import advise, power_law_gain
    from imgclf.heads.linear import _Problem

    labels = sorted({lab for _, lab in photos})
    bb = resolve(cache_dir=default_cache_dir())
    emb = embed_files([p for p, _ in photos], bb, EmbeddingCache(default_cache_dir(), bb.id))
    vec = dict(zip(emb.paths, emb.vectors))
    rows, pairs = [], []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        first, added, test = [], [], []
        for lab in labels:
            mine = [p for p in photos if p[1] == lab]
            order = rng.permutation(len(mine))
            test += [mine[i] for i in order[:30]]
            first += [mine[i] for i in order[30:30 + start]]
            added += [mine[i] for i in order[30 + start:30 + start + more]]

        def xy(part):
            return np.stack([vec[p] for p, _ in part]), np.array([labels.index(lab) for _, lab in part])

        xt, yt = xy(test)
        advice = advise(*xy(first), labels, seed, more=more)
        predicted = advice.gain
        per_label = []  # the same power law fitted to each label's own curve: the gain the advice does not claim
        for k, lab in enumerate(labels):
            points = np.array(advice.label_curves[lab])
            per_label.append(power_law_gain(points[:, 0], points[:, 1], np.full(len(points), 2 * start), start, more))

        def recall_by_head(part):
            head = _Problem(*xy(part), len(labels)).path((C,))[0]
            guess = head.logits(xt).argmax(1)
            return np.array([np.mean(guess[yt == k] == k) for k in range(len(labels))])

        def accuracy_by_head(part):
            return recall_by_head(part).mean()

        def accuracy_by_model(part, name):
            imgclf.train(link_tree(tmp / f"advice-{name}-{seed}", part), tmp / f"advice-model-{name}-{seed}", seed=seed)
            preds = imgclf.load(tmp / f"advice-model-{name}-{seed}").predict([p for p, _ in test], reject=False)
            guess = np.array([labels.index(p.label) for p in preds])
            return np.mean([np.mean(guess[yt == k] == k) for k in range(len(labels))])

        real_per_label = recall_by_head(first + added) - recall_by_head(first)
        pairs += list(zip(per_label, real_per_label))
        rows.append((predicted, accuracy_by_head(first + added) - accuracy_by_head(first),
                     accuracy_by_model(first + added, f"{start}+{more}") - accuracy_by_model(first, f"{start}")))
    r = np.array(rows)
    print(f"| {start} → {start + more} | {r[:, 0].mean():+.3f} ({r[:, 0].min():+.3f} to {r[:, 0].max():+.3f}) | "
          f"{r[:, 1].mean():+.3f} ({r[:, 1].min():+.3f} to {r[:, 1].max():+.3f}) | "
          f"{r[:, 2].mean():+.3f} ({r[:, 2].min():+.3f} to {r[:, 2].max():+.3f}) | {np.corrcoef(np.array(pairs).T)[0, 1]:+.2f} |")


def cost(photos, seeds: int, tmp: Path) -> None:
    """What drawing the learning curve costs: the bundled example, flowers-bench, and 20,000 random 1,280-D vectors
    (the worst case for a solver; the curve's cost is capped at 400 photos a label)."""
    from imgclf.backbones import resolve
    from imgclf.embeddings import EmbeddingCache, embed_files
    from imgclf.files.locations import default_cache_dir
    from imgclf.heads.curves import advise

    bb = resolve(cache_dir=default_cache_dir())
    sets = []
    for folder in (ROOT / "examples" / "flowers" / "photos", None):
        found = [(p.path, p.label) for p in scan_labelled(folder).photos] if folder else photos
        labels = sorted({lab for _, lab in found})
        emb = embed_files([p for p, _ in found], bb, EmbeddingCache(default_cache_dir(), bb.id))
        index = dict(zip(emb.paths, emb.vectors))
        sets.append((f"{len(found)} photos", np.stack([index[p] for p, _ in found]),
                     np.array([labels.index(lab) for _, lab in found]), labels))
    rng = np.random.default_rng(0)
    sets.append(("20,000 random vectors", rng.normal(size=(20000, 1280)).astype(np.float32), rng.integers(0, 5, 20000),
                 list("abcde")))
    print("## What the learning curve costs (best of 3, one process)\n\n| photos | seconds |\n|---|---|")
    for name, x, y, labels in sets:
        best = min(_timed(lambda: advise(x, y, labels)) for _ in range(3))
        print(f"| {name} | {best:.3f} |")
    print()


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def hierarchy(photos, seeds: int, tmp: Path) -> None:
    tree = {"daisy": "plants/composite/daisy", "dandelion": "plants/composite/dandelion",
            "sunflowers": "plants/composite/sunflowers", "roses": "plants/other/roses", "tulips": "plants/other/tulips"}
    rows = []
    for seed in range(seeds):
        train, test = split(photos, [0.8, 0.2], seed)
        data = link_tree(tmp / f"tree-{seed}", [(p, tree[lab]) for p, lab in train])
        imgclf.train(data, tmp / f"tree-model-{seed}", seed=seed, hierarchy=True)
        r = imgclf.evaluate(tmp / f"tree-model-{seed}", link_tree(tmp / f"tree-test-{seed}", [(p, tree[lab]) for p, lab in test]))
        rows.append(r["hierarchy"])
    print(f"## Hierarchy: plants / composite or other / five flowers ({seeds} seeds)\n")
    print("| level | accuracy (best guess at that level) | answers that stop there | right when they stop there |\n|---|---|---|---|")
    for depth in range(len(rows[0]["levels"])):
        lv = [r["levels"][depth] for r in rows]
        print(f"| {depth + 1} | {np.mean([x['accuracy'] for x in lv]):.3f} | {np.mean([x['stopped'] for x in lv]):.3f} | "
              f"{np.nanmean([np.nan if x['stopped_right'] is None else x['stopped_right'] for x in lv]):.3f} |")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, nargs="?", default=ROOT.parent / "shared" / "datasets" / "flowers-bench")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--only", nargs="+", default=["sets", "add", "private", "advice", "cost", "hierarchy"])
    args = ap.parse_args()
    ds = scan_labelled(args.data)
    photos = [(p.path, p.label) for p in ds.photos]
    steps = {"sets": sets, "add": grow, "private": private, "advice": advice, "cost": cost, "hierarchy": hierarchy}
    with tempfile.TemporaryDirectory(prefix="imgclf-grow-") as tmp:
        for name in args.only:
            steps[name](photos, args.seeds, Path(tmp))


if __name__ == "__main__":
    main()
