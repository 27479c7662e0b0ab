"""What a training run returns: where the model is, what it learned from, how well it does."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from imgclf.checks import CheckResult
from imgclf.runtime.inputs import Skipped


@dataclass
class TrainResult:
    """What ``train`` did: where the model is, what it learned from, how well it does."""

    model_dir: Path
    labels: list[str]
    counts: dict[str, dict[str, int]]
    metrics: dict
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    n_computed: int = 0
    #: What :func:`imgclf.checks.run_checks` found in the photos (the full list is also in ``metrics["check"]``).
    check: CheckResult | None = None
    #: What ``imgclf add`` or ``forget`` did (the entry of the model's history), None for ``train``.
    change: dict | None = None

    @property
    def photos(self) -> int:
        """How many photos the model learned from (a photo with several labels counts once)."""
        return photo_count(self.metrics)

    @property
    def val_accuracy(self) -> float | None:
        return (self.metrics.get("val") or {}).get("accuracy")

    @property
    def test_accuracy(self) -> float | None:
        return (self.metrics.get("test") or {}).get("accuracy")


def photo_count(metrics: dict) -> int:
    """How many photos a model's ``metrics.json`` says it learned from: a multi-label model's total (a photo counts once
    whatever its labels), else the sum of every label's photos."""
    total = (metrics.get("photos") or {}).get("total")
    return int(total) if total is not None else sum(sum(c.values()) for c in (metrics.get("counts") or {}).values())
