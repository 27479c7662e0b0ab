"""The heads of a model that answers several labels per photo: one logistic score per label, each with its threshold.

Each label's score is an independent logistic regression on the L2-normalised embedding (class-balanced: a label's
few photos weigh as much as the many without it), all fitted together by one L-BFGS solve; its strength ``C`` is
chosen by out-of-fold mean average precision. With several views of a photo a label's score blends its best view's with the
whole photo's pooled one, the blend (:data:`MIXES`) chosen with ``C``: photos of several small things favour the best
view, photos of one thing each the pooled. Out-of-fold scores then fit each label's Platt scaling (so that "0.8"
is right about 80 % of the time) and its threshold: the one with the best F1, or the lowest whose precision reaches
what the user asks for (``--min-precision``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imgclf.heads.linear import l2_normalize

#: Inverse regularisation strengths tried; the best out-of-fold mean average precision wins.
C_GRID = (3.0, 10.0, 30.0, 100.0)
FOLDS = 5
#: The weights of a label's best view in its score (the rest: the pooled views' score), tried with each ``C``.
MIXES = (1.0, 0.75, 0.5, 0.25, 0.0)
#: The smallest Platt scale: scores keep their order, so a label's best view stays its best.
MIN_SCALE = 0.01


@dataclass
class SigmoidHeads:
    """``sigmoid(normalize(x) @ weight.T + bias)``: one probability per label; ``weight`` is (labels, dim).

    With ``views`` > 1 an embedding is that many views side by side (:mod:`imgclf.backbones.views`): the heads are
    fitted on their element-wise largest (:func:`training_features`) and a label's logit is ``mix`` times its best
    view's plus ``1 - mix`` times that of the views' element-wise largest."""

    weight: np.ndarray
    bias: np.ndarray
    C: float
    views: int = 1
    mix: float = 1.0

    def logits(self, x: np.ndarray) -> np.ndarray:
        if self.views == 1:
            return l2_normalize(x) @ self.weight.T + self.bias
        best, pooled = self.parts(x)
        return self.mix * best + (1 - self.mix) * pooled

    def parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A views embedding's two logits per label: its best view's, and its pooled views'."""
        each = l2_normalize(x.reshape(-1, self.weight.shape[1])) @ self.weight.T + self.bias
        pooled = l2_normalize(training_features(x, self.views)) @ self.weight.T + self.bias
        return each.reshape(len(x), self.views, -1).max(1), pooled

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(self.logits(x))

    def scaled(self, scale: np.ndarray, shift: np.ndarray) -> "SigmoidHeads":
        """The heads whose logits are ``scale * logits + shift`` per label (Platt scaling folded into the weights)."""
        scale, shift = np.asarray(scale, np.float32), np.asarray(shift, np.float32)
        if (scale <= 0).any():  # a label's best view must stay its best after scaling
            raise ValueError("Platt scaling must keep the order of a label's scores")
        return SigmoidHeads((self.weight * scale[:, None]).astype(np.float32), (self.bias * scale + shift).astype(np.float32),
                            self.C, self.views, self.mix)


def training_features(x: np.ndarray, views: int) -> np.ndarray:
    """What the heads are fitted on: the embeddings, or with views the element-wise largest of each photo's."""
    return x if views == 1 else x.reshape(len(x), views, -1).max(1)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def fit(x: np.ndarray, Y: np.ndarray, C: float, balanced: bool = True, views: int = 1, mix: float = 1.0) -> SigmoidHeads:
    """Every label's logistic regression on ``x`` (:func:`training_features`, rows L2-normalised here) and the 0/1
    matrix ``Y`` (photos, labels): ``min C·Σ wᵢₖ·BCEᵢₖ + ½‖W‖²``, the bias unpenalised (scikit-learn's objective, per
    label)."""
    from scipy.optimize import minimize

    u = l2_normalize(training_features(x, views))
    if u.shape[0] < u.shape[1]:  # fewer photos than dimensions: solved in the photos' span, as the softmax head is
        q, r = np.linalg.qr(u.T.astype(np.float64))
        basis, data = q.T, np.ascontiguousarray(r.T, np.float32)
    else:
        basis, data = None, u
    Y = np.asarray(Y, np.float32)
    n, k = Y.shape
    d = data.shape[1]
    positives = Y.sum(0)
    if balanced:  # each label's positives and negatives weigh half of the photos
        w_pos = n / (2.0 * np.maximum(positives, 1))
        w_neg = n / (2.0 * np.maximum(n - positives, 1))
    else:
        w_pos = w_neg = np.ones(k)
    weights = np.where(Y > 0, w_pos, w_neg).astype(np.float32)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: d * k].reshape(k, d).astype(np.float32)
        z = data @ w.T + theta[d * k:].astype(np.float32)
        loss = np.logaddexp(0.0, z) - Y * z  # binary cross-entropy with logits
        g = np.float32(C) * weights * (sigmoid(z) - Y)
        grad = np.concatenate([(g.T @ data).ravel().astype(np.float64) + theta[: d * k], g.sum(0, dtype=np.float64)])
        return float(C * np.sum(weights * loss, dtype=np.float64) + 0.5 * np.sum(theta[: d * k] ** 2)), grad

    result = minimize(objective, np.zeros(d * k + k), jac=True, method="L-BFGS-B",
                      options={"maxiter": 2000, "maxcor": 30, "ftol": 1e-9})
    w = result.x[: d * k].reshape(k, d)
    if basis is not None:
        w = w @ basis
    return SigmoidHeads(w.astype(np.float32), result.x[d * k:].astype(np.float32), float(C), views, float(mix))


