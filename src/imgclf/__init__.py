"""imgclf: train your own image classifier from a folder of photos, then ask it what a photo shows."""

from __future__ import annotations

from imgclf.errors import ImgclfError
from imgclf.runtime.artifact import IMGCLF_VERSION as __version__

__all__ = ["__version__", "train", "add", "forget", "load", "evaluate", "check", "export", "Project", "Model", "Prediction", "TrainResult",
           "ImgclfError"]


def __getattr__(name: str):
    # Lazy: `import imgclf` stays light, and predict never imports the training stack.
    if name in ("Model", "Prediction", "load"):
        from imgclf.runtime import model

        return getattr(model, name)
    if name in ("train", "TrainResult"):
        from imgclf import training

        return getattr(training, name)
    if name in ("add", "forget"):
        from imgclf.training import grow

        return getattr(grow, name)
    if name == "Project":
        from imgclf.project import Project

        return Project
    if name == "check":
        return _check
    if name == "export":
        from imgclf.exports import export

        return export
    if name == "evaluate":
        from imgclf.evaluation import evaluate

        return evaluate
    raise AttributeError(f"module 'imgclf' has no attribute {name!r}")


def _check(data_dir, *args, labels_file=None, multi_label: bool = False, **options):
    """:func:`imgclf.checks.check`; with ``labels_file`` (a manifest) or ``multi_label`` (label folders sharing photos),
    the checks of several labels per photo (:func:`imgclf.training.multilabel.check_folder`: unreadable photos, labels
    a photo probably lacks or should not have)."""
    if labels_file is None and not multi_label:
        from imgclf.checks import check

        return check(data_dir, *args, **options)
    from imgclf.training.multilabel import check_folder

    if args:
        raise ImgclfError("name the options of a check of several labels per photo (backbone=..., cache_dir=...)")
    return check_folder(data_dir, labels_file, **options)
