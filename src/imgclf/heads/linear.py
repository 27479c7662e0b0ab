"""The classifier head: a class-balanced softmax linear model on L2-normalised embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Inverse regularisation strengths tried, weakest first; the best on validation data wins.
C_GRID = (30.0, 100.0, 300.0)


@dataclass
class LinearHead:
    """``softmax(normalize(x) @ weight.T + bias)``; ``weight`` is (classes, dim)."""

    weight: np.ndarray
    bias: np.ndarray
    C: float

    def logits(self, x: np.ndarray) -> np.ndarray:
        return l2_normalize(x) @ self.weight.T + self.bias

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.logits(x))

    def tempered(self, temperature: float) -> "LinearHead":
        """The same head with its logits divided by ``temperature`` (same best label, calibrated confidences)."""
        if temperature == 1.0:
            return self
        return LinearHead((self.weight / temperature).astype(np.float32), (self.bias / temperature).astype(np.float32), self.C)


#: The temperatures :func:`fit_temperature` chooses among (confidences sharpened at most 4x, softened at most 10x).
TEMPERATURE_RANGE = (0.25, 10.0)
#: Spread of the prior on log T: a temperature fitted on few photos stays near 1 (with every photo right, the likelihood
#: alone would sharpen without end), while a few hundred photos outweigh it.
TEMPERATURE_PRIOR = 0.5


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature ``T`` that makes ``softmax(logits / T)`` most likely for labels ``y``, under a normal prior on
    log T (temperature scaling: one number fitted on out-of-fold logits, so that a confidence of 80 % is right about
    80 % of the time)."""
    from scipy.optimize import minimize_scalar

    if len(y) < 2 or logits.shape[1] < 2:
        return 1.0
    z = np.asarray(logits, np.float64)
    rows = np.arange(len(y))

    def cost(log_t: float) -> float:
        s = z / np.exp(log_t)
        s = s - s.max(axis=1, keepdims=True)
        nll = float(np.sum(np.log(np.exp(s).sum(axis=1)) - s[rows, y]))
        return nll + 0.5 * (log_t / TEMPERATURE_PRIOR) ** 2

    lo, hi = np.log(TEMPERATURE_RANGE)
    return round(float(np.exp(minimize_scalar(cost, bounds=(lo, hi), method="bounded", options={"xatol": 1e-4}).x)), 4)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class _Problem:
    """Class-balanced multinomial logistic regression, ``min C·Σ wᵢ·CEᵢ + ½‖W‖²`` (sklearn's objective).

    Solved with SciPy's L-BFGS on a NumPy objective, in the row space of the data
    (the optimum lies there), which is several times faster than sklearn here. The data and the
    per-photo terms are float32 (the matrix products are most of the cost), the loss is summed in
    float64; the solver keeps :data:`MEMORY` corrections and stops when a step improves the loss by
    less than :data:`RELATIVE_TOLERANCE` of itself (measured on 16,000 photos: 140 loss evaluations
    instead of 311, probabilities within 0.001 of a float64 solve run to SciPy's defaults).
    """

    #: L-BFGS corrections kept (SciPy's default 10 took 20 % more evaluations on 16,000 photos).
    MEMORY = 30
    #: Relative improvement of the loss below which the solver stops.
    RELATIVE_TOLERANCE = 1e-7

    def __init__(self, x: np.ndarray, y: np.ndarray, n_classes: int):
        x = l2_normalize(x)
        if x.shape[0] < x.shape[1]:  # fewer photos than dimensions: x = r.T @ q.T, solved on r.T in q's orthonormal basis
            q, r = np.linalg.qr(x.T.astype(np.float64))
            self.basis, self.x = q.T, np.ascontiguousarray(r.T, np.float32)
        else:
            self.basis, self.x = None, x
        n = len(y)
        self.k = n_classes
        self.present = np.unique(y)
        self.sample_w = (n / (len(self.present) * np.bincount(y, minlength=n_classes)[y])).astype(np.float32)
        self.onehot = np.zeros((n, n_classes), np.float32)
        self.onehot[np.arange(n), y] = 1.0
        self.mask = np.full(n_classes, -np.inf, np.float32)
        self.mask[self.present] = 0.0  # classes absent from training can never win

    def solve(self, C: float, start: np.ndarray | None = None) -> np.ndarray:
        from scipy.optimize import minimize

        d, k = self.x.shape[1], self.k

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w = theta[: d * k].reshape(k, d)
            z = self.x @ w.T.astype(np.float32) + theta[d * k :].astype(np.float32) + self.mask
            z -= z.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            fit = np.sum(self.sample_w * np.where(self.onehot > 0, logp, 0.0).sum(1), dtype=np.float64)
            g = np.float32(C) * self.sample_w[:, None] * (np.exp(logp) - self.onehot)
            grad = np.concatenate([(g.T @ self.x).ravel() + w.ravel(), g.sum(0, dtype=np.float64)])
            return float(-C * fit + 0.5 * np.sum(w * w)), grad

        theta0 = np.zeros(k * (d + 1)) if start is None else start
        return minimize(objective, theta0, jac=True, method="L-BFGS-B",
                        options={"maxiter": 500, "gtol": 1e-4, "maxcor": self.MEMORY, "ftol": self.RELATIVE_TOLERANCE}).x

    def head(self, theta: np.ndarray, C: float) -> LinearHead:
        d = self.x.shape[1]
        weight = theta[: d * self.k].reshape(self.k, d)
        weight = weight @ self.basis if self.basis is not None else weight
        bias = theta[d * self.k :].astype(np.float32)
        bias[np.setdiff1d(np.arange(self.k), self.present)] = -1e4
        return LinearHead(weight.astype(np.float32), bias, C)

    def path(self, grid: tuple[float, ...]) -> list[LinearHead]:
        """One head per ``C``, each solve warm-started from the previous one."""
        heads, theta = [], None
        for C in grid:
            theta = self.solve(C, theta)
            heads.append(self.head(theta, C))
        return heads


