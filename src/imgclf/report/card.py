"""The model card (``README.md`` in a model folder): what the model is for, how good, its limits, how to run it."""

from __future__ import annotations

import html
import math
import re

from imgclf.files import printable
from imgclf.heads.estimate import MIN_HELD_OUT, describe

#: Classes whose recall on the measured split is below this are listed as a known limitation.
LOW_RECALL = 0.7

#: imgclf's preprocessing, step by step, as both scripts below spell it: upright RGB, shorter side to
#: floor(size / crop_pct), centre crop with torchvision's rounding, /255, mean/std; ``x`` is (H, W, 3).
_PREPROCESS = '''\
img = ImageOps.exif_transpose(Image.open(photo)).convert("RGB")
w, h, s = *img.size, math.floor(p["input_size"] / p["crop_pct"])  # shorter side -> s
img = img.resize((s, int(s * h / w)) if w <= h else (int(s * w / h), s), getattr(Image.Resampling, p["interpolation"].upper()))
c, (w, h) = p["input_size"], img.size
left, top = int(round((w - c) / 2.0)), int(round((h - c) / 2.0))  # centre crop
x = (np.asarray(img.crop((left, top, left + c, top + c)), np.float32) / 255 - p["mean"]) / p["std"]
'''

#: Runs the model with ONNX Runtime, NumPy and Pillow only (tested in tests/test_report.py).
ONNX_SNIPPET = '''\
import json, math, sys
import numpy as np, onnxruntime as ort
from PIL import Image, ImageOps

model_dir, photo = sys.argv[1], sys.argv[2]
meta = json.load(open(f"{model_dir}/imgclf.json"))
p, labels = meta["preprocessing"], meta["labels"]
''' + _PREPROCESS + '''\
session = ort.InferenceSession(f"{model_dir}/model.onnx", providers=["CPUExecutionProvider"])
probs = session.run(["probabilities"], {"input": x.transpose(2, 0, 1)[None].astype(np.float32)})[0][0]
for i in np.argsort(-probs)[:5]:
    print(f"{labels[i]}\\t{probs[i]:.6f}")
'''

#: Runs an ``imgclf export --format tflite`` file with LiteRT (``pip install ai-edge-litert``), NumPy and Pillow
#: (tested in tests/test_export.py).
TFLITE_SNIPPET = '''\
import json, math, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image, ImageOps

model, photo = sys.argv[1], sys.argv[2]
meta = json.load(open(model + ".json"))  # written beside the .tflite by imgclf export
p, labels = meta["preprocessing"], meta["labels"]
''' + _PREPROCESS + '''\
run = Interpreter(model_path=model).get_signature_runner("serving_default")
out = run(input=x[None].astype(np.float32))  # channels last: (1, H, W, 3)
probs, similarity = out["probabilities"][0], float(out["similarity"][0])
if meta["threshold"] is not None and similarity < meta["threshold"]:
    print(f"unknown\\t{similarity:.6f}")  # unlike every label; the best guesses follow
for i in np.argsort(-probs)[:5]:
    print(f"{labels[i]}\\t{probs[i]:.6f}")
'''


def _interval(iv) -> str:
    return f"; 95% interval {100 * iv[0]:.0f}–{100 * iv[1]:.0f} %" if iv else ""


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def _md(s) -> str:
    """Text shown literally in a Markdown table cell or line: Markdown syntax and raw HTML are escaped."""
    text = _MD_SPECIAL.sub(r"\\\1", " ".join(str(s).split()))
    return html.escape(text, quote=False)


