"""Does "unknown" keep its promise on photos it was never calibrated on? Repeated splits, real models.

Usage: python benchmarks/unknown.py [DATA_DIR ...] [--repeats 2] [--far DIR] [--faces DIR]
       (default: ../shared/datasets/flowers-bench and examples/flowers/photos; far: examples/not-flowers)

Every figure comes from models trained by ``imgclf.train`` on symlinked subsets and scored
by ``Model.predict`` (the ONNX ``similarity`` output and the stored threshold):

1. Acceptance: stratified 5-fold splits, ``--repeats`` times; train on four folds, then
   the share of the fifth fold's photos accepted, against the model's own promise.
2. Near-unknowns (first DATA_DIR): leave one label out; train on 80 % of the others' photos;
   AUROC of the held-out label's photos against the known labels' remaining 20 %, and the
   share of each rejected at the stored threshold; the far photos too. The candidate scores
   are compared on the same splits and embeddings.
3. One label (first DATA_DIR): a verifier per label, against the other labels and the far photos;
   and with ``--faces PEOPLE_DIR`` one person against the strangers beside it.
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

import imgclf  # noqa: E402
from imgclf.data import scan_labelled  # noqa: E402
from imgclf.heads.estimate import folds_for  # noqa: E402
from imgclf.heads.rejection import UNKNOWN, Reference, auroc  # noqa: E402


def link_tree(root: Path, photos: list[tuple[Path, str]]) -> Path:
    """A data folder of symlinks: ``root/<label>/<name>``."""
    for path, label in photos:
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / path.name).symlink_to(path.resolve())
    return root


def train(tmp: Path, name: str, photos: list[tuple[Path, str]], seed: int):
    data = link_tree(tmp / f"{name}-data", photos)
    imgclf.train(data, tmp / name, seed=seed)
    return imgclf.load(tmp / name)


def scored(model, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(similarity, accepted) of every readable photo."""
    preds = [p for p in model.predict(paths) if not p.error and p.similarity is not None]
    return np.array([p.similarity for p in preds]), np.array([p.label != UNKNOWN for p in preds])


def spread(values) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.3f} ± {v.std():.3f} (min {v.min():.3f}, max {v.max():.3f}, n={len(v)})"


def acceptance(data_dir: Path, repeats: int, tmp: Path) -> None:
    ds = scan_labelled(data_dir)
    photos = [(p.path, p.label) for p in ds.photos]
    y = np.array([ds.labels.index(lab) for _, lab in photos])
    got, promised = [], []
    for rep in range(repeats):
        for f, (tr, te) in enumerate(folds_for(y, seed=100 + rep)):
            model = train(tmp, f"acc-{data_dir.name}-{rep}-{f}", [photos[i] for i in tr], seed=rep)
            _, accepted = scored(model, [photos[i][0] for i in te])
            got.append(accepted.mean())
            promised.append(model.meta["rejection"]["expected_acceptance"])
    print(f"| {data_dir.name} ({len(photos)} photos) | {spread(got)} | {np.mean(promised):.3f} | {np.mean(got) - 0.95:+.3f} |")


def candidates(x: np.ndarray, y: np.ndarray, tr: np.ndarray, ev: np.ndarray, known: list[int]) -> dict[str, np.ndarray]:
    """Scores of the photos ``ev`` from the training photos ``tr`` (higher = more like the known labels)."""
    from imgclf.heads.linear import fit_head, l2_normalize

    u = l2_normalize(x)
    ref = Reference.fit(x[tr], y[tr], known)
    protos = (u[ev] @ ref.prototypes.T).max(1)
    nearest = (u[ev] @ ref.photos.T).max(1)
    head = fit_head(x[tr], np.searchsorted(known, y[tr]), len(known))
    logits = head.logits(x[ev])
    z = logits - logits.max(1, keepdims=True)
    energy = logits.max(1) + np.log(np.exp(z).sum(1))
    train_logits = head.logits(x[tr])
    train_energy = train_logits.max(1) + np.log(np.exp(train_logits - train_logits.max(1, keepdims=True)).sum(1))
    used, used_train = ref.similarity(x[ev]), ref.similarity(x[tr])
    blend = (used - used_train.mean()) / used_train.std() + (energy - train_energy.mean()) / train_energy.std()
    return {
        "mean of prototype and nearest-photo cosines (used)": used,
        "z-scored sum of the used score and the energy": blend,
        **_mahalanobis(u[tr], np.searchsorted(known, y[tr]), u[ev], dims=64),
        "prototype cosine (used before)": protos,
        "nearest training photo cosine": nearest,
        "softmax confidence": 1 / np.exp(z).sum(1),
        "energy of the head's logits": energy,
    }


