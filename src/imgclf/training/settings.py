"""What a training run is asked to do, checked once before anything runs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from imgclf.backbones import DEFAULT_BACKBONE, FACE, require_torch
from imgclf.errors import ImgclfError
from imgclf.training.finetune import FineTuneConfig


@dataclass(frozen=True)
class Settings:
    """The options of ``imgclf train`` (and :func:`imgclf.train`), validated by :meth:`check`.

    ``fine_tune`` is None (a frozen backbone) or a :class:`~imgclf.training.finetune.FineTuneConfig`;
    ``embeddings`` a file written by ``imgclf embed`` to train from instead of embedding here; ``private`` leaves the
    training photos' embeddings and paths out of the model folder (no neighbours, no ``add``); ``hierarchy`` reads nested
    label folders as a tree (:mod:`imgclf.data.hierarchy`); ``labels_file`` (a manifest) or ``multi_label`` (label
    folders sharing photos) train a model that answers several labels per photo (:mod:`imgclf.training.multilabel`),
    each label's threshold the best F1 or the lowest reaching ``min_precision``.
    """

    backbone: str = DEFAULT_BACKBONE
    weights: str | os.PathLike | None = None
    seed: int = 0
    cache_dir: str | os.PathLike | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    fine_tune: FineTuneConfig | None = None
    augment: int = 0
    target_acceptance: float = 0.95
    quantize: bool = False
    crop: str | None = None
    embeddings: str | os.PathLike | None = None
    command: str | None = None
    private: bool = False
    hierarchy: bool = False
    labels_file: str | os.PathLike | None = None
    multi_label: bool = False
    min_precision: float | None = None

    @classmethod
    def of(cls, fine_tune: bool | FineTuneConfig = False, seed: int = 0, **options) -> "Settings":
        """Settings from :func:`imgclf.train`'s keyword arguments (``fine_tune=True`` takes the default recipe)."""
        if fine_tune is True:
            fine_tune = FineTuneConfig(seed=seed)
        return cls(fine_tune=fine_tune or None, seed=seed, **options).check()

    def check(self) -> "Settings":
        """Refuse combinations that cannot work, in one line each."""
        if self.quantize and self.fine_tune:
            raise ImgclfError("--quantize and --fine-tune cannot be combined: fine-tuning trains the float backbone")
        if self.fine_tune and (self.backbone == FACE or self.crop):
            raise ImgclfError("--fine-tune is not available with faces (--backbone face, --crop face): the face models are "
                              "used as they are")
        if self.augment and self.backbone == FACE:
            raise ImgclfError("--augment is not available with --backbone face: its descriptor needs the aligned face as it is")
        if self.fine_tune:
            require_torch("--fine-tune")
        if self.min_precision is not None and not (isinstance(self.min_precision, (int, float)) and 0 < self.min_precision < 1):
            raise ImgclfError(f"--min-precision must be between 0 and 1 (e.g. 0.9), not {self.min_precision}")
        if self.min_precision is not None and not self.multi:
            raise ImgclfError("--min-precision sets the thresholds of a model with several labels per photo: add --labels FILE "
                              "or --multi-label")
        if self.multi:
            used = [flag for flag, on in (("--fine-tune", self.fine_tune), ("--quantize", self.quantize), ("--augment", self.augment),
                                          ("--hierarchy", self.hierarchy), ("--private", self.private), ("--crop", self.crop),
                                          ("--backbone face", self.backbone == FACE), ("--embeddings", self.embeddings))
                    if on]
            if used:
                raise ImgclfError(f"{used[0]} is not available for several labels per photo (--labels, --multi-label) yet")
        return self

    @property
    def multi(self) -> bool:
        """Whether the model answers several labels per photo."""
        return self.labels_file is not None or self.multi_label

    @property
    def cache_root(self) -> Path:
        from imgclf.files.locations import default_cache_dir

        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()