def render_card(meta: dict, metrics: dict) -> str:
    """Markdown model card from the model's metadata and metrics."""
    if meta.get("multi_label"):
        from imgclf.report.multilabel import render_multilabel_card

        return render_multilabel_card(meta, metrics)
    from imgclf.report.calibration import from_photos
    from imgclf.report.results import reported_split

    labels = meta["labels"]
    counts = metrics["counts"]
    split = reported_split(metrics)
    m = metrics.get(split) or {}
    test, val = metrics.get("test") or {}, metrics.get("val") or {}
    calib = from_photos((metrics.get("out_of_fold") or {}).get("photos") or m.get("photos") or [])
    bb, pre = meta["backbone"], meta["preprocessing"]
    sections = [
        _intro(meta, labels),
        _classes(counts),
        _split_section(meta, metrics, counts),
        _metrics(metrics, split, m, test, val, calib),
        _limitations(labels, split, m, calib, metrics),
        _more_photos(metrics),
        _made(meta, bb, metrics.get("fine_tune")),
        _kept(meta, bb),
        _usage(meta, labels, pre, split),
    ]
    return "\n\n".join(s.strip("\n") for s in sections if s) + "\n"


def _intro(meta: dict, labels: list[str]) -> str:
    return f"""# imgclf model: {_md(', '.join(labels))}

An image classifier trained with imgclf {meta['imgclf_version']} on {meta['created']}.
{_what_it_tells(labels)}

## Intended use

- **For:** photos like the ones it was trained on (same kind of subject, framing, lighting and camera), to sort,
  tag or pre-screen them.
{_outside(meta, len(labels))}
- **Not for:** decisions about people or decisions with consequences, without a person checking the results.
  Its accuracy was measured only on held-out photos from the same collection as the training data."""


def _what_it_tells(labels: list[str]) -> str:
    if len(labels) == 1:
        return (f"It is a verifier: it tells whether a photo shows {_md(labels[0])}, answering {_md(labels[0])} or `unknown` "
                "(it was trained on photos of that one label only).")
    return f"It tells which of {len(labels)} labels a photo shows: {_md(', '.join(labels))}."


def _outside(meta: dict, n_labels: int) -> str:
    rule = meta.get("rejection")
    if not rule:
        return (f"- **Not for:** photos of anything else. The model has no \"none of these\" answer: a photo of something "
                f"outside its {n_labels} labels still gets one of them, often with high confidence.")
    score = ("the cosine similarity to the nearest label's mean embedding" if (meta.get("settings") or {}).get("private") else
             "the mean of the cosine similarities to the nearest label prototype and the nearest training photo")
    return (f"- **Photos of something else** come back as `unknown` when they are unlike every label ({score} below "
            f"{rule['threshold']:.3f}); the best guess is still listed. Photos far from "
            "every label are caught reliably; photos of a kind close to one of its labels (a kind it was not taught) often are not.")


def _classes(counts: dict) -> str:
    rows = "\n".join(
        f"| {_md(lab)} | {c['train']} | {c['val']} | {c['test']} | {sum(c.values())} |" for lab, c in counts.items()
    )
    tot = {s: sum(c[s] for c in counts.values()) for s in ("train", "val", "test")}
    return f"""## Classes

| label | train | val | test | total |
|---|---:|---:|---:|---:|
{rows}
| **total** | {tot['train']} | {tot['val']} | {tot['test']} | {sum(tot.values())} |"""


