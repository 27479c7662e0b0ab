"""Held-out accuracy and wall time of imgclf on a labelled folder, against the plain baseline.

Usage:
  python benchmarks/accuracy.py DATA_DIR                 # cold/warm `imgclf train`, k-fold accuracy of the default
  python benchmarks/accuracy.py DATA_DIR --compare       # + (b) augmented views, (c) --fine-tune, (d) baseline
  python benchmarks/accuracy.py DATA_DIR --variants      # other test-time inputs and backbones, with near-unknown AUROC

Every accuracy is on photos the model never saw nor selected anything with: stratified
k-fold, repeated (`--repeats`), hyper-parameters chosen on a validation part of the
training folds only. Rows:
  (a) imgclf default: linear head on cached embeddings, C chosen on validation
  (b) imgclf --augment 4: the same plus 4 cached augmented views per training photo
  (c) imgclf --fine-tune: the full `imgclf.train(fine_tune=True)` path, on the first `--fine-tune-folds` folds
      (`--fine-tune-set trainable_blocks=0 epochs=15 ...` overrides FineTuneConfig fields), each
      printed next to (a) on the same fold
  (d) the baseline a user would write: scikit-learn LogisticRegression (defaults, max_iter=1000)
      on single-centre-crop timm features of the same backbone, computed in PyTorch eager

``--variants`` trains the head of row (a) on other features of the same photos and splits: the whole photo uncropped
or padded to a square, the photo and its mirror image averaged, the ten views of the multi-label backbone
(``imgclf.backbones.views``), and Lite0 with EfficientNet-Lite2 side by side (the ``lite2`` extra). Each row gives the
paired difference against (a) fold by fold, near-unknown AUROC (each label left out in turn: a reference of the other
labels' training photos, scored on test photos of the known labels against the left-out label's) and the time a
photo's features take (the graphs each needs, 32 photos, as training runs them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def run_train(data: Path, out: Path, cache: Path, *extra: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "imgclf.cli", "train", str(data), "-o", str(out), "--cache-dir", str(cache), "-q", *extra],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def folds(y: np.ndarray, k: int, repeats: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(fit, val, test) index triples: k-fold test parts, val = one eighth of the rest."""
    from imgclf.heads.linear import stratified_folds

    out = []
    for rep in range(repeats):
        for rest, test in stratified_folds(y, k, seed=rep):
            fit_i, val_i = stratified_folds(y[rest], 8, seed=100 + rep)[0]
            out.append((rest[fit_i], rest[val_i], test))
    return out


