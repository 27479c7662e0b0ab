"""Training from the page: start, progress, cancel; then the results (the estimate first) and the findings of the
checks with what can be done about each."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from imgclf.checks.copies import copy_groups
from imgclf.files import write_json_atomic
from imgclf.report.multilabel import headline
from imgclf.studio.routes import project, workspace
from imgclf.training.result import photo_count

router = APIRouter(prefix="/api", tags=["training"])

#: Findings a page shows as cards with actions (the others are listed in the report).
ACTIONABLE = ("label_error", "missing_label", "extra_label", "outlier", "exact_duplicate", "near_duplicate", "blurry",
              "too_small", "near_uniform")
#: How many confused pairs, and photos of each, the results show.
PAIRS, PAIR_PHOTOS = 3, 6


class KeepFinding(BaseModel):
    path: str = Field(max_length=4096)
    kind: str = Field(max_length=40)


@router.post("/train")
def train(request: Request):
    """Start a training run (409 while one runs)."""
    trainer = workspace(request).trainer
    project(request)
    if not trainer.start():
        raise HTTPException(409, "a training run is going on already")
    return trainer.status()


@router.get("/train")
def status(request: Request):
    """How far the run is: ``state`` (idle, running, done, failed, cancelled), the stage and its progress."""
    project(request)
    return workspace(request).trainer.status()


@router.post("/train/cancel")
def cancel(request: Request):
    """Stop the run between batches; the model folder stays as it was."""
    project(request)
    return {"cancelled": workspace(request).trainer.cancel()}


@router.get("/results")
def results(request: Request):
    """What the last model measured, for the results view (``model`` false before the first training)."""
    p = project(request)
    model = p.model
    if model is None:
        return {"model": False}
    m = model.metrics
    root = Path(m.get("check", {}).get("root") or p.root)
    several = headline(m)
    photos = photo_count(m)
    return {"model": True, "labels": model.labels, "verifier": bool(m.get("verifier")), "estimate": m.get("estimate"),
            "per_label": _per_label(m), "confused": _confused(m, root), "unknown": _unknown(m),
            "findings": _findings(m, root, _kept(p)), "seconds": m.get("train_seconds"),
            "photos": photos, "pictures": photos if several else _pictures(m),
            "created": model.meta.get("created"), "advice": m.get("check", {}).get("advice") or None,
            "label_sets": model.label_sets is not None, "multi_label": several,
            "thresholds": None if not model.multi_label else dict(zip(model.labels, model.meta["multi_label"]["thresholds"]))}


@router.post("/findings/keep")
def keep(request: Request, body: KeepFinding):
    """Keep a photo as it is: its finding is no longer shown (remembered in the project)."""
    p = project(request)
    kept = _kept(p)
    kept.add((body.path, body.kind))
    write_json_atomic(p.state_dir / "kept.json", {"kept": sorted(map(list, kept))})
    return {"kept": len(kept)}


def _kept(p) -> set[tuple[str, str]]:
    import json

    try:
        return {(a, b) for a, b in json.loads((p.state_dir / "kept.json").read_text(encoding="utf-8"))["kept"]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _rel(path: str | None, root: Path) -> str | None:
    if not path:
        return None
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path


def _per_label(m: dict) -> list[dict]:
    """Per label: how often the held-out answers were right (out of fold when there are, else the test split); for
    several labels per photo, how many of the label's photos it found (``accuracy``: recall) and how often it was
    right when it named the label (``precision``)."""
    several = (m.get("multi_label") or {}).get("per_label")
    if several:
        return [{"label": lab, "accuracy": r["recall"]["value"] or 0.0, "n": r["photos"],
                 "precision": r["precision"]["value"]} for lab, r in several.items()]
    photos = (m.get("out_of_fold") or {}).get("photos") or []
    right, seen = Counter(), Counter()
    for ph in photos:
        seen[ph["label"]] += 1
        right[ph["label"]] += ph["predicted"] == ph["label"]
    return [{"label": lab, "accuracy": right[lab] / n, "n": n} for lab, n in sorted(seen.items())]


def _confused(m: dict, root: Path) -> list[dict]:
    """The label pairs most often mistaken for each other in held-out answers, with the photos mistaken."""
    photos = [ph for ph in (m.get("out_of_fold") or {}).get("photos") or [] if ph["predicted"] != ph["label"]]
    pairs = Counter(tuple(sorted((ph["label"], ph["predicted"]))) for ph in photos)
    out = []
    for (a, b), n in pairs.most_common(PAIRS):
        shown = [ph for ph in photos if {ph["label"], ph["predicted"]} == {a, b}][:PAIR_PHOTOS]
        out.append({"labels": [a, b], "mistakes": n, "photos": [
            {"path": _rel(ph.get("path"), root), "label": ph["label"], "answered": ph["predicted"],
             "confidence": ph["confidence"]} for ph in shown]})
    return out


def _unknown(m: dict) -> dict | None:
    r = m.get("rejection")
    if not isinstance(r, dict):
        return None
    return {k: r[k] for k in ("threshold", "target_acceptance", "expected_acceptance", "acceptance_interval", "calibrated_on")
            if k in r}


def _pictures(m: dict) -> int:
    """How many different pictures the photos show: photos joined by the checks' copy findings count once."""
    photos = sum(sum(c.values()) for c in (m.get("counts") or {}).values())
    pairs = [(f["path"], f["other"]) for f in (m.get("check") or {}).get("findings") or []
             if f.get("kind") in ("near_duplicate", "exact_duplicate") and f.get("path") and f.get("other")]
    copied = sorted({p for pair in pairs for p in pair})
    joined = len(copied) - len(np.unique(copy_groups(copied, pairs)))
    return max(1, photos - joined) if photos else 0


def _findings(m: dict, root: Path, kept: set) -> list[dict]:
    """The findings about photos still there and not kept, worst kinds first, paths relative to the project."""
    out = []
    prefix = str(root) + "/"
    for f in (m.get("check") or {}).get("findings") or []:
        if f.get("kind") not in ACTIONABLE or not f.get("path"):
            continue
        if f["kind"] == "near_duplicate" and not f.get("conflict"):
            continue  # near copies under one label (camera frames) are summed up by "pictures", not a card each
        path = _rel(f["path"], root)
        if (path, f["kind"]) in kept or not (root / path).exists():
            continue
        out.append({**f, "path": path, "other": _rel(f.get("other"), root), "reason": f.get("reason", "").replace(prefix, ""),
                    "examples": [_rel(e, root) for e in f.get("examples") or []][:3]})
    return sorted(out, key=lambda f: ACTIONABLE.index(f["kind"]))