def _score(head: LinearHead, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(balanced accuracy, log loss) on held-out data."""
    p = head.probabilities(x)
    recalls = [np.mean(p[y == c].argmax(1) == c) for c in np.unique(y)]
    loss = float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))
    return float(np.mean(recalls)), loss


def _enough_validation(y_val: np.ndarray, y_train: np.ndarray) -> bool:
    classes = np.unique(y_train)
    return len(y_val) >= 2 * len(classes) and set(np.unique(y_val)) >= set(classes)


def stratified_folds(y: np.ndarray, k: int, seed: int, groups: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train, held-out) index pairs, each class spread evenly over the folds; photos of one group (``groups``:
    an id per photo, e.g. near copies of one picture) are held out together, in the fold with the fewest photos of
    their class so far."""
    rng = np.random.default_rng(seed)
    if groups is None:
        fold_of = np.empty(len(y), dtype=np.int64)
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            fold_of[idx] = np.arange(len(idx)) % k
        return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(k)]
    fold_of = np.full(len(y), -1, dtype=np.int64)
    for c in np.unique(y):
        filled = np.zeros(k, dtype=np.int64)
        for g in rng.permutation(np.unique(groups[y == c])):
            members = np.flatnonzero((groups == g) & (fold_of < 0))
            f = int(np.argmin(filled))
            fold_of[members] = f
            filled[f] += len(members)
    return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(k)]


#: ``C`` is chosen on heads fitted to at most this many training photos of each label (a stratified sample fixed by
#: the seed); the head that ships is then fitted once, with that ``C``, on every training photo. Below it nothing changes;
#: above it choosing costs the same whatever the number of photos.
CHOOSE_C_PER_LABEL = 400


def stratified_sample(y: np.ndarray, per_label: int, seed: int) -> np.ndarray:
    """Indices (sorted) of at most ``per_label`` photos of each label of ``y``, drawn with ``seed``; every index when no
    label has more."""
    counts = np.bincount(y)
    if counts.max(initial=0) <= per_label:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_label] for c in np.unique(y)]))


