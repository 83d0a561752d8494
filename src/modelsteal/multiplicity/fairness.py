"""Group fairness of a target and of every surrogate in a Rashomon set: arrays in, numbers out.

Metrics (``reference/algorithms.md`` §2, fairlearn's ``method="between_groups"`` definitions), for
a binary decision ``ŷ = 1[prediction == positive_class]`` and true label ``y = 1[label ==
positive_class]``, over the groups ``a`` of one sensitive feature:

- ``demographic_parity_difference`` = ``max_a P(ŷ=1 | A=a) − min_a P(ŷ=1 | A=a)``;
- ``equal_opportunity_difference`` = ``ΔTPR`` = ``max_a TPR_a − min_a TPR_a``;
- ``equalized_odds_difference`` = ``max(ΔTPR, ΔFPR)`` (fairlearn's ``agg="worst_case"``);
- ``accuracy_difference`` = ``max_a acc_a − min_a acc_a``, and ``accuracy[a]`` for every group,
  where accuracy compares the predicted and true classes themselves (not binarised).

A rate whose denominator is empty (a group with no positive row for the TPR, no negative row for
the FPR) counts as 0, as in fairlearn. ``min_group_size`` leaves out the rows of groups with fewer
rows than that, so that a handful of rows cannot dominate a max − min difference.

:func:`group_fairness` computes one model's values with fairlearn itself. :func:`fairness_values`
computes the same numbers for many models at once with vectorised numpy (fairlearn's MetricFrame
costs a pandas group-by per model, which is minutes for a few hundred models on Adult); the two
agree to floating-point precision, which the tests check. :func:`spread_summary` and
:func:`fairness_spread` summarise a set of models against the target: ``min``, ``max``, ``std``
(``ddof=0``) and ``range`` of each metric across the set, beside the target's value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelsteal._checks import check_int
from modelsteal.errors import InputValidationError

#: The scalar metrics, in report order.
FAIRNESS_METRICS = (
    "demographic_parity_difference",
    "equalized_odds_difference",
    "equal_opportunity_difference",
    "accuracy_difference",
)


def _labels(y: Any, *, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1 or len(arr) == 0:
        raise InputValidationError(
            f"{name} must be a non-empty (n,) array of class labels. Got shape {arr.shape}."
        )
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.number) or np.any(arr != np.round(arr)):
            raise InputValidationError(f"{name} must hold integer class labels.")
        arr = arr.astype(np.int64)
    return arr


def _decisions(predictions: Any, *, n: int) -> np.ndarray:
    """(n,) labels, (n, C) scores, (m, n) labels or (m, n, C) scores → (m, n) class labels."""
    arr = np.asarray(predictions)
    if arr.ndim == 3:
        decisions = arr.argmax(axis=2)
    elif arr.ndim == 2 and np.issubdtype(arr.dtype, np.floating) and arr.shape[0] == n:
        decisions = arr.argmax(axis=1)[None, :]  # (n, C) scores of one model
    elif arr.ndim == 2:
        decisions = arr
    elif arr.ndim == 1:
        decisions = arr[None, :]
    else:
        raise InputValidationError(
            "predictions must be (n,) labels, (n, C) scores, (m, n) labels or (m, n, C) "
            f"scores. Got shape {arr.shape} instead."
        )
    if decisions.shape[1] != n:
        raise InputValidationError(
            f"predictions cover {decisions.shape[1]} samples but y_true has {n}; they must be "
            "aligned row for row."
        )
    if not np.issubdtype(decisions.dtype, np.integer):
        if np.any(decisions != np.round(decisions)):
            raise InputValidationError(
                "predictions given as (m, n) must be integer labels; pass scores as (m, n, C)."
            )
        decisions = decisions.astype(np.int64)
    return decisions


def _groups(
    sensitive_features: Any, *, n: int, min_group_size: int
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Kept-row mask, group names, and group codes (-1 for dropped rows)."""
    arr = np.asarray(sensitive_features)
    if arr.ndim != 1 or len(arr) != n:
        raise InputValidationError(
            f"sensitive_features must be an ({n},) array aligned with y_true. "
            f"Got shape {arr.shape} instead."
        )
    values, codes, counts = np.unique(arr.astype(str), return_inverse=True, return_counts=True)
    big = counts >= min_group_size
    if big.sum() < 2:
        raise InputValidationError(
            f"Group fairness needs at least 2 groups with at least {min_group_size} rows; the "
            f"groups are {dict(zip(values.tolist(), counts.tolist(), strict=True))}. Lower "
            "min_group_size or evaluate on more rows."
        )
    remap = np.full(len(values), -1)
    remap[big] = np.arange(big.sum())
    codes = remap[codes.reshape(-1)]
    return codes >= 0, [str(v) for v in values[big]], codes