def _split_section(meta: dict, metrics: dict, counts: dict) -> str:
    data = meta.get("data") or {}
    if data.get("given_splits"):
        how = "The photos came in `train/`, `val/` and `test/` folders; those splits were used as given."
    else:
        how = ("Each photo's split comes from a stable hash of its path inside its label folder, so adding photos "
               "later never moves an existing photo between train and test.")
    lines = [
        "## Data split",
        "",
        f"Data folder: {_md(data.get('root', '?'))}. {how} The head is fitted on the train split, its "
        "regularisation is chosen on the validation split (or by cross-validation on the train split when the "
        "validation split is too small), and the test split is used for nothing but the numbers below (the cross-validated estimate, when there is one, "
        "fits a fresh head on each fold).",
    ]
    skipped = metrics.get("skipped") or []
    notes = []
    if skipped:
        notes.append(f"{len(skipped)} file(s) were skipped (unreadable, or duplicates with conflicting labels); "
                     "`metrics.json` and `report.html` list them with reasons.")
    for w in metrics.get("warnings") or []:
        notes.append(_md(w))
    for kind, text in (("duplicates", "exact duplicate(s) were found"), ("leakage", "photo(s) leak between train and test")):
        if metrics.get(kind):
            notes.append(f"{len(metrics[kind])} {text} (see `report.html`).")
    if notes:
        lines += ["", "Data warnings:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines)


def _metrics(metrics: dict, split: str | None, m: dict, test: dict, val: dict, calib: dict | None) -> str:
    lines = ["## Metrics", ""]
    if metrics.get("estimate"):
        lines.append(f"- **estimated accuracy on new photos: {describe(metrics['estimate'])}**")
    lines += [f"- {name} accuracy: {_pct(s.get('accuracy'))} ({s.get('n', 0)} photos{_interval(s.get('accuracy_interval'))})"
              for name, s in (("validation", val), ("test", test))]
    if m.get("coverage") is not None:
        lines.append(f"- with the \"unknown\" rule on the {'test' if split == 'test' else 'validation'} split: "
                     f"{_pct(m['coverage'])} answered (coverage), {_pct(m['selective_accuracy'])} of those right "
                     f"(selective accuracy), {_pct(m['accuracy_with_unknown'])} right counting \"unknown\" as wrong")
    lines += _label_set_lines(metrics.get("label_sets")) + _level_lines(metrics.get("hierarchy"))
    if not split:
        lines += ["", "No photos were held out, so the model's accuracy is unmeasured."]
        return "\n".join(lines)
    where = "test" if split == "test" else "validation"
    if m.get("macro_f1") is not None:
        lines.append(f"- macro-F1 on the {where} split: {m['macro_f1']:.3f}")
    if calib:
        lines.append(f"- confidence error (expected calibration error, ECE: how far confidence is from accuracy; 0 is perfect) "
                     f"{_calibrated_on(metrics, where)}: {calib['ece']:.3f}")
    if m.get("per_class"):
        cm = m.get("confusion_matrix") or []
        lines += ["", f"Per class on the {where} split (– : no photos of the class, or never predicted):", "",
                  "| label | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        for i, (lab, c) in enumerate(m["per_class"].items()):
            predicted = sum(row[i] for row in cm) if cm else 1
            prec = f"{c['precision']:.3f}" if predicted else "–"
            rec, f1 = (f"{c['recall']:.3f}", f"{c['f1']:.3f}") if c["support"] else ("–", "–")
            lines.append(f"| {_md(lab)} | {prec} | {rec} | {f1} | {c['support']} |")
    lines += [
        "",
        f"Confusion matrix on the {where} split (rows: true label, columns: predicted):",
        "",
        "![confusion matrix](confusion_matrix.svg)",
        "",
        "[`report.html`](report.html) in this folder shows the confusion matrix with the photos in each cell, "
        "the misclassified photos with their top predictions, and a reliability diagram.",
    ]
    return "\n".join(lines)


def _more_photos(metrics: dict) -> str:
    """What more photos would add (the checks' learning curve)."""
    advice = (metrics.get("check") or {}).get("advice") or {}
    if not advice:
        return ""
    return ("## More photos?\n\nRead off a learning curve (a classifier fitted on growing shares of the photos, scored on photos "
            "left out); a rough guide to the gain over all labels, not to which label gains most:\n\n"
            + f"- {_md(advice['sentence'])}")


def _level_lines(tree: dict | None) -> list[str]:
    """A tree of labels (``--hierarchy``): each level's accuracy, and where answers stop."""
    if not tree:
        return []
    lines = [f"- answers go down the label tree while the level's confidence is at least {_pct(tree['target'])} "
             f"(measured on {_md(tree['measured_on'])}):"]
    for lv in tree["levels"]:
        right = "" if lv["stopped_right"] is None else f", right {_pct(lv['stopped_right'])} of the time"
        lines.append(f"  - level {lv['level']} ({lv['nodes']} label{'s' if lv['nodes'] != 1 else ''}): best guess right {_pct(lv['accuracy'])}; "
                     f"{_pct(lv['stopped'])} of answers stop here{right}")
    return lines


def _label_set_lines(sets: dict | None) -> list[str]:
    """The label sets (``predict --error-rate A``): how big they are, and how often they held the label where measured."""
    if not sets:
        return []
    lines = []
    for rate, got in (sets.get("on_calibration_photos") or {}).items():
        test = (sets.get("test") or {}).get(rate)
        held = (f"; on the test split they held it for {_pct(test['coverage'])} of {test['n']} photos" if test else "")
        lines.append(f"- label sets at error rate {rate} (`--error-rate {rate}`: the labels that hold the right one for at least "
                     f"{_pct(1 - float(rate))} of new photos of these labels): {got['mean_size']:.2f} labels on average "
                     f"(calibrated on {_md(sets['calibrated_on'])}){held}")
    return lines


def _limitations(labels: list[str], split: str | None, m: dict, calib: dict | None, metrics: dict) -> str:
    rule = metrics.get("rejection") or {}
    if rule.get("threshold") is None:
        items = ["It always answers one of its labels, even for photos of something else; check the confidence, "
                 "and treat low-confidence answers as \"don't know\"."]
    else:
        items = [_rule_limit(rule)]
    if split:
        where = "test" if split == "test" else "validation"
        cm = m.get("confusion_matrix") or []
        per_class = m.get("per_class") or {}
        absent = [lab for lab in labels if not (per_class.get(lab) or {}).get("support")]
        for i, lab in enumerate(labels):
            c = per_class.get(lab) or {}
            if c.get("support") and c["recall"] < LOW_RECALL:
                off = [(cm[i][j], labels[j]) for j in range(len(labels)) if j != i and cm[i][j]] if cm else []
                confused = f", most often mistaken for {_md(max(off)[1])}" if off else ""
                items.append(f"Low recall for **{_md(lab)}**: {c['recall']:.0%} of its {c['support']} {where} photos "
                             f"were recognised{confused}.")
        if absent:
            items.append(f"No {where} photos of {_md(', '.join(absent))}: how well the model recognises "
                         f"{'this class' if len(absent) == 1 else 'these classes'} is unmeasured.")
        n, acc = m.get("n", 0), m.get("accuracy")
        if acc is not None and n < MIN_HELD_OUT:
            items.append(f"The {where} split has only {n} photos, too few to quote alone; the estimate above comes from "
                         f"{_md(metrics['estimate']['method'])}. More photos per label give firmer numbers.")
        if calib:
            from imgclf.report.calibration import bias

            side = bias(calib)
            cal = ("its confidence matched its accuracy closely" if side == "matched" else
                   f"it was {side}-confident: mean confidence {calib['mean_confidence']:.0%}, accuracy {calib['accuracy']:.0%}")
            temperature = (metrics.get("head") or {}).get("temperature")
            how = (f"Confidences are calibrated (temperature {temperature:g} fitted on out-of-fold answers), so about 80 in 100 "
                   "answers given with 80 % confidence are right; on a few photos this is only approximate."
                   if temperature else "Read confidences as a ranking more than as probabilities.")
            items.append(f"Calibration: expected calibration error {calib['ece']:.3f} {_calibrated_on(metrics, where)}; {cal}. {how}")
    if metrics.get("warnings") or metrics.get("leakage"):
        items.append("The data warnings above may make the measured numbers optimistic or skewed.")
    return "## Known limitations\n\n" + "\n".join(f"- {i}" for i in items)


def _rule_limit(rule: dict) -> str:
    n, lo, hi = rule.get("n"), *(rule.get("acceptance_interval") or (None, None))
    text = (f"The \"unknown\" rule was calibrated to accept {rule['target_acceptance']:.0%} of new photos of the known "
            f"labels")
    if n:
        text += (f" on {n} held-out scores ({_md(rule['calibrated_on'])}): expected {rule['expected_acceptance']:.1%}, "
                 f"95% interval {lo:.0%} to {hi:.0%}")
    return text + ". Photos of a kind close to a known label can still be answered with that label."


def _made(meta: dict, bb: dict, fine_tune: dict | None) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items())
    return f"""## How it was made

- backbone: `{bb['name']}` ({f"timm `{bb['timm_name']}`, " if bb.get('timm_name') else ""}weights: {_md(bb['weights'])}), {bb['dim']}-D embeddings{_crop_note(bb)}
- head: softmax linear classifier on L2-normalised embeddings, C = {meta['head']['C']}, class-balanced, seed {meta['head'].get('seed', 0)}{_fine_tune_note(fine_tune)}
- created: {meta['created']} with imgclf {meta['imgclf_version']}{f" ({versions})" if versions else ""}
- exact command:

{_code_block(meta['command'])}"""


def _fine_tune_note(ft: dict | None) -> str:
    """The line on ``--fine-tune``: what was trained and whether it was kept."""
    if not ft:
        return ""
    what = f"the backbone's last {ft['trainable_blocks']} stages" if ft.get("trainable_blocks") else "the whole backbone"
    if ft.get("kept") == "frozen":
        return f"\n- fine-tuning ({what}, {ft['seconds']:.0f} s) was tried and not kept: {_md(ft['why'])}"
    gain = ("" if ft.get("best_val_accuracy") is None else
            f": validation accuracy {ft['probe_val_accuracy']:.3f} frozen, {ft['best_val_accuracy']:.3f} after epoch {ft['best_epoch']}")
    return f"\n- fine-tuned: {what} with the head, {ft['seconds']:.0f} s{gain}"


#: What ``train --private`` cost in telling photos of a kind it was not taught from those it knows (near-unknown AUROC,
#: leave one label out of flowers-bench: ``benchmarks/grow.py``).
PRIVATE_COST = "near-unknown AUROC 0.742 instead of 0.768 on flowers-bench"


def _kept(meta: dict, bb: dict) -> str:
    """What the model folder keeps of its training photos, and what it went through."""
    settings = meta.get("settings") or {}
    faces = bb.get("name") == "face" or bb.get("crop") in ("face", "face_chip")
    if settings.get("private"):
        lines = ["It was trained with `--private`: it keeps no embedding, path or name of a training photo, only each "
                 "label's mean embedding. So it cannot name the training photos nearest an answer (`--neighbors`) or grow "
                 "(`imgclf add`, `imgclf forget`), and its \"unknown\" score is the cosine to the nearest label's mean alone, "
                 f"which tells photos of an untaught kind apart less well ({PRIVATE_COST})."]
    else:
        lines = ["It keeps every training photo's embedding, label, split and path (`training-photos.npz`, about 3.1 KB a photo; "
                 "the train and validation photos' embeddings also in `model.onnx`, to find the nearest ones), so "
                 "`imgclf add MODEL PHOTOS` and `imgclf forget MODEL --label L` grow and shrink it without the photos. "
                 "An embedding is not a photo, but it describes one closely enough to find it among others: to share the model "
                 "without them, train it with `--private`."]
        if not settings.get("can_grow", True):
            lines[0] = ("It keeps the train and validation photos' embeddings in `model.onnx` and their paths in `neighbors.json` "
                        "(for `--neighbors`), but cannot grow: it was fine-tuned, quantised or trained with `--augment`.")
    if faces:
        lines.append("It holds face descriptors of the people it was taught (128 numbers per photo, enough to recognise them "
                     "in other photos)" + ("." if settings.get("private") else "; `--private` leaves those of single photos out, "
                                           "keeping one mean descriptor per person."))
    history = meta.get("history") or []
    if len(history) > 1:
        lines.append("What was done to it: " + "; ".join(_history_entry(h) for h in history) + ".")
    return "## What it keeps of its photos\n\n" + "\n".join(f"- {line}" for line in lines)


def _history_entry(h: dict) -> str:
    when = str(h.get("at", ""))[:10]
    if h.get("action") == "add":
        new = f", new labels {_md(', '.join(h['new_labels']))}" if h.get("new_labels") else ""
        return f"{when} added {h.get('added', 0)} photos{new}"
    if h.get("action") == "forget":
        what = f"labels {_md(', '.join(h['labels']))}, " if h.get("labels") else ""
        return f"{when} forgot {what}{h.get('removed', 0)} photos"
    return f"{when} trained on {h.get('photos', 0)} photos"


def _calibrated_on(metrics: dict, where: str) -> str:
    oof = metrics.get("out_of_fold") or {}
    return (f"on every labelled photo's answer from a head that never saw it ({_md(oof['method'])})" if oof.get("photos")
            else f"on the {where} split")


def _code_block(text: str) -> str:
    """``text`` as one literal line of a fenced code block: control characters (newlines included) shown as escapes,
    and a fence longer than any run of backticks inside, so nothing in it can end the block or be rendered."""
    line = printable(str(text))
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", line)), default=0))
    return f"{fence}\n{line}\n{fence}"


def _crop_note(bb: dict) -> str:
    if bb.get("encoder"):
        return "; the largest face in each photo, aligned on 5 landmarks to 150 × 150, described by dlib's face-recognition ResNet"
    if bb.get("crop") == "face":
        return "; it sees only the square around the largest face in each photo (`--crop face`)"
    return ""


def _usage(meta: dict, labels: list[str], pre: dict, split: str | None) -> str:
    return f"""## How to use it

Command line, with imgclf installed:

```
imgclf predict path/to/this/folder photo.jpg --top-k 3
imgclf evaluate path/to/this/folder labelled_photos/ --report results.html
```

Python, with imgclf:

```python
import imgclf

model = imgclf.load("path/to/this/folder")
for p in model.predict(["photo.jpg"], top_k=3):
    print(p.path, p.label, p.confidence, p.top_k)
```

{_plain_onnx(labels, pre)}"""


def _plain_onnx(labels: list[str], pre: dict) -> str:
    size = pre["input_size"]
    if pre.get("crop") == "face_chip":
        return f"""### Plain ONNX Runtime

`model.onnx` maps a batch of 128-D face descriptors `input` (N, 128) to `probabilities` (N, {len(labels)}) in the
order of `labels.json`, `embedding` and `similarity`. The descriptor comes from dlib (not ONNX): the largest face
found by `dlib.get_frontal_face_detector()`, its 5 landmarks (`shape_predictor_5_face_landmarks.dat`), the chip
`dlib.get_face_chip(image, landmarks, size=150, padding=0.25)`, then
`dlib.face_recognition_model_v1("dlib_face_recognition_resnet_model_v1.dat").compute_face_descriptor(chip)`
(model files from the `face_recognition_models` package). imgclf does exactly this (`imgclf.runtime.faces`)."""
    crop = ("\n\nThis model was trained with `--crop face`: first crop the photo to the square around the largest face "
            "(dlib's frontal face detector), grown by 40 % of the face's size on every side, as `imgclf.runtime.faces.face_crop` "
            "does; the script below does not.") if pre.get("crop") == "face" else ""
    return f"""### Plain ONNX Runtime (no imgclf)

`model.onnx` maps a preprocessed batch `input` (N, 3, {size}, {size}) to `probabilities` (N, {len(labels)})
in the order of `labels.json`, and to `embedding`. The preprocessing is in `imgclf.json`: resize the shorter
side to floor({size} / {pre['crop_pct']}) = {math.floor(size / pre['crop_pct'])} with {pre['interpolation']}
interpolation, centre-crop {size} × {size}, scale to [0, 1], subtract mean {list(pre['mean'])}, divide by std
{list(pre['std'])}, channels first. This script needs only `onnxruntime`, `numpy` and `Pillow`
(imgclf also flattens transparent images onto white); run it as `python predict_onnx.py path/to/this/folder photo.jpg`:

```python
{ONNX_SNIPPET.rstrip()}
```{crop}

### TensorFlow Lite (phones, Raspberry Pi, Coral)

`imgclf export path/to/this/folder --format tflite -o model.tflite` (with `pip install 'imgclf[tflite]'`)
writes `model.tflite` and `model.tflite.json` (labels, preprocessing, the "unknown" threshold) after checking
its answers against `model.onnx`; `--int8` makes a 4 × smaller int8 one, `--format saved_model` a TensorFlow
SavedModel. The input is channels last, (1, {size}, {size}, 3), preprocessed as above. With LiteRT
(`pip install ai-edge-litert`), NumPy and Pillow, run it as `python predict_tflite.py model.tflite photo.jpg`:

```python
{TFLITE_SNIPPET.rstrip()}
```"""