def folds(n: int, seed: int, count: int = FOLDS) -> np.ndarray:
    """A fold number per photo: a seeded permutation dealt round-robin (each fold a ``1/count`` random share)."""
    out = np.empty(n, int)
    out[np.random.default_rng(seed).permutation(n)] = np.arange(n) % min(count, max(n, 1))
    return out


def out_of_fold(x: np.ndarray, Y: np.ndarray, C: float, fold: np.ndarray, balanced: bool = True, views: int = 1,
                mixes: tuple[float, ...] = (1.0,)) -> dict[float, np.ndarray]:
    """Each photo's logits from heads fitted on the other folds, for each blend of ``mixes`` (one fit serves them all)."""
    logits = {mix: np.zeros(Y.shape, np.float32) for mix in mixes}
    for f in np.unique(fold):
        held = fold == f
        heads = fit(x[~held], Y[~held], C, balanced, views)
        best, pooled = heads.parts(x[held]) if views > 1 else (heads.logits(x[held]),) * 2
        for mix in mixes:
            logits[mix][held] = mix * best + (1 - mix) * pooled
    return logits


def mean_average_precision(Y: np.ndarray, scores: np.ndarray) -> float:
    """The mean over labels with positives of each label's average precision."""
    found = [average_precision(Y[:, k], scores[:, k]) for k in range(Y.shape[1])]
    found = [a for a in found if a is not None]
    return float(np.mean(found)) if found else float("nan")


def average_precision(truth: np.ndarray, scores: np.ndarray) -> float | None:
    """The area under the precision–recall steps (scikit-learn's ``average_precision_score``); None without positives."""
    truth = np.asarray(truth) > 0
    if not truth.any():
        return None
    _, last, tp = _cut_points(scores, truth)
    precision = tp / (last + 1)
    recall = tp / truth.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _cut_points(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The scores sorted high to low, the last position of each run of equal scores (where a threshold can fall), and
    how many true photos are at or above each of those positions."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    s, t = np.asarray(scores, np.float64)[order], np.asarray(truth)[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    return s, last, np.cumsum(t)[last]


def choose_C(x: np.ndarray, Y: np.ndarray, seed: int, balanced: bool = True, views: int = 1,
             grid: tuple[float, ...] = C_GRID) -> tuple[float, float, np.ndarray, np.ndarray]:
    """The ``C`` of ``grid`` and, with views, the blend of :data:`MIXES` whose out-of-fold mean AP is best; those
    out-of-fold logits, and the folds."""
    fold = folds(len(Y), seed)
    best = None
    for C in grid:
        for mix, logits in out_of_fold(x, Y, C, fold, balanced, views, MIXES if views > 1 else (1.0,)).items():
            score = mean_average_precision(Y, logits)
            if best is None or score > best[0] + 1e-9:
                best = (score, C, mix, logits)
    return best[1], best[2], best[3], fold


def platt(logits: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each label's ``(scale, shift)`` making ``sigmoid(scale·z + shift)`` most likely on held-out logits, under a
    weak prior that keeps a label with few photos near (1, 0)."""
    from scipy.optimize import minimize

    k = Y.shape[1]
    scale, shift = np.ones(k), np.zeros(k)
    for j in range(k):
        z, t = np.asarray(logits[:, j], np.float64), np.asarray(Y[:, j], np.float64)
        if t.min() == t.max():
            continue

        def nll(p: np.ndarray) -> tuple[float, np.ndarray]:
            a, b = p
            s = a * z + b
            loss = np.sum(np.logaddexp(0.0, s) - t * s) + 0.5 * ((a - 1) ** 2 + b ** 2)
            g = sigmoid(s) - t
            return float(loss), np.array([np.sum(g * z) + (a - 1), np.sum(g) + b])

        scale[j], shift[j] = minimize(nll, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B",
                                      bounds=[(MIN_SCALE, None), (None, None)]).x
    return scale, shift


def thresholds(probabilities: np.ndarray, Y: np.ndarray, min_precision: float | None = None) -> np.ndarray:
    """Each label's threshold on held-out calibrated probabilities: the best F1 (ties: the higher threshold), or with
    ``min_precision`` the lowest threshold whose precision reaches it (1.0 — never answered — when none does)."""
    out = np.full(Y.shape[1], 0.5)
    for j in range(Y.shape[1]):
        p, t = np.asarray(probabilities[:, j], np.float64), np.asarray(Y[:, j]) > 0
        if not t.any():
            out[j] = 1.0
            continue
        s, last, tp = _cut_points(p, t)
        answered = last + 1
        precision, recall = tp / answered, tp / t.sum()
        if min_precision is None:
            f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
            i = int(np.argmax(f1))
        else:
            ok = np.flatnonzero(precision >= min_precision - 1e-12)
            if not len(ok):
                out[j] = 1.0
                continue
            i = int(ok.max())  # the most photos answered at that precision
        below = s[last[i] + 1] if last[i] + 1 < len(s) else 0.0
        out[j] = float((s[last[i]] + below) / 2)  # halfway to the next lower score
    return np.round(out, 6)
