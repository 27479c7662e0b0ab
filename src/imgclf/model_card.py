"""The model card (``README.md`` in a model folder): what the model is, how good, how to use it."""

from __future__ import annotations


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def render_card(meta: dict, metrics: dict) -> str:
    """Markdown model card from the model's metadata and metrics."""
    labels = meta["labels"]
    counts = metrics["counts"]
    rows = "\n".join(
        f"| {lab} | {c['train']} | {c['val']} | {c['test']} |" for lab, c in counts.items()
    )
    test, val = metrics.get("test") or {}, metrics.get("val") or {}
    per_class = ""
    if test.get("per_class"):
        per_class = "\n\nPer class on the test split:\n\n| label | precision | recall | F1 | support |\n|---|---|---|---|---|\n" + "\n".join(
            f"| {lab} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |" for lab, m in test["per_class"].items()
        )
    skipped = metrics.get("skipped") or []
    skipped_txt = f"\n\n{len(skipped)} file(s) were skipped (see `metrics.json`)." if skipped else ""
    warnings = "".join(f"\n- {w}" for w in metrics.get("warnings") or [])
    warnings_block = f"\n\nData warnings:{warnings}" if warnings else ""
    bb = meta["backbone"]
    pre = meta["preprocessing"]
    return f"""# imgclf model: {', '.join(labels)}

An image classifier trained with imgclf {meta['imgclf_version']} on {meta['created']}.
It tells which of {len(labels)} labels a photo shows: {', '.join(labels)}.
Intended use: photos like the ones it was trained on; a photo of anything else still gets one of these labels.

## Data

| label | train | val | test |
|---|---|---|---|
{rows}
{skipped_txt}{warnings_block}

## Metrics

- validation accuracy: {_pct(val.get('accuracy'))} ({val.get('n', 0)} photos)
- test accuracy: {_pct(test.get('accuracy'))} ({test.get('n', 0)} photos){per_class}

## How it was made

- backbone: `{bb['name']}` (timm `{bb['timm_name']}`, weights: {bb['weights']}), {bb['dim']}-D embeddings
- head: softmax linear classifier on L2-normalised embeddings, C = {meta['head']['C']}, class-balanced
- command: `{meta['command']}`

## How to use it

```
imgclf predict {{this folder}} photo.jpg
```

```python
import imgclf
model = imgclf.load("path/to/this/folder")
print(model.predict(["photo.jpg"])[0].to_dict())
```

`model.onnx` maps a preprocessed batch `input` (N, 3, {pre['input_size']}, {pre['input_size']}) to `probabilities`
(N, {len(labels)}) in the order of `labels.json`. Preprocessing: resize the shorter side to
floor({pre['input_size']} / {pre['crop_pct']}) with {pre['interpolation']} interpolation, centre-crop
{pre['input_size']}, scale to [0, 1], subtract mean {list(pre['mean'])} and divide by std {list(pre['std'])}.
"""