def fit_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    n_classes: int,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    seed: int = 0,
    grid: tuple[float, ...] = C_GRID,
) -> LinearHead:
    """Fit on the training split with ``C`` chosen on the validation split.

    When the validation split is too small to rank candidates (fewer than two photos
    per class on average, or a class missing), ``C`` is chosen by stratified k-fold
    cross-validation on the training split instead, or is the grid's middle value when a
    class has a single training photo. ``C`` is chosen on at most :data:`CHOOSE_C_PER_LABEL`
    photos of each label. Same inputs and seed, same head.
    """
    from threadpoolctl import threadpool_limits

    sample = stratified_sample(y_train, CHOOSE_C_PER_LABEL, seed)
    whole = len(sample) == len(y_train)
    xs, ys = x_train[sample], y_train[sample]
    # Small dense algebra: BLAS threads only fight each other here (measured 5x slower).
    with threadpool_limits(1):
        if x_val is not None and y_val is not None and _enough_validation(y_val, y_train):
            heads = _Problem(xs, ys, n_classes).path(grid)
            scores = [_score(h, x_val, y_val) for h in heads]
            best = min(range(len(grid)), key=lambda i: (-scores[i][0], scores[i][1], grid[i]))
            if whole:
                return heads[best]
        else:
            k = int(min(5, np.bincount(ys)[np.unique(ys)].min()))
            if k < 2:  # a class with one photo: nothing to choose C on, take the grid's middle value
                return _Problem(x_train, y_train, n_classes).path((grid[len(grid) // 2],))[0]
            totals = np.zeros((len(grid), 2))
            for tr, te in stratified_folds(ys, k, seed):
                heads = _Problem(xs[tr], ys[tr], n_classes).path(grid)
                totals += [_score(h, xs[te], ys[te]) for h in heads]
            best = min(range(len(grid)), key=lambda i: (-totals[i][0], totals[i][1], grid[i]))
        # every training photo, with the chosen C (along the grid up to it when C was chosen on them all)
        return _Problem(x_train, y_train, n_classes).path(grid[: best + 1] if whole else (grid[best],))[-1]


def refit(head: LinearHead, x: np.ndarray, y: np.ndarray, n_classes: int) -> LinearHead:
    """The same ``C`` fitted on more data (train + validation, once ``C`` is chosen)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _Problem(x, y, n_classes).path((head.C,))[0]


class HeadCache:
    """Fitted heads keyed by a digest of exactly what they were fitted on (same inputs, same head).

    Stored as ``.npz`` without pickles; a damaged entry is ignored and refitted.
    """

    #: Bumped whenever the fitting rules change, so heads fitted by older rules are not reused.
    VERSION = 3

    def __init__(self, root):
        from pathlib import Path

        self.dir = Path(root) / "heads"

    @staticmethod
    def key(*parts) -> str:
        import hashlib

        h = hashlib.blake2b(digest_size=20)
        h.update(f"head-rules-{HeadCache.VERSION}".encode())
        for part in parts:
            arr = np.ascontiguousarray(part) if isinstance(part, np.ndarray) else np.asarray(repr(part).encode())
            h.update(str(arr.dtype).encode() + str(arr.shape).encode() + arr.tobytes())
        return h.hexdigest()

    def get(self, key: str) -> tuple[LinearHead, LinearHead] | None:
        z = self._load(key)
        try:
            return tuple(LinearHead(z[f"{n}_w"], z[f"{n}_b"], float(z[f"{n}_C"])) for n in ("selected", "final"))
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, key: str, selected: LinearHead, final: LinearHead) -> None:
        self._save(key, **{f"{n}_{a}": v for n, h in (("selected", selected), ("final", final))
                           for a, v in (("w", h.weight), ("b", h.bias), ("C", np.float64(h.C)))})

    def out_of_fold(self, key: str, compute) -> tuple[np.ndarray, int]:
        """``compute()``'s out-of-fold values and number of folds, computed once for ``key`` (its inputs' digest)."""
        z = self._load(key)
        if z is not None and "values" in z and "folds" in z:
            return z["values"], int(z["folds"])
        values, folds = compute()
        self._save(key, values=values, folds=np.int64(folds))
        return values, folds

    def _load(self, key: str) -> dict | None:
        try:
            with np.load(self.dir / f"{key}.npz", allow_pickle=False) as z:
                return {name: z[name] for name in z.files}
        except Exception:
            return None

    def _save(self, key: str, **arrays) -> None:
        """Best effort: a cache that cannot be written is only slower."""
        import io

        from imgclf.files import write_bytes_atomic

        buf = io.BytesIO()
        np.savez(buf, **arrays)
        try:
            write_bytes_atomic(self.dir / f"{key}.npz", buf.getvalue(), durable=False)
        except OSError:
            pass
