"""Fine-tune a backbone's last blocks and its head in PyTorch, then export one ONNX model.

Linear probe first, fine-tune second (the head starts from the probe's solution):
on-the-fly augmentation, AdamW, warm-up + cosine schedule, label smoothing, early stopping
on the validation split with the best checkpoint kept. The exported ``model.onnx`` has the
same interface as a probe-only model, so predict and serve do not change.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from imgclf.backbones import Backbone
from imgclf.heads.linear import LinearHead
from imgclf.runtime.images import load_image
from imgclf.runtime.preprocessing import resize_shorter


@dataclass
class FineTuneConfig:
    """Hyper-parameters; the defaults are chosen on validation data of flowers-bench."""

    epochs: int = 12
    batch_size: int = 32
    lr: float = 3e-4
    head_lr: float = 3e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    warmup_epochs: float = 1.0
    patience: int = 4
    #: Trainable stages at the end of the backbone (0 = the whole backbone).
    trainable_blocks: int = 3
    seed: int = 0
    #: Keep the frozen model unless the validation photos show that the fine-tuned network answers better than chance
    #: would (:func:`beats_frozen`).
    fall_back: bool = True
    #: The largest chance (a one-sided sign test) that the fine-tuned network's validation gain is not real.
    significance: float = 0.05


@dataclass
class FineTuneResult:
    """The fine-tuned network and its training history."""

    model: object
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    #: Which validation photos the kept epoch answers right (empty without validation photos).
    val_right: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    seconds: float = 0.0
    estimate_seconds: float = 0.0


def _build(backbone_module, head: LinearHead):
    """The classifier network; defined inside so importing this module does not import torch."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Classifier(nn.Module):
        """backbone → L2 normalise → linear; returns (logits, embedding)."""

        def __init__(self):
            super().__init__()
            self.backbone = backbone_module
            self.fc = nn.Linear(head.weight.shape[1], head.weight.shape[0])
            with torch.no_grad():
                self.fc.weight.copy_(torch.from_numpy(head.weight))
                self.fc.bias.copy_(torch.from_numpy(np.maximum(head.bias, -30.0)))

        def forward(self, x):
            emb = self.backbone(x)
            return self.fc(F.normalize(emb, dim=1)), emb

    return Classifier()


def _split(backbone_module, trainable_blocks: int):
    """(frozen prefix or None, trainable suffix) of a timm backbone; both map images → embeddings when chained.

    The prefix needs no gradient, so it runs in ONNX Runtime (about 5x faster than torch eager here).
    Backbones without timm's ``stem → blocks → head`` layout are trained whole.
    """
    from torch import nn

    m = backbone_module
    parts = ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "global_pool")
    if trainable_blocks <= 0 or not all(hasattr(m, a) for a in parts) or trainable_blocks >= len(m.blocks):
        return None, m
    prefix = nn.Sequential(m.conv_stem, m.bn1, *m.blocks[:-trainable_blocks]).eval()
    suffix = nn.Sequential(*m.blocks[-trainable_blocks:], m.conv_head, m.bn2, m.global_pool)
    for p in prefix.parameters():
        p.requires_grad_(False)
    return prefix, suffix


def _prefix_session(prefix, input_size: int, tmp_dir: Path):
    """ONNX Runtime session of the frozen prefix: ``input`` → ``features``."""
    from imgclf.backbones.torch_export import export_module
    from imgclf.runtime.session import create_session

    path = tmp_dir / "prefix.onnx"
    export_module(prefix, input_size, path, ["features"], fast=True)
    return create_session(path)


def _decoded(paths: Sequence[Path], short_side: int) -> list[Image.Image]:
    """Decode once, keep a copy at the preprocessing's resize size (bounded memory per photo)."""
    from concurrent.futures import ThreadPoolExecutor

    def load(p: Path) -> Image.Image:
        return resize_shorter(load_image(p), short_side)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(load, paths))