def fmt(accs: list[float]) -> str:
    return f"{np.mean(accs):.3f} ± {np.std(accs):.3f} (n={len(accs)}, min {min(accs):.3f}, max {max(accs):.3f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--compare", action="store_true")
    ap.add_argument("--fine-tune-folds", type=int, default=2)
    ap.add_argument("--fine-tune-skip", type=int, default=0, help="start (c) at this fold (with --repeats 4: 10 = the second 10 splits)")
    ap.add_argument("--fine-tune-set", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="FineTuneConfig fields for (c), e.g. trainable_blocks=0 epochs=15 lr=1e-4")
    ap.add_argument("--augment", type=int, default=4)
    ap.add_argument("--variants", action="store_true")
    args = ap.parse_args()

    from imgclf.backbones import resolve
    from imgclf.embeddings.cache import EmbeddingCache
    from imgclf.data import scan_labelled
    from imgclf.embeddings.compute import embed_files, embed_views
    from imgclf.heads.linear import fit_head, refit
    from imgclf.data.views import views_for

    tmp = Path(tempfile.mkdtemp(prefix="imgclf-bench-"))
    cache = tmp / "cache"
    cold = run_train(args.data_dir, tmp / "model", cache)
    warm = run_train(args.data_dir, tmp / "model", cache)
    metrics = json.loads((tmp / "model" / "metrics.json").read_text())
    n = sum(sum(c.values()) for c in metrics["counts"].values())
    print(f"dataset: {args.data_dir} ({n} photos, {len(metrics['counts'])} labels), {os.cpu_count()} CPU cores")
    print(f"cold `imgclf train` (ONNX export + embed all): {cold:6.1f} s")
    print(f"warm `imgclf train` (all cached):              {warm:6.1f} s   warm/cold = {warm / cold:.3f}")
    for split in ("val", "test"):
        s = metrics.get(split)
        if s:
            print(f"its own {split} split: accuracy {s['accuracy']:.3f} ({s['n']} photos)")

    ds = scan_labelled(args.data_dir, 0, 0)
    bb = resolve(cache_dir=cache)
    emb = embed_files([p.path for p in ds.photos], bb, EmbeddingCache(cache, bb.id))
    label_of = {p.path: p.label for p in ds.photos}
    y = np.array([ds.labels.index(label_of[p]) for p in emb.paths])
    x = emb.vectors
    splits = folds(y, args.folds, args.repeats)
    k = len(ds.labels)

    def head_accuracy(x_fit, y_fit, fit, val, test, tta=None) -> float:
        """What `imgclf train` does: C chosen on val, then refitted on train + val.

        ``tta``: embeddings of the test photos' mirror images, averaged in as `predict --tta` does.
        """
        head = fit_head(x_fit, y_fit, k, x[val], y[val])
        head = refit(head, np.concatenate([x_fit, x[val]]), np.concatenate([y_fit, y[val]]), k)
        probs = head.probabilities(x[test])
        if tta is not None:
            probs = (probs + head.probabilities(tta)) / 2
        return float(np.mean(probs.argmax(1) == y[test]))

    t = time.perf_counter()
    acc_a = [head_accuracy(x[f], y[f], f, v, te) for f, v, te in splits]
    rows = [("(a) imgclf default", acc_a, f"{cold:.1f} s cold / {warm:.1f} s warm (CLI)")]
    print(f"(a) imgclf default                {fmt(acc_a)}")
    if args.variants:
        variants(ds, emb, y, splits, bb, cache)
    if not args.compare:
        return

    names = views_for(args.augment)
    t = time.perf_counter()
    views, _ = embed_views(emb.paths, emb.hashes, bb, EmbeddingCache(cache, bb.id), names)
    t_views = time.perf_counter() - t
    acc_b = []
    for f, v, te in splits:
        x_fit = np.concatenate([x[f], views[f].reshape(-1, bb.dim)])
        y_fit = np.concatenate([y[f], np.repeat(y[f], len(names))])
        acc_b.append(head_accuracy(x_fit, y_fit, f, v, te))
    rows.append((f"(b) imgclf --augment {args.augment}", acc_b, f"+{t_views:.1f} s to embed {len(names)} views once"))
    print(f"(b) imgclf --augment {args.augment}            {fmt(acc_b)}")
    # the "flip" view is the mirrored centre crop: exactly what `predict --tta` adds (tests/test_api.py)
    flip = names.index("flip")
    acc_e = [head_accuracy(x[f], y[f], f, v, te, tta=views[te, flip]) for f, v, te in splits]
    diff = np.array(acc_e) - np.array(acc_a)
    rows.append(("(e) (a) + predict --tta", acc_e, f"2x predict time; paired gain {diff.mean():+.3f} ± {diff.std():.3f}, better on {(diff > 0).sum()} folds, worse on {(diff < 0).sum()}"))
    print(f"(e) (a) + predict --tta           {fmt(acc_e)}")

    acc_d, t_d = baseline(ds, emb.paths, y, splits)
    rows.append(("(d) baseline: sklearn LR on timm features", acc_d, f"{t_d:.1f} s (torch eager features + fits)"))
    print(f"(d) baseline sklearn+timm         {fmt(acc_d)}")

    acc_c, times_c, kept = [], [], []
    config = fine_tune_config(args.fine_tune_set) if args.fine_tune_set else True
    for f, v, te in splits[args.fine_tune_skip: args.fine_tune_skip + args.fine_tune_folds]:
        acc, seconds, ft = fine_tune_fold(tmp, cache, [emb.paths[i] for i in f], [emb.paths[i] for i in v], [emb.paths[i] for i in te],
                                          ds, config)
        acc_c.append(acc)
        times_c.append(seconds)
        kept.append(ft["kept"] == "fine-tuned")
        print(f"(c) fine-tune fold {len(acc_c)}: accuracy {acc:.3f} in {seconds:.0f} s, {ft['kept']} kept (validation "
              f"{ft['probe_val_accuracy']:.3f} frozen, {ft['best_val_accuracy']:.3f} best epoch {ft['best_epoch']}, "
              f"chance {ft['chance_of_no_gain']:.3f}; "
              f"(a) on this fold: {acc_a[args.fine_tune_skip + len(acc_c) - 1]:.3f})", flush=True)
    paired = np.round(np.array(acc_c) - np.array(acc_a[args.fine_tune_skip: args.fine_tune_skip + len(acc_c)]), 3)  # train rounds its metrics to 6 places
    rows.append(("(c) imgclf --fine-tune", acc_c, f"{np.mean(times_c):.0f} s per training (CLI path, cached embeddings); "
                 f"kept on {sum(kept)} of {len(kept)} folds; paired with (a) {paired.mean():+.3f} ± {paired.std():.3f}, "
                 f"below it on {(paired < 0).sum()}"))

    print("\n| method | held-out accuracy (mean ± std over folds) | wall time |\n|---|---|---|")
    for name, accs, when in rows:
        print(f"| {name} | {np.mean(accs):.3f} ± {np.std(accs):.3f} (n={len(accs)}) | {when} |")
    print(f"\n(a) - (d) = {np.mean(acc_a) - np.mean(acc_d):+.3f}")


