"""Label-only attacks on linear classifiers (Lowd & Meek, KDD 2005; Tramèr et al. 2016 §6).

https://dl.acm.org/doi/10.1145/1081870.1081950 and https://arxiv.org/abs/1609.02943

Lowd–Meek: with labels only, find a positive and a negative input, bisect the segment between them
to a point near the boundary, step a little to the positive side (``x_p`` with
``w·x_p + β = γ``), then for every feature i bisect along ``±e_i`` to the boundary point
``x_p + t_i e_i``. Since ``t_i = -γ/w_i``, this gives every ``w_i`` up to the common factor ``γ``
(features whose boundary lies beyond ``radius`` are reported as 0).
Adaptive retraining (Tramèr et al.): ``rounds`` rounds of ``m / rounds``
queries; the first uniform, the later ones on the candidates the current substitute is least sure
of; retrain after every round.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelsteal._checks import as_rng, check_float, check_int
from modelsteal.attacks.exact._base import (
    EXACT_ATTACKS,
    ExactResult,
    check_domain,
    n_features,
    wrap_budget,
)
from modelsteal.attacks.exact.equations import _linear_model
from modelsteal.errors import InvalidParameterError
from modelsteal.targets import Target


def _labels(oracle, x: np.ndarray, shape) -> np.ndarray:
    return oracle.query(x.reshape(len(x), *shape).astype(np.float32)).argmax(axis=1)


def _binary(target: Target, owner: str) -> None:
    if target.n_classes != 2:
        raise InvalidParameterError(
            f"{owner} attacks a binary linear classifier; this target has {target.n_classes} "
            "classes."
        )


@EXACT_ATTACKS.register("lowd_meek")
def lowd_meek(
    target: Target,
    *,
    seed: int | np.random.Generator,
    domain: Any = None,
    radius: float = 1e3,
    rel_tol: float = 1e-7,
    max_probes: int = 1000,
    budget: int | None = None,
) -> ExactResult:
    """Recover ``w / γ`` and ``β / γ`` of ``sign(w·x + β)`` from labels only (positive scale γ).

    ``domain``: the box random probes are drawn from until both labels are seen (``max_probes``).
    ``radius``: how far each feature's line search reaches. ``rel_tol``: bisection stop, relative.
    ``budget`` defaults to 200 (d + 1) rows.
    """
    owner = "lowd_meek"
    _binary(target, owner)
    d = n_features(target)
    shape = tuple(target.input_shape)
    radius = check_float(radius, name="radius", owner=owner, low=0.0, low_open=True)
    rel_tol = check_float(rel_tol, name="rel_tol", owner=owner, low=0.0, low_open=True)
    max_probes = check_int(max_probes, name="max_probes", owner=owner, low=2)
    lo, hi = check_domain(domain, d, owner=owner)
    oracle = wrap_budget(target, budget, default=200 * (d + 1), owner=owner)
    rng = as_rng(seed)

    xs, ys = [], []
    for _ in range(max_probes):
        x = rng.uniform(lo, hi).astype(np.float32).astype(np.float64)
        xs.append(x)
        ys.append(int(_labels(oracle, x[None], shape)[0]))
        if len(set(ys)) == 2:
            break
    else:
        raise InvalidParameterError(
            f"{owner}: {max_probes} random probes in the domain all got the same label; widen "
            "'domain' so that it straddles the decision boundary."
        )
    x_pos = xs[ys.index(1)]
    x_neg = xs[ys.index(0)]
    # Bisect the segment to a pair (negative a, positive b) close together.
    a, b = 0.0, 1.0  # fraction from x_neg to x_pos
    while b - a > 1e-3:
        m = 0.5 * (a + b)
        if _labels(oracle, (x_neg + m * (x_pos - x_neg))[None], shape)[0] == 1:
            b = m
        else:
            a = m
    x_p = x_neg + min(1.0, b + 0.05) * (x_pos - x_neg)  # a little inside the positive side
    x_p = x_p.astype(np.float32).astype(np.float64)

    t = np.full(d, np.inf)
    ends = np.repeat(x_p[None], 2 * d, axis=0)
    ends[np.arange(d), np.arange(d)] += radius
    ends[d + np.arange(d), np.arange(d)] -= radius
    flip = _labels(oracle, ends, shape) == 0
    for i in range(d):
        if not (flip[i] or flip[d + i]):
            continue  # |w_i| too small to reach the boundary within radius
        direction = 1.0 if flip[i] else -1.0
        inside, outside = 0.0, radius
        while outside - inside > rel_tol * outside:
            m = 0.5 * (inside + outside)
            p = x_p.copy()
            p[i] += direction * m
            if _labels(oracle, p[None], shape)[0] == 1:
                inside = m
            else:
                outside = m
        t[i] = direction * 0.5 * (inside + outside)
    # The boundary x_p + t_i e_i satisfies γ + t_i w_i = 0: w_i = -γ / t_i, reported with γ = 1.
    w = np.where(np.isfinite(t), -1.0 / np.where(np.isfinite(t), t, 1.0), 0.0)
    beta = 1.0 - float(w @ x_p)
    W = w[:, None] * np.array([[-0.5, 0.5]])
    model = _linear_model(W, np.array([-beta / 2, beta / 2]), target)
    return ExactResult(
        name=owner,
        params={"w": w, "b": beta},
        model=model,
        queries=oracle.spent,
        budget=oracle.budget,
        info={"zero_features": int((~np.isfinite(t)).sum()), "scale": "w and b are divided by γ"},
    )


@EXACT_ATTACKS.register("adaptive_retraining")
def adaptive_retraining(
    target: Target,
    *,
    seed: int | np.random.Generator,
    alpha: float = 10.0,
    rounds: int = 10,
    domain: Any = None,
    candidates: int = 10_000,
    budget: int | None = None,
) -> ExactResult:
    """Tramèr's adaptive retraining of a logistic regression from labels only.

    ``m = alpha (d + 1)`` queries in ``rounds`` rounds; candidates for the later rounds are
    ``candidates`` uniform draws from ``domain``, of which the ``m / rounds`` nearest to the current
    substitute's boundary are queried. Needs a binary target.
    """
    from sklearn.linear_model import LogisticRegression

    owner = "adaptive_retraining"
    _binary(target, owner)
    alpha = check_float(alpha, name="alpha", owner=owner, low=0.0, low_open=True)
    rounds = check_int(rounds, name="rounds", owner=owner, low=1)
    candidates = check_int(candidates, name="candidates", owner=owner, low=1)
    d = n_features(target)
    shape = tuple(target.input_shape)
    m = max(rounds, round(alpha * (d + 1)))
    lo, hi = check_domain(domain, d, owner=owner)
    oracle = wrap_budget(target, budget, default=m, owner=owner)
    rng = as_rng(seed)
    per_round = [m // rounds + (1 if r < m % rounds else 0) for r in range(rounds)]
    span = hi - lo
    X = np.empty((0, d))
    y = np.empty(0, dtype=np.int64)
    clf = None
    for r, k in enumerate(per_round):
        if r == 0 or clf is None:
            new = rng.uniform(lo, hi, size=(k, d))
        else:
            pool = rng.uniform(lo, hi, size=(candidates, d))
            margin = np.abs(clf.decision_function((pool - lo) / span))
            new = pool[np.argsort(margin)[:k]]
        new = new.astype(np.float32).astype(np.float64)
        X = np.vstack([X, new])
        y = np.concatenate([y, _labels(oracle, new, shape)])
        if len(np.unique(y)) == 2:
            # Fit on the domain scaled to [0, 1]: raw feature scales can differ by 10^4.
            clf = LogisticRegression(C=1e4, max_iter=5000).fit((X - lo) / span, y)
    if clf is None:
        raise InvalidParameterError(
            f"{owner}: every query got the same label; widen 'domain' so that it straddles the "
            "decision boundary."
        )
    w = clf.coef_[0].astype(np.float64) / span
    beta = float(clf.intercept_[0]) - float(w @ lo)
    model = _linear_model(
        w[:, None] * np.array([[-0.5, 0.5]]), np.array([-beta / 2, beta / 2]), target
    )
    return ExactResult(
        name=owner,
        params={"w": w, "b": beta},
        model=model,
        queries=oracle.spent,
        budget=oracle.budget,
        info={"rounds": rounds, "per_round": per_round},
    )