def fine_tune(
    backbone: Backbone,
    head: LinearHead,
    train: Sequence[tuple[Path, int]],
    val: Sequence[tuple[Path, int]],
    config: FineTuneConfig | None = None,
    progress: Callable[..., None] | None = None,
    log: Callable[[str], None] | None = None,
) -> FineTuneResult:
    """Fine-tune ``backbone`` (with ``head`` as the starting classifier) on ``train``; select on ``val``."""
    import torch

    from imgclf.backbones.torch_export import build_model

    config = config or FineTuneConfig()
    torch.manual_seed(config.seed)
    pre = backbone.preprocessing
    net = _build(build_model(backbone.timm_name, backbone.torch_weights()), head)
    net.eval()  # BatchNorm statistics stay frozen: batches of 32 on a few hundred photos would only add noise
    prefix, suffix = _split(net.backbone, config.trainable_blocks)
    tmp = Path(tempfile.mkdtemp(prefix="imgclf-finetune-"))
    try:
        session = _prefix_session(prefix, pre.input_size, tmp) if prefix is not None else None
        tuner = _Tuner(net, suffix, session, config, pre, len(train))
        val_x = np.stack([pre(img) for img in _decoded([p for p, _ in val], pre.resize_to)]) if val else None
        start = time.perf_counter()
        history, best_epoch, estimate, val_right = tuner.epochs(_decoded([p for p, _ in train], pre.resize_to),
                                                     torch.tensor([y for _, y in train]), val_x, np.array([y for _, y in val]),
                                                     np.random.default_rng(config.seed), progress, log)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return FineTuneResult(net, history, best_epoch, val_right, time.perf_counter() - start, estimate)


def beats_frozen(tuned_right: np.ndarray, frozen_right: np.ndarray, significance: float) -> tuple[bool, float]:
    """Whether the fine-tuned network answers the validation photos better than the frozen head beyond chance: a
    one-sided sign test on the photos only one of them answers right (those it fixed against those it broke);
    (verdict, its p-value). With 50 validation photos it takes at least 5 fixed and none broken."""
    from scipy.stats import binom

    fixed, broken = int(np.sum(tuned_right & ~frozen_right)), int(np.sum(~tuned_right & frozen_right))
    p = float(binom.sf(fixed - 1, fixed + broken, 0.5)) if fixed else 1.0
    return p < significance, p