def _check(
    y_true: Any, predictions: Any, sensitive_features: Any, min_group_size: int, owner: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    min_group_size = check_int(min_group_size, name="min_group_size", owner=owner, low=1)
    y = _labels(y_true, name="y_true")
    decisions = _decisions(predictions, n=len(y))
    keep, names, codes = _groups(sensitive_features, n=len(y), min_group_size=min_group_size)
    return y[keep], decisions[:, keep], codes[keep], names


def group_fairness(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    sensitive_features: np.ndarray,
    *,
    positive_class: int = 1,
    min_group_size: int = 1,
) -> dict[str, float]:
    """One model's group-fairness metrics, computed with fairlearn.

    ``y_pred`` is ``(n,)`` labels or ``(n, C)`` scores (argmax taken). Returns the
    :data:`FAIRNESS_METRICS` and ``accuracy[<group>]`` for every group kept.
    """
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_difference,
        equal_opportunity_difference,
        equalized_odds_difference,
    )

    y, decisions, codes, names = _check(
        y_true, y_pred, sensitive_features, min_group_size, "group_fairness"
    )
    if decisions.shape[0] != 1:
        raise InputValidationError(
            "group_fairness takes one model's (n,) labels or (n, C) scores; use "
            "fairness_values for (m, n) or (m, n, C) arrays."
        )
    pred = decisions[0]
    group = np.asarray(names, dtype=object)[codes]
    yb = (y == positive_class).astype(np.int64)
    pb = (pred == positive_class).astype(np.int64)
    kw = {"sensitive_features": group}
    acc = MetricFrame(
        metrics=lambda t, p: float(np.mean(np.asarray(t) == np.asarray(p))),
        y_true=y,
        y_pred=pred,
        sensitive_features=group,
    ).by_group
    out = {
        "demographic_parity_difference": float(demographic_parity_difference(yb, pb, **kw)),
        "equalized_odds_difference": float(equalized_odds_difference(yb, pb, **kw)),
        "equal_opportunity_difference": float(equal_opportunity_difference(yb, pb, **kw)),
        "accuracy_difference": float(acc.max() - acc.min()),
    }
    out.update({f"accuracy[{g}]": float(acc[g]) for g in names})
    return out


def _rate(hits: np.ndarray, member: np.ndarray) -> np.ndarray:
    """(m, n) 0/1 hits, (G, n) 0/1 membership → (m, G) mean of hits over members (0 if none)."""
    count = member.sum(axis=1)
    total = hits @ member.T
    return np.divide(total, count[None, :], out=np.zeros_like(total), where=count[None, :] > 0)


def fairness_values(
    y_true: np.ndarray,
    predictions: np.ndarray,
    sensitive_features: np.ndarray,
    *,
    positive_class: int = 1,
    min_group_size: int = 1,
) -> dict[str, np.ndarray]:
    """Every model's group-fairness metrics at once: metric name → ``(m,)`` array.

    ``predictions`` is ``(m, n, C)`` scores or ``(m, n)`` labels (a single model's ``(n,)`` or
    ``(n, C)`` is taken as ``m = 1``). The values equal :func:`group_fairness` model by model.
    """
    y, decisions, codes, names = _check(
        y_true, predictions, sensitive_features, min_group_size, "fairness_values"
    )
    member = (codes[None, :] == np.arange(len(names))[:, None]).astype(np.float64)  # (G, n)
    yb = y == positive_class
    pb = (decisions == positive_class).astype(np.float64)  # (m, n)
    selection = _rate(pb, member)
    tpr = _rate(pb, member * yb[None, :])
    fpr = _rate(pb, member * ~yb[None, :])
    acc = _rate((decisions == y[None, :]).astype(np.float64), member)

    def spread(rate: np.ndarray) -> np.ndarray:
        return rate.max(axis=1) - rate.min(axis=1)

    out = {
        "demographic_parity_difference": spread(selection),
        "equalized_odds_difference": np.maximum(spread(tpr), spread(fpr)),
        "equal_opportunity_difference": spread(tpr),
        "accuracy_difference": spread(acc),
    }
    out.update({f"accuracy[{g}]": acc[:, k] for k, g in enumerate(names)})
    return out


def spread_summary(
    values: Mapping[str, np.ndarray],
    target: Mapping[str, float | np.ndarray],
    *,
    members: Sequence[int] | np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """Summarise precomputed per-model values over ``members`` (all models if None).

    Returns, per metric: ``target`` (the target's value), ``min``, ``max``, ``std`` (``ddof=0``)
    and ``range`` (``max − min``) across the models, and ``n_models``.
    """
    out: dict[str, dict[str, float]] = {}
    for name, vals in values.items():
        v = np.asarray(vals, dtype=np.float64).reshape(-1)
        if members is not None:
            v = v[np.asarray(members, dtype=np.int64)]
        if v.size == 0:
            raise InputValidationError("spread_summary: members selects no model.")
        t = np.asarray(target.get(name, np.nan), dtype=np.float64).reshape(-1)
        out[name] = {
            "target": float(t[0]) if t.size else float("nan"),
            "min": float(v.min()),
            "max": float(v.max()),
            "std": float(v.std()),
            "range": float(v.max() - v.min()),
            "n_models": int(v.size),
        }
    return out


def fairness_spread(
    y_true: np.ndarray,
    scores: np.ndarray,
    target: np.ndarray,
    sensitive_features: np.ndarray,
    *,
    positive_class: int = 1,
    min_group_size: int = 1,
) -> dict[str, dict[str, float]]:
    """Spread of each fairness metric across a set of models, against the target's value.

    ``scores`` is the set's ``(m, n, C)`` scores (or ``(m, n)`` labels); ``target`` the target's
    ``(n, C)`` scores or ``(n,)`` labels on the same rows. See :func:`spread_summary`.
    """
    kw = {"positive_class": positive_class, "min_group_size": min_group_size}
    values = fairness_values(y_true, scores, sensitive_features, **kw)
    target_values = fairness_values(y_true, target, sensitive_features, **kw)
    return spread_summary(values, target_values)