def variants(ds, emb, y, splits, bb, cache) -> None:
    """Row (a)'s head on other features of the same photos: accuracy, near-unknown AUROC and cost against (a)."""
    from dataclasses import replace

    from sklearn.linear_model import LogisticRegression

    from imgclf.backbones import resolve
    from imgclf.backbones.views import with_views
    from imgclf.embeddings.cache import EmbeddingCache
    from imgclf.embeddings.compute import embed_files, embed_views
    from imgclf.heads.linear import fit_head, l2_normalize, refit

    k, paths = len(ds.labels), emb.paths
    sample = paths[:: max(1, len(paths) // 32)][:32]
    assert len(sample) == 32

    def features(backbone):
        """(embeddings of every photo, seconds a photo on the sample, its graph already loaded once)."""
        vectors = embed_files(paths, backbone, EmbeddingCache(cache, backbone.id)).vectors
        return vectors, timed(lambda: embed_files(sample, backbone, None))

    whole, t_whole = emb.vectors, features(bb)[1]
    uncropped, t_uncropped = features(replace(bb, id=f"{bb.id}-uncropped", preprocessing=replace(bb.preprocessing, crop_pct=1.0)))
    padded, t_padded = padded_features(bb, paths, sample)
    flip = embed_views(paths, emb.hashes, bb, EmbeddingCache(cache, bb.id), ["flip"])[0][:, 0]
    t_flip = timed(lambda: embed_views(sample, [f"sample-{i}" for i in range(len(sample))], bb, None, ["flip"]))
    vb = with_views(bb, cache)
    views, t_views = features(vb)
    views = views.reshape(len(paths), vb.views, -1)
    rows = {
        "(a) the whole photo, 87.5 % centre crop (default)": (whole, t_whole),
        "the whole photo, uncropped centre square": (uncropped, t_uncropped),
        "the whole photo padded to a square": (padded, t_padded),
        "(a) + its mirror image, averaged": (l2_normalize(whole) + l2_normalize(flip), t_whole + t_flip),
        "(a) + the mean of ten views (448 px)": (l2_normalize(whole) + l2_normalize(views.mean(1)), t_whole + t_views),
        "the ten views' element-wise largest": (views.max(1), t_views),
    }
    try:
        lite2, t_lite2 = features(resolve("efficientnet_lite2", cache_dir=cache))
        rows["EfficientNet-Lite2 alone"] = (lite2, t_lite2)
        rows["Lite0 + Lite2 side by side"] = (np.hstack([l2_normalize(whole), l2_normalize(lite2)]), t_whole + t_lite2)
    except Exception as e:  # the lite2 extra is optional
        print(f"Lite2 rows left out: {e}")

    def scores(x):
        accs, near = [], []
        for f, v, te in splits:
            head = refit(fit_head(x[f], y[f], k, x[v], y[v]), x[np.concatenate([f, v])], y[np.concatenate([f, v])], k)
            accs.append(float(np.mean(head.probabilities(x[te]).argmax(1) == y[te])))
            near.append(near_unknown_auroc(x, y, np.concatenate([f, v]), te, k))
        return np.array(accs), np.array(near)

    results = {name: scores(x) for name, (x, _) in rows.items()}
    base_acc, base_near = results[next(iter(rows))]
    probe = [float(LogisticRegression(max_iter=1000).fit(whole[np.concatenate([f, v])], y[np.concatenate([f, v])]).score(whole[te], y[te]))
             for f, v, te in splits]
    print("\n| features (imgclf's head) | held-out accuracy | vs (a), paired | near-unknown AUROC | vs (a), paired | time a photo |")
    print("|---|---|---|---|---|---|")
    for name, (_, seconds) in rows.items():
        acc, near = results[name]
        print(f"| {name} | {acc.mean():.3f} ± {acc.std():.3f} | {np.mean(acc - base_acc):+.3f} ± {np.std(acc - base_acc):.3f} | "
              f"{near.mean():.3f} ± {near.std():.3f} | {np.mean(near - base_near):+.3f} ± {np.std(near - base_near):.3f} | "
              f"{1000 * seconds:.0f} ms ({seconds / t_whole:.1f}x) |")
    print(f"| scikit-learn LogisticRegression on (a)'s features | {np.mean(probe):.3f} ± {np.std(probe):.3f} | "
          f"{np.mean(np.array(probe) - base_acc):+.3f} ± {np.std(np.array(probe) - base_acc):.3f} | | | |")


def timed(embed_sample) -> float:
    """Seconds a photo of ``embed_sample`` (32 photos), the better of two runs after one to load its graph."""
    embed_sample()
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        embed_sample()
        best = min(best, time.perf_counter() - started)
    return best / 32


def near_unknown_auroc(x, y, known_i, test_i, k) -> float:
    """Mean over labels of the AUROC separating test photos of the other labels from the left-out label's, scored
    against a reference of the other labels' ``known_i`` photos."""
    from imgclf.heads.rejection import Reference, auroc

    out = []
    for left in range(k):
        known = [c for c in range(k) if c != left]
        inside = known_i[y[known_i] != left]
        ref = Reference.fit(x[inside], y[inside], known)
        out.append(auroc(ref.similarity(x[test_i[y[test_i] != left]]), ref.similarity(x[test_i[y[test_i] == left]])))
    return float(np.mean(out))


def padded_features(bb, paths, sample):
    """Embeddings of each whole photo scaled into the input square and padded with grey; seconds a photo."""
    from PIL import Image

    from imgclf.runtime.images import load_image
    from imgclf.runtime.preprocessing import normalize
    from imgclf.runtime.session import create_session

    pre, session = bb.preprocessing, create_session(bb.onnx_path)

    def square(p):
        img = load_image(p)
        scale = pre.input_size / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BICUBIC)
        canvas = Image.new("RGB", (pre.input_size, pre.input_size), (128, 128, 128))
        canvas.paste(img, ((pre.input_size - img.width) // 2, (pre.input_size - img.height) // 2))
        return normalize(canvas, pre)

    def embed(items):
        return np.concatenate([session.run(None, {"input": np.stack([square(p) for p in items[i:i + 32]])})[0]
                               for i in range(0, len(items), 32)])

    return embed(paths), timed(lambda: embed(sample))


def baseline(ds, paths, y, splits) -> tuple[list[float], float]:
    """What a user writes by hand: timm features of the centre crop + sklearn's LogisticRegression."""
    import timm
    import torch
    from PIL import Image
    from sklearn.linear_model import LogisticRegression

    from imgclf.backbones import builtin_weights_file
    from imgclf.backbones.torch_export import build_model

    t = time.perf_counter()
    torch.set_num_threads(os.cpu_count() or 1)
    model = build_model("tf_efficientnet_lite0", builtin_weights_file("efficientnet_lite0"))
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    feats = []
    with torch.no_grad():
        for i in range(0, len(paths), 32):
            batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[i : i + 32]])
            feats.append(model(batch).numpy())
    x = np.concatenate(feats)
    accs = []
    for f, v, te in splits:
        clf = LogisticRegression(max_iter=1000).fit(x[np.concatenate([f, v])], y[np.concatenate([f, v])])
        accs.append(float(clf.score(x[te], y[te])))
    return accs, time.perf_counter() - t


def fine_tune_config(settings: list[str]):
    """``FineTuneConfig`` with ``FIELD=VALUE`` overrides (each value read as its field's default type)."""
    from dataclasses import fields

    from imgclf.training.finetune import FineTuneConfig

    types = {f.name: type(f.default) for f in fields(FineTuneConfig)}
    values = {}
    for setting in settings:
        name, _, value = setting.partition("=")
        if name not in types:
            sys.exit(f"--fine-tune-set: no FineTuneConfig field {name!r} (fields: {', '.join(types)})")
        values[name] = types[name](value)
    return FineTuneConfig(**values)


def fine_tune_fold(tmp: Path, cache: Path, fit, val, test, ds, config=True) -> tuple[float, float, dict]:
    """The real `imgclf.train(fine_tune=True)` on a train/val/test folder of symlinks."""
    import shutil

    import imgclf

    label_of = {p.path: p.label for p in ds.photos}
    root = tmp / "fold"
    shutil.rmtree(root, ignore_errors=True)
    for split, items in (("train", fit), ("val", val), ("test", test)):
        for p in items:
            d = root / split / label_of[p]
            d.mkdir(parents=True, exist_ok=True)
            (d / p.name).symlink_to(p.resolve())
    t = time.perf_counter()
    result = imgclf.train(root, tmp / "ft-model", cache_dir=cache, fine_tune=config)
    return float(result.test_accuracy), time.perf_counter() - t, result.metrics["fine_tune"]


if __name__ == "__main__":
    main()