class _Tuner:
    """One fine-tuning run: the frozen prefix in ONNX Runtime, the trainable rest and the head in torch, AdamW with
    warm-up and a cosine schedule, label smoothing, and the best epoch on validation kept."""

    def __init__(self, net, suffix, session, config: FineTuneConfig, pre, n_train: int):
        import torch
        from torch import nn

        self.net, self.suffix, self.session, self.config = net, suffix, session, config
        self.optimizer = torch.optim.AdamW(
            [{"params": [p for p in suffix.parameters()], "lr": config.lr}, {"params": list(net.fc.parameters()), "lr": config.head_lr}],
            weight_decay=config.weight_decay,
        )
        self.augment = _augmentation(pre)
        self.steps_per_epoch = max(1, math.ceil(n_train / config.batch_size))
        self.total_steps = self.steps_per_epoch * config.epochs
        warmup = max(1, int(config.warmup_epochs * self.steps_per_epoch))

        def lr_factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, self.total_steps - warmup)))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor)
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def forward(self, x: np.ndarray):
        """(logits, embedding) with the frozen prefix in ONNX Runtime and the rest in torch."""
        import torch

        if self.session is None:
            return self.net(torch.from_numpy(x))
        feats = torch.from_numpy(self.session.run(None, {"input": x})[0])
        emb = self.suffix(feats)
        return self.net.fc(torch.nn.functional.normalize(emb, dim=1)), emb

    def validate(self, val_x: np.ndarray | None, val_y: np.ndarray) -> tuple[float, float, np.ndarray]:
        """(accuracy, cross-entropy, which photos it answers right) on the validation split; accuracy first, the loss
        breaks ties."""
        import torch
        from torch import nn

        if val_x is None:
            return float("nan"), float("nan"), np.zeros(0, bool)
        with torch.no_grad():
            logits = torch.cat([self.forward(val_x[i : i + 64])[0] for i in range(0, len(val_x), 64)])
        loss = float(nn.functional.cross_entropy(logits, torch.from_numpy(val_y)))
        right = logits.argmax(1).numpy() == val_y
        return float(right.mean()), loss, right

    def step(self, images, y) -> float:
        """One optimiser step on a batch of decoded photos, freshly augmented; its loss."""
        import torch

        x = torch.stack([self.augment(img) for img in images]).numpy()
        logits, _ = self.forward(x)
        loss = self.loss_fn(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.item()

    def epochs(self, train_images, train_y, val_x, val_y, rng, progress, log) -> tuple[list[dict], int, float, np.ndarray]:
        """Train until the epochs run out or validation stops improving for ``patience`` epochs; the network keeps the
        best epoch's weights. (history, best epoch, the time the run was expected to take, which validation photos the
        best epoch answers right)."""
        config, net = self.config, self.net
        best_acc, best_loss, best_right = self.validate(val_x, val_y)
        best_state, best_epoch, step, stale, estimate = _trainable_state(net), 0, 0, 0, 0.0
        history = [{"epoch": 0, "loss": None, "val_accuracy": best_acc, "val_loss": round(best_loss, 5)}]
        for epoch in range(1, config.epochs + 1):
            order = rng.permutation(len(train_y))
            losses = []
            for b in range(self.steps_per_epoch):
                idx = order[b * config.batch_size : (b + 1) * config.batch_size]
                losses.append(self.step([train_images[i] for i in idx], train_y[idx]))
                step += 1
                if step == 1:
                    first_step_done = time.perf_counter()
                if step == 3 and log:
                    estimate = (time.perf_counter() - first_step_done) / 2 * self.total_steps * 1.1
                    log(f"fine-tuning {config.epochs} epochs x {self.steps_per_epoch} steps: about {estimate / 60:.1f} min on this CPU")
                if progress:
                    progress(step, self.total_steps, stage="fine-tuning",
                             info=f"epoch {epoch}/{config.epochs} loss {np.mean(losses):.3f} val {best_acc:.3f}")
            acc, val_loss, right = self.validate(val_x, val_y)
            history.append({"epoch": epoch, "loss": round(float(np.mean(losses)), 5), "val_accuracy": acc, "val_loss": round(val_loss, 5)})
            if log:
                log(f"epoch {epoch}: loss {np.mean(losses):.3f}, validation accuracy {acc:.3f}, validation loss {val_loss:.3f}")
            if val_x is None or acc > best_acc or (acc == best_acc and val_loss < best_loss):
                best_acc, best_loss, best_state, best_epoch, best_right, stale = acc, val_loss, _trainable_state(net), epoch, right, 0
            else:
                stale += 1
                if stale >= config.patience:
                    if log:
                        log(f"early stop: no validation gain for {config.patience} epochs; keeping epoch {best_epoch}")
                    break
        net.load_state_dict(best_state, strict=False)
        return history, best_epoch, estimate, best_right


def _augmentation(pre):
    """Random crops of 35–100 % of the photo, flips and colour jitter, normalised as the backbone expects."""
    import torch
    from torchvision.transforms import v2 as T

    interp = T.InterpolationMode.BICUBIC if pre.interpolation == "bicubic" else T.InterpolationMode.BILINEAR
    return T.Compose([
        T.RandomResizedCrop(pre.input_size, scale=(0.35, 1.0), interpolation=interp, antialias=True),
        T.RandomHorizontalFlip(),
        T.ColorJitter(0.2, 0.2, 0.2),
        T.PILToTensor(),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize(pre.mean, pre.std),
    ])


def _trainable_state(net) -> dict:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def onnx_outputs(onnx_path: Path, paths: Sequence[Path], pre) -> tuple[np.ndarray, np.ndarray]:
    """(``probabilities``, ``embedding``) of an exported model for image files, through the shared pipeline."""
    from imgclf.runtime.batching import run_batched
    from imgclf.runtime.loader import pixel_loader
    from imgclf.runtime.session import create_session

    session = create_session(onnx_path)
    forward = lambda b: session.run(["probabilities", "embedding"], {"input": b})  # noqa: E731
    rows = [out for _, out in run_batched(paths, pixel_loader(pre), forward, collate=pre.batch)]
    if not rows:
        return np.zeros((0, session.get_outputs()[0].shape[1]), np.float32), np.zeros((0, 1), np.float32)
    return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])


def export_onnx(net, input_size: int, out_path: Path) -> None:
    """Write the fine-tuned network as ``input`` → (``probabilities``, ``embedding``)."""
    import torch
    from torch import nn

    class Exported(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            logits, emb = self.inner(x)
            return torch.softmax(logits, dim=1), emb

    from imgclf.backbones.torch_export import export_module

    export_module(Exported(net).eval(), input_size, out_path, ["probabilities", "embedding"])