def _mahalanobis(x_tr: np.ndarray, y_tr: np.ndarray, x_ev: np.ndarray, dims: int) -> dict[str, np.ndarray]:
    """Class-conditional and relative Mahalanobis scores (shared covariance) in the top ``dims`` principal components."""
    mu = x_tr.mean(0)
    basis = np.linalg.svd(x_tr - mu, full_matrices=False)[2][:dims]
    z_tr, z_ev = (x_tr - mu) @ basis.T, (x_ev - mu) @ basis.T
    means = np.stack([z_tr[y_tr == c].mean(0) for c in np.unique(y_tr)])
    resid = z_tr - means[np.searchsorted(np.unique(y_tr), y_tr)]
    inv = np.linalg.inv(resid.T @ resid / len(z_tr) + 1e-3 * np.eye(dims))
    inv0 = np.linalg.inv(np.cov(z_tr.T) + 1e-3 * np.eye(dims))
    d = np.stack([np.einsum("nd,de,ne->n", z_ev - m, inv, z_ev - m) for m in means], 1)
    d0 = np.einsum("nd,de,ne->n", z_ev - z_tr.mean(0), inv0, z_ev - z_tr.mean(0))
    return {"class-conditional Mahalanobis (64 PCs)": -d.min(1), "relative Mahalanobis (64 PCs)": -(d - d0[:, None]).min(1)}


def near_unknowns(data_dir: Path, far: list[Path], repeats: int, tmp: Path) -> None:
    from imgclf.backbones import resolve
    from imgclf.embeddings.cache import EmbeddingCache
    from imgclf.files.locations import default_cache_dir
    from imgclf.embeddings.compute import embed_files

    ds = scan_labelled(data_dir)
    photos = [(p.path, p.label) for p in ds.photos]
    bb = resolve(cache_dir=default_cache_dir())
    emb = embed_files([p for p, _ in photos], bb, EmbeddingCache(default_cache_dir(), bb.id))
    index = {p: i for i, p in enumerate(emb.paths)}
    x = emb.vectors[[index[p] for p, _ in photos]]
    y = np.array([ds.labels.index(lab) for _, lab in photos])
    rng = np.random.default_rng(0)
    rows, cand = [], {}
    for held, held_label in enumerate(ds.labels):
        for rep in range(repeats):
            known = [c for c in range(len(ds.labels)) if c != held]
            idx = rng.permutation(np.flatnonzero(y != held))
            cut = int(0.8 * len(idx))
            tr, te, out = idx[:cut], idx[cut:], np.flatnonzero(y == held)
            model = train(tmp, f"lolo-{held}-{rep}", [photos[i] for i in tr], seed=rep)
            s_in, a_in = scored(model, [photos[i][0] for i in te])
            s_out, a_out = scored(model, [photos[i][0] for i in out])
            s_far, a_far = scored(model, far)
            rows.append((held_label, auroc(s_in, s_out), a_in.mean(), 1 - a_out.mean(), 1 - a_far.mean(), auroc(s_in, s_far)))
            ev = np.concatenate([te, out])
            for name, v in candidates(x, y, tr, ev, known).items():
                cand.setdefault(name, {}).setdefault(held_label, []).append(auroc(v[: len(te)], v[len(te):]))
    print("| held-out label | AUROC (imgclf model) | known accepted | held-out rejected | far rejected | far AUROC |")
    print("|---|---|---|---|---|---|")
    for lab in ds.labels:
        r = np.array([row[1:] for row in rows if row[0] == lab])
        print(f"| {lab} | " + " | ".join(f"{v:.3f}" for v in r.mean(0)) + " |")
    r = np.array([row[1:] for row in rows])
    print("| **mean** | " + " | ".join(f"**{v:.3f}**" for v in r.mean(0)) + " |")
    print(f"\nAUROC spread over the {len(rows)} runs: {spread(r[:, 0])}; far photos rejected: min {r[:, 3].min():.3f}\n")
    print("| score, same splits and embeddings | " + " | ".join(ds.labels) + " | mean |")
    print("|---|" + "---|" * (len(ds.labels) + 1))
    for name, per in sorted(cand.items(), key=lambda kv: -np.mean([np.mean(v) for v in kv[1].values()])):
        means = [np.mean(per[lab]) for lab in ds.labels]
        print(f"| {name} | " + " | ".join(f"{m:.3f}" for m in means) + f" | {np.mean(means):.3f} |")


