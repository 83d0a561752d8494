"""Pure metric functions: arrays in, numbers out.

Functions that compare predictions accept either (n,) integer labels or (n, C) score rows (the
argmax is taken); functions on distributions take (n, C) probability rows.
"""

from __future__ import annotations

import numpy as np

from modelsteal.errors import InputValidationError


def _labels(a: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim == 2:
        return arr.argmax(axis=1)
    if arr.ndim == 1:
        return arr.astype(np.int64, copy=False)
    raise InputValidationError(
        f"{name} must be (n,) labels or (n, C) scores. Got shape {arr.shape} instead."
    )


def _pair_labels(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> tuple[np.ndarray, ...]:
    la, lb = _labels(a, names[0]), _labels(b, names[1])
    if la.shape != lb.shape:
        raise InputValidationError(
            f"{names[0]} and {names[1]} must describe the same samples. Got {la.shape[0]} and "
            f"{lb.shape[0]} rows."
        )
    if la.size == 0:
        raise InputValidationError(f"{names[0]} is empty; a metric needs at least one sample.")
    return la, lb


def _pair_probs(p: np.ndarray, q: np.ndarray, names: tuple[str, str]) -> tuple[np.ndarray, ...]:
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.ndim != 2 or p.shape != q.shape:
        raise InputValidationError(
            f"{names[0]} and {names[1]} must be (n, C) arrays of the same shape. Got {p.shape} "
            f"and {q.shape}."
        )
    if p.size == 0:
        raise InputValidationError(f"{names[0]} is empty; a metric needs at least one sample.")
    return p, q


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of samples whose predicted label equals the true label."""
    t, p = _pair_labels(y_true, y_pred, ("y_true", "y_pred"))
    return float(np.mean(t == p))


def fidelity(substitute: np.ndarray, target: np.ndarray) -> float:
    """Top-1 agreement between a substitute's and the target's predictions on the same inputs."""
    s, t = _pair_labels(substitute, target, ("substitute", "target"))
    return float(np.mean(s == t))


def l1_distances(clean: np.ndarray, returned: np.ndarray) -> np.ndarray:
    """Per-row ℓ1 distance ‖y − ŷ‖₁ between clean and returned probability vectors."""
    p, q = _pair_probs(clean, returned, ("clean", "returned"))
    return np.abs(p - q).sum(axis=1)


def l1_distortion(clean: np.ndarray, returned: np.ndarray) -> dict[str, float]:
    """Mean and max ℓ1 distortion a defense introduces (``{"mean": …, "max": …}``)."""
    d = l1_distances(clean, returned)
    return {"mean": float(d.mean()), "max": float(d.max())}


def kl_divergence(p: np.ndarray, q: np.ndarray, *, eps: float = 1e-12) -> float:
    """Mean over rows of KL(p ‖ q) in nats; ``q`` is clipped at ``eps`` to stay finite."""
    p, q = _pair_probs(p, q, ("p", "q"))
    q = np.clip(q, eps, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(np.clip(p, eps, None)) - np.log(q)), 0.0)
    return float(terms.sum(axis=1).mean())


def auroc(scores_positive: np.ndarray, scores_negative: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting ½.

    Computed from ranks (Mann–Whitney U), O(n log n).
    """
    pos = np.asarray(scores_positive, dtype=np.float64).ravel()
    neg = np.asarray(scores_negative, dtype=np.float64).ravel()
    if pos.size == 0 or neg.size == 0:
        raise InputValidationError("auroc needs at least one positive and one negative score.")
    if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(neg))):
        raise InputValidationError("auroc: scores must be finite.")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))  # average ranks for ties
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (pos.size * neg.size))


def ood_auroc(probs_in: np.ndarray, probs_out: np.ndarray) -> float:
    """OOD-detection AUROC with the maximum softmax probability as the score.

    In-distribution rows are the positives: 1.0 means every in-distribution row is more
    confident than every out-of-distribution row, 0.5 means the scores cannot tell them apart.
    """
    p_in = np.asarray(probs_in, dtype=np.float64)
    p_out = np.asarray(probs_out, dtype=np.float64)
    if p_in.ndim != 2 or p_out.ndim != 2 or p_in.shape[1] != p_out.shape[1]:
        raise InputValidationError(
            "ood_auroc takes two (n, C) probability arrays with the same C. Got shapes "
            f"{p_in.shape} and {p_out.shape}."
        )
    return auroc(p_in.max(axis=1), p_out.max(axis=1))


def recovery_distance(recovered: np.ndarray, clean: np.ndarray, *, ord: float | str = 2) -> float:
    """Mean over rows of ‖ỹ − y‖ between recovered (or returned) and clean probability rows.

    ``ord`` is 1, 2 or ``"inf"``; Tang et al. (2024, Fig. 4 and Table 6) report the ℓ2 version.
    """
    p, q = _pair_probs(recovered, clean, ("recovered", "clean"))
    if ord in ("inf", np.inf):
        order: float = np.inf
    elif ord in (1, 2):
        order = float(ord)
    else:
        raise InputValidationError(
            f"recovery_distance: ord must be 1, 2 or 'inf'. Got {ord!r} instead."
        )
    return float(np.linalg.norm(p - q, ord=order, axis=1).mean())