def one_label(data_dir: Path, far: list[Path], tmp: Path) -> None:
    ds = scan_labelled(data_dir)
    print("| verifier of | own photos accepted | other labels rejected | other labels AUROC | far rejected |")
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(1)
    for label in ds.labels:
        own = [p.path for p in ds.photos if p.label == label]
        own = [own[i] for i in rng.permutation(len(own))]
        cut = int(0.8 * len(own))
        model = train(tmp, f"one-{label}", [(p, label) for p in own[:cut]], seed=0)
        s_in, a_in = scored(model, own[cut:])
        s_out, a_out = scored(model, [p.path for p in ds.photos if p.label != label])
        _, a_far = scored(model, far)
        print(f"| {label} | {a_in.mean():.3f} | {1 - a_out.mean():.3f} | {auroc(s_in, s_out):.3f} | {1 - a_far.mean():.3f} |")


def one_person(people: Path, tmp: Path) -> None:
    print("| face verifier | strangers | the other person | threshold |\n|---|---|---|---|")
    strangers = sorted((people.parent / "strangers").glob("*.jpg"))
    for person in sorted(d for d in people.iterdir() if d.is_dir()):
        others = [p for d in people.iterdir() if d.is_dir() and d != person for p in sorted(d.glob("*.jpg"))]
        data = link_tree(tmp / f"face-{person.name}-data", [(p, person.name) for p in sorted(person.glob("*.jpg"))])
        imgclf.train(data, tmp / f"face-{person.name}", backbone="face")
        model = imgclf.load(tmp / f"face-{person.name}")
        _, a_str = scored(model, strangers)
        _, a_oth = scored(model, others)
        print(f"| {person.name} ({len(list(person.glob('*.jpg')))} photos) | {1 - a_str.mean():.3f} rejected | "
              f"{1 - a_oth.mean():.3f} rejected | {model.threshold:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dirs", type=Path, nargs="*",
                    default=[ROOT.parent / "shared" / "datasets" / "flowers-bench", ROOT / "examples" / "flowers" / "photos"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--far", type=Path, default=ROOT / "examples" / "not-flowers")
    ap.add_argument("--faces", type=Path, default=None, help="a people/ folder with strangers/ beside it (needs imgclf[face])")
    args = ap.parse_args()
    far = sorted(args.far.glob("*.jpg"))
    with tempfile.TemporaryDirectory(prefix="imgclf-unknown-") as tmp:
        tmp = Path(tmp)
        print("## 1. Acceptance of new photos of the known labels (promise: 95 %)\n")
        print("| data | accepted on the held-out fold | promised (expected_acceptance) | mean − 0.95 |\n|---|---|---|---|")
        for d in args.data_dirs:
            acceptance(d, args.repeats, tmp)
        print(f"\n## 2. Near-unknowns: leave one label out of {args.data_dirs[0].name} (far photos: {args.far})\n")
        near_unknowns(args.data_dirs[0], far, args.repeats, tmp)
        print(f"\n## 3. One-label models on {args.data_dirs[0].name}\n")
        one_label(args.data_dirs[0], far, tmp)
        if args.faces:
            print()
            one_person(args.faces, tmp)


if __name__ == "__main__":
    main()
