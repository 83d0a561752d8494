"""Examples 3, 4, 6 and 7 of "Imitation Privacy" (Xian, Wang, Hong, Ding, Ghanadan), measured.

Every example is a function that simulates Bob (a :class:`~modelsteal.privacy.assisted.Module`:
an algorithm with private data), lets Alice build an imitation with the queries and side
information the example allows, and measures ``ρ_{I,M}`` (Definition 4) with
:func:`~modelsteal.privacy.imitation.multi_task_privacy`: the scaled squared error
``Σ|f_I − f_M|² / Σ|f_M|²`` on fresh *future* rows drawn from Bob's feature distribution,
averaged over random tasks (label vectors ``y``) and independent repeats (new data, new
queries), with a bootstrap interval over future rows and tasks. The functions return rows of plain
dicts, one per imitation and grid point; nothing is printed or written.

Where the paper leaves a set-up open, the choice made here is stated in the function's docstring
and exposed as a parameter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from sklearn.linear_model import LinearRegression

from modelsteal._checks import check_choice, check_float, check_int
from modelsteal.errors import InputValidationError, InvalidParameterError
from modelsteal.privacy.assisted import Module, ZeroImitation
from modelsteal.privacy.imitation import multi_task_privacy

logger = logging.getLogger(__name__)

Row = dict[str, Any]

#: Stage II queries per round of the threshold search of Example 4.
SEARCH_BATCH = 15


# --------------------------------------------------------------------------- shared helpers


def _sizes(values: Sequence[int], *, name: str, owner: str, low: int) -> tuple[int, ...]:
    if isinstance(values, int | np.integer):
        values = (int(values),)
    try:
        out = tuple(values)
    except TypeError:
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be a sequence of ints >= {low}. Got "
            f"{values!r} instead."
        ) from None
    if not out:
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must hold at least one value. Got {values!r}."
        )
    return tuple(check_int(v, name=name, owner=owner, low=low) for v in out)


def _common(owner: str, n_tasks: int, repeats: int, n_future: int, n_boot: int) -> None:
    check_int(n_tasks, name="n_tasks", owner=owner, low=1)
    check_int(repeats, name="repeats", owner=owner, low=1)
    check_int(n_future, name="n_future", owner=owner, low=2)
    check_int(n_boot, name="n_boot", owner=owner, low=1)


def _rng(seed: int, *keys: int) -> np.random.Generator:
    """A generator for one grid point and repeat: the same keys give the same data."""
    seed = check_int(seed, name="seed", owner="the imitation-privacy examples", low=0)
    return np.random.default_rng([seed, *(int(k) for k in keys)])


def _rho(
    module_outs: list[np.ndarray], imitation_outs: list[np.ndarray], n_boot: int, seed: int
) -> dict[str, float]:
    return multi_task_privacy(
        imitation_outs, module_outs, task="regression", n_boot=n_boot, seed=seed
    )


class LinearMapImitation:
    """An imitation whose coefficients are a fixed linear map of the label: ``β_I = C y``.

    ``predict(y, x) = x @ (C @ y)``. The linear-regression imitations of Examples 3, 6 and 7 all
    have this form (Alice's estimator is linear in the label vector).
    """

    def __init__(self, coef_map: np.ndarray, columns: Sequence[int] | None = None) -> None:
        self.coef_map = np.asarray(coef_map, dtype=np.float64)
        self.columns = None if columns is None else list(columns)

    def predict(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.columns is not None:
            x = x[:, self.columns]
        return x @ (self.coef_map @ np.asarray(y, dtype=np.float64))


def _ols_origin() -> LinearRegression:
    return LinearRegression(fit_intercept=False)


# --------------------------------------------------------------------------- Example 3


def span_basis(vectors: np.ndarray, *, rtol: float = 1e-10) -> np.ndarray:
    """An orthonormal basis (n, r) of the column span of ``vectors`` (numerical rank ``r``)."""
    arr = np.asarray(vectors, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    u, s, _ = np.linalg.svd(arr, full_matrices=False)
    if s.size == 0 or s[0] == 0:
        return u[:, :0]
    return u[:, : int(np.sum(s > rtol * s[0]))]


def span_error(found: np.ndarray, x: np.ndarray) -> float:
    """``sin`` of the largest principal angle by which ``span(x)`` sticks out of ``span(found)``.

    0 when ``span(x) ⊆ span(found)`` (so equality when their dimensions agree), 1 when some
    direction of ``span(x)`` is orthogonal to ``span(found)`` (e.g. fewer vectors than ``x`` has
    columns).
    """
    ux = span_basis(x)
    uf = span_basis(found)
    if uf.shape[1] == 0:
        return 1.0
    resid = ux - uf @ (uf.T @ ux)
    return float(min(1.0, np.linalg.norm(resid, 2)))


def recover_span(module: Module, k1: int, *, seed: int = 0) -> np.ndarray:
    """Example 3, first half: span of Bob's columns from ``k1`` random Stage I label queries.

    Sends ``k1`` i.i.d. standard normal label vectors; a least-squares module answers each with
    its projection ``P_{X_B} y``. Returns an orthonormal basis of the span of the answers, which
    equals ``span(X_B)`` (with probability one) as soon as ``k1 >= rank(X_B)``. (The protocol
    sends residuals ``y − P y``; Alice knows ``y``, so she has ``P y`` as well. With ``n − p``
    queries the residuals span the orthogonal complement instead, the paper's other route.)
    """
    k1 = check_int(k1, name="k1", owner="recover_span", low=1)
    rng = _rng(seed)
    answers = [module.query(rng.standard_normal(module.n_rows)).fitted for _ in range(k1)]
    return span_basis(np.column_stack(answers))


def _calibration_coefs(p: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` calibration coefficient vectors: blocks of random orthonormal bases of ``R^p``."""
    blocks, total = [], 0
    while total < k:
        q, r = np.linalg.qr(rng.standard_normal((p, p)))
        blocks.append(q * np.sign(np.diag(r)))  # Haar-distributed orthogonal matrix
        total += p
    return np.hstack(blocks)[:, :k]


def _example3_imitation(
    fitted: np.ndarray,
    labels: np.ndarray,
    betas: np.ndarray,
    covariance: np.ndarray,
    method: str,
) -> LinearMapImitation:
    n = fitted.shape[0]
    x_tilde = fitted  # span(x_tilde) = span(X_B) once k1 >= p; x_tilde = X_B Q with Q unknown
    k = x_tilde.T @ labels / n  # K_t: empirical covariance of x_tilde with the label Y_t
    if method == "covariance":
        # K ≈ Qᵀ Σ B (law of large numbers), so Q̂ᵀ = K (Σ B)⁺ and f_I(x) = xᵀ Q̂ (x̃⁺ y).
        q_hat = (k @ np.linalg.pinv(covariance @ betas)).T
        return LinearMapImitation(q_hat @ np.linalg.pinv(x_tilde))
    # "gram": Qᵀ Ŝ_B = K B⁺ exactly when the calibration labels are noiseless, and
    # x̃ᵀ y / n = Qᵀ Ŝ_B β̂_B, so β̂_B = (K B⁺)⁺ x̃ᵀ y / n. No covariance needed.
    m = k @ np.linalg.pinv(betas)
    return LinearMapImitation(np.linalg.pinv(m) @ x_tilde.T / n)


def example3(
    ns: Sequence[int] = (100, 1000, 10000),
    *,
    p: int = 5,
    k1s: Sequence[int] | None = None,
    covariance: np.ndarray | None = None,
    calibration_noise: float = 1.0,
    task_noise: float = 1.0,
    method: Literal["covariance", "gram"] = "covariance",
    n_tasks: int = 10,
    repeats: int = 3,
    n_future: int = 2000,
    n_boot: int = 200,
    seed: int = 0,
) -> list[Row]:
    """Example 3: Bob uses linear regression; Alice learns ``span(X_B)`` and then ``X_B`` itself.

    Set-up. Bob holds ``X_B`` (``n`` rows, ``p`` columns, i.i.d. ``N(0, Σ)``; ``Σ = I`` unless
    ``covariance`` is given) and answers with least squares through the origin (the paper's
    projection ``y ↦ P_{X_B} y``). Alice knows the model class and ``Σ``.

    Alice's ``k1`` Stage I queries are label vectors ``Y_t = X_B β_t + η_t`` whose coefficients
    ``β_t`` she knows and ``η_t ~ N(0, calibration_noise²)``. The paper assumes such labels
    without saying how Alice obtains them; we simulate them (they model labels whose relation to
    Bob's features is public knowledge). The paper only asks the ``β_t`` to be linearly
    independent; as Alice may choose them, we take the best-conditioned choice: consecutive
    blocks of ``p`` orthonormal vectors (a random rotation per block).

    The answers ``X̃ = [P Y_1 … P Y_k1]`` span ``span(X_B)`` once ``k1 ≥ p``, so ``X̃ = X_B Q``.
    With ``K = X̃ᵀ Y / n → Qᵀ Σ B`` Alice solves ``Q̂ᵀ = K (Σ B)⁺`` (least squares for ``k1 > p``,
    minimum norm for ``k1 < p``) and imitates Bob for any label ``y`` by
    ``f_I(x) = xᵀ Q̂ X̃⁺ y``, i.e. as if ``X̃ Q̂⁻¹`` were ``X_B`` (``method="covariance"``, the
    paper's estimator). ``method="gram"`` uses, instead of ``Σ``, the identity
    ``X̃ᵀ Y / n = Qᵀ Ŝ_B B + Qᵀ X_Bᵀ η / n`` with Bob's own Gram matrix ``Ŝ_B = X_BᵀX_B / n``:
    ``β̂_I = (K B⁺)⁺ X̃ᵀ y / n``. It needs no covariance and is exact (``ρ = 0``) when
    ``calibration_noise = 0``.

    Tasks are ``y = X_B β + task_noise · ε`` with ``β ~ N(0, I)``. Rows (one per ``n`` and
    ``k1``; ``k1s`` defaults to ``(p,)``) hold ``rho`` with its bootstrap interval, ``rho_n`` =
    ``rho · n``, and the span recovery of the same Stage I answers: ``span_error`` (sin of the
    largest principal angle, 0 = exact) and ``span_dim`` (rank found).
    """
    owner = "example3"
    p = check_int(p, name="p", owner=owner, low=1)
    ns = _sizes(ns, name="ns", owner=owner, low=p + 1)
    k1s = (p,) if k1s is None else _sizes(k1s, name="k1s", owner=owner, low=1)
    method = check_choice(method, name="method", owner=owner, choices=("covariance", "gram"))
    calibration_noise = check_float(calibration_noise, name="calibration_noise", owner=owner, low=0)
    task_noise = check_float(task_noise, name="task_noise", owner=owner, low=0)
    _common(owner, n_tasks, repeats, n_future, n_boot)
    sigma = np.eye(p) if covariance is None else np.asarray(covariance, dtype=np.float64)
    if sigma.shape != (p, p) or not np.allclose(sigma, sigma.T):
        raise InvalidParameterError(
            f"The 'covariance' parameter of {owner} must be a symmetric ({p}, {p}) matrix. Got "
            f"shape {sigma.shape} instead."
        )
    try:
        chol = np.linalg.cholesky(sigma)
    except np.linalg.LinAlgError:
        raise InvalidParameterError(
            f"The 'covariance' parameter of {owner} must be positive definite."
        ) from None
    x_future = _rng(seed, 0).standard_normal((n_future, p)) @ chol.T
    kmax = max(k1s)
    rows: list[Row] = []
    for n in ns:
        per_k: dict[int, dict[str, list]] = {
            k: {"m": [], "i": [], "err": [], "dim": []} for k in k1s
        }
        for r in range(repeats):
            rng = _rng(seed, 3, n, r)
            x_b = rng.standard_normal((n, p)) @ chol.T
            bob = Module(x_b, _ols_origin())
            betas = _calibration_coefs(p, kmax, rng)
            labels = x_b @ betas + calibration_noise * rng.standard_normal((n, kmax))
            fitted = np.column_stack([bob.query(labels[:, t]).fitted for t in range(kmax)])
            tasks = [
                x_b @ rng.standard_normal(p) + task_noise * rng.standard_normal(n)
                for _ in range(n_tasks)
            ]
            module_outs = [bob.predict(y, x_future) for y in tasks]
            for k in k1s:
                imit = _example3_imitation(
                    fitted[:, :k], labels[:, :k], betas[:, :k], sigma, method
                )
                per_k[k]["m"] += module_outs
                per_k[k]["i"] += [imit.predict(y, x_future) for y in tasks]
                per_k[k]["err"].append(span_error(fitted[:, :k], x_b))
                per_k[k]["dim"].append(span_basis(fitted[:, :k]).shape[1])
        for k in k1s:
            est = _rho(per_k[k]["m"], per_k[k]["i"], n_boot, seed)
            rows.append(
                {
                    "example": 3,
                    "imitation": method,
                    "n": n,
                    "p": p,
                    "k1": k,
                    **est,
                    "rho_n": est["rho"] * n,
                    "span_error": float(max(per_k[k]["err"])),
                    "span_dim": int(min(per_k[k]["dim"])),
                }
            )
            logger.info("example 3: n=%d k1=%d rho=%.3g", n, k, est["rho"])
    return rows


# --------------------------------------------------------------------------- Example 4


def tree_order_from_basis(answers: np.ndarray, *, atol: float = 1e-12) -> np.ndarray:
    """Example 4: the ordering of Bob's 1-D data from his stump's answers to basis labels.

    ``answers[i]`` is the fitted-value vector a two-leaf regression tree returns for the label
    ``e_i``. Its greedy split isolates the shortest prefix or suffix (in sorted order) holding
    ``x_i``, so the support of ``answers[i]`` is that prefix or suffix. The smallest support lies
    at one end (normally the extreme point alone); the points whose support holds it form the
    prefix chain, ordered by support size, and the others the suffix chain, in reverse. Returns
    the row indices sorted by Bob's values, up to reversal (which Stage I answers cannot tell
    apart).

    Values too close for the tree to split apart (scikit-learn does not split between values
    closer than 1e-7) get identical answers and come out next to each other in an arbitrary
    order. Raises :class:`InputValidationError` when some support is neither a prefix nor a
    suffix of the order found (the answers are not those of a two-leaf tree).
    """
    a = np.asarray(answers, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 2:
        raise InputValidationError(
            f"answers must be an (n, n) array, row i answering the basis label e_i, n >= 2. Got "
            f"shape {a.shape} instead."
        )
    n = a.shape[0]
    support = np.abs(a) > atol
    size = support.sum(axis=1)
    bad = (
        "answers are not those of a two-leaf tree: every row's support (its nonzero entries) "
        "must hold its own index and be a prefix or a suffix of one ordering of the rows"
    )
    if not np.all(support[np.arange(n), np.arange(n)]):
        raise InputValidationError(f"{bad}.")
    end = int(np.argmin(size))
    in_prefix = support[:, end]
    prefix = np.flatnonzero(in_prefix)
    suffix = np.flatnonzero(~in_prefix)
    order = np.concatenate(
        [
            prefix[np.argsort(size[prefix], kind="stable")],
            suffix[np.argsort(-size[suffix], kind="stable")],
        ]
    )
    pos = np.empty(n, dtype=int)
    pos[order] = np.arange(n)
    where = np.where(support, pos[None, :], -1)
    first = np.where(support, pos[None, :], n).min(axis=1)
    last = where.max(axis=1)
    contiguous = last - first + 1 == size
    if not np.all(contiguous & ((first == 0) | (last == n - 1))):
        raise InputValidationError(f"{bad}.")
    return order


def _basis(n: int, i: int) -> np.ndarray:
    e = np.zeros(n)
    e[i] = 1.0
    return e


def _search_threshold(answer: Any, lo: float, hi: float, k2: int) -> tuple[float, float, float]:
    """Locate the split of a stump's Stage II predictor on ``[lo, hi]`` with ``k2`` queries.

    Returns ``(threshold estimate, value at lo, value at hi)``. Two queries read the two leaf
    values at the ends; every further round sends ``SEARCH_BATCH`` equally spaced points and
    keeps the cell where the value changes.
    """
    v_lo, v_hi = answer.predict(np.array([[lo], [hi]]))
    a, b = lo, hi
    for _ in range(max(0, (k2 - 2) // SEARCH_BATCH)):
        grid = np.linspace(a, b, SEARCH_BATCH + 2)[1:-1]
        vals = answer.predict(grid[:, None])
        right = np.flatnonzero(vals == v_hi)
        j = int(right[0]) if right.size else SEARCH_BATCH
        a, b = (grid[j - 1] if j > 0 else a), (grid[j] if j < SEARCH_BATCH else b)
    return 0.5 * (a + b), float(v_lo), float(v_hi)


def _reconstruct_from_thresholds(
    thresholds: np.ndarray, left_side: np.ndarray, lo: float, hi: float
) -> np.ndarray:
    """Bob's values from the splits ``m_r = (x_(r) + x_(r+1)) / 2`` that Stage II located.

    A point left of its split ``t`` lies between ``t`` and the next split below it; a point right
    of it, between ``t`` and the next split above. The estimate is the middle of that cell (one
    gap beyond the outermost split, within ``[lo, hi]``, for the two extreme points).
    """
    cuts = np.unique(thresholds)
    if cuts.size == 1:
        edges = np.array([lo, cuts[0], hi])
    else:
        edges = np.concatenate(
            [[max(lo, 2 * cuts[0] - cuts[1])], cuts, [min(hi, 2 * cuts[-1] - cuts[-2])]]
        )
    k = np.searchsorted(edges, thresholds)  # edges[k] == threshold
    other = np.where(
        left_side, edges[np.maximum(k - 1, 0)], edges[np.minimum(k + 1, edges.size - 1)]
    )
    return 0.5 * (thresholds + other)


def _sine_tasks(x01: np.ndarray, n_tasks: int, noise: float, rng: np.random.Generator) -> list:
    tasks = []
    for _ in range(n_tasks):
        freq, phase = rng.uniform(0.5, 2.0), rng.uniform(0.0, 1.0)
        tasks.append(
            np.sin(2 * np.pi * (freq * x01 + phase)) + noise * rng.standard_normal(x01.size)
        )
    return tasks


def example4(
    ns: Sequence[int] = (50, 100, 200, 500, 1000),
    *,
    k2: int = 92,
    domain: tuple[float, float] = (0.0, 1.0),
    task_noise: float = 0.3,
    n_tasks: int = 10,
    repeats: int = 3,
    n_future: int = 2000,
    n_boot: int = 200,
    seed: int = 0,
) -> list[Row]:
    """Example 4: Bob uses a width-2 tree; basis-vector queries reveal the order of his data.

    Set-up (the paper's worked case, ``p = 1``): Bob holds ``n`` values uniform on ``domain`` and
    fits a regression tree with two leaves (``DecisionTreeRegressor(max_depth=1)``: width 2 and
    depth ``p = 1``). Alice sends the ``k1 = n`` basis labels ``e_i`` in Stage I and reads the
    order of Bob's values from the answers (:func:`tree_order_from_basis`). Unlike the paper's
    table, scikit-learn's stump answers ``e_i`` itself (a one-point leaf) for the two extreme
    points, where the paper shows 0; either way the ends stand out and the order follows.

    Two imitations, both "Bob's algorithm on reconstructed data" (Alice then refits the stump to
    any label):

    - ``"stage I + II"``: for each answer Alice also spends ``k2`` Stage II queries locating its
      split (two queries read the leaf values at the ends of ``domain``, which she knows, then
      rounds of 15 equally spaced queries narrow the split down 16-fold each: precision
      ``(high − low)·16^{-(k2−2)/15}``, about 6e-8 of the domain at the default ``k2 = 92``). The
      splits are the midpoints between consecutive sorted values; each value is put in the
      middle of its cell between two splits, which is within ``O(1/n)`` of the truth.
    - ``"stage I + marginal"``: no Stage II search; Alice knows Bob's marginal distribution
      (uniform on ``domain``) and places the ``r``-th value at the ``r/(n+1)`` quantile (the
      orientation is taken from one Stage II query: the paper notes Stage I alone cannot give it).

    Tasks are ``y = sin(2π(ω x + φ)) + task_noise · ε`` on ``x`` rescaled to ``[0, 1]``, with
    ``ω ~ U(0.5, 2)`` and ``φ ~ U(0, 1)``. Rows hold ``rho``, ``order_recovered`` (share of repeats
    whose order came out exactly, up to reversal and to ties closer than scikit-learn's split
    resolution of 1e-7), ``data_error`` (largest ``|x̂ − x|``) and the
    queries spent per repeat.
    """
    owner = "example4"
    ns = _sizes(ns, name="ns", owner=owner, low=3)
    k2 = check_int(k2, name="k2", owner=owner, low=2)
    task_noise = check_float(task_noise, name="task_noise", owner=owner, low=0)
    _common(owner, n_tasks, repeats, n_future, n_boot)
    try:
        lo, hi = (float(v) for v in domain)
    except (TypeError, ValueError):
        raise InvalidParameterError(
            f"The 'domain' parameter of {owner} must be a pair (low, high). Got {domain!r}."
        ) from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise InvalidParameterError(
            f"The 'domain' parameter of {owner} must satisfy low < high. Got {domain!r} instead."
        )
    x_future = _rng(seed, 0).uniform(lo, hi, (n_future, 1))
    rows: list[Row] = []
    for n in ns:
        outs: dict[str, tuple[list, list]] = {
            "stage I + II": ([], []),
            "stage I + marginal": ([], []),
        }
        recovered, errors, stage2 = [], {k: [] for k in outs}, []
        for r in range(repeats):
            rng = _rng(seed, 4, n, r)
            x_b = rng.uniform(lo, hi, (n, 1))
            bob = Module(x_b, "stump", seed=seed)
            answers = [bob.query(_basis(n, i)) for i in range(n)]
            order = tree_order_from_basis(np.stack([a.fitted for a in answers]))
            steps = np.diff(x_b[order, 0])
            # Exact up to reversal, ties below scikit-learn's split resolution (1e-7) aside.
            recovered.append(bool(np.all(steps > -1e-7) or np.all(steps < 1e-7)))
            found = [_search_threshold(a, lo, hi, k2) for a in answers]
            thresholds = np.array([f[0] for f in found])
            left_side = np.array(
                [f[1] == a.fitted[i] for i, (f, a) in enumerate(zip(found, answers, strict=True))]
            )
            stage2.append(sum(a.stage2_queries for a in answers))
            x_hat = _reconstruct_from_thresholds(thresholds, left_side, lo, hi)
            # Marginal route: orientation from one Stage II query on an end point's answer.
            end = order[0]
            if answers[end].predict(np.array([[lo]]))[0] != answers[end].fitted[end]:
                order = order[::-1]
            ranks = np.empty(n)
            ranks[order] = np.arange(1, n + 1)
            x_marg = lo + (hi - lo) * ranks / (n + 1)
            x01 = (x_b[:, 0] - lo) / (hi - lo)
            tasks = _sine_tasks(x01, n_tasks, task_noise, rng)
            module_outs = [bob.predict(y, x_future) for y in tasks]
            for name, xr in (("stage I + II", x_hat), ("stage I + marginal", x_marg)):
                imit = Module(xr[:, None], "stump", seed=seed)
                outs[name][0].extend(module_outs)
                outs[name][1].extend(imit.predict(y, x_future) for y in tasks)
                errors[name].append(float(np.max(np.abs(xr - x_b[:, 0]))))
        for name, (m, i) in outs.items():
            est = _rho(m, i, n_boot, seed)
            rows.append(
                {
                    "example": 4,
                    "imitation": name,
                    "n": n,
                    "k1": n,
                    "k2": k2 if name == "stage I + II" else 1,
                    **est,
                    "rho_n": est["rho"] * n,
                    "order_recovered": float(np.mean(recovered)),
                    "data_error": float(max(errors[name])),
                    "stage2_queries": int(np.mean(stage2)) if name == "stage I + II" else 1,
                }
            )
            logger.info("example 4: n=%d %s rho=%.3g", n, name, est["rho"])
    return rows


# --------------------------------------------------------------------------- Example 6


def laplace_release(
    x: np.ndarray, *, alpha: float, bound: float, seed: int | np.random.Generator = 0
) -> tuple[np.ndarray, float]:
    """The Laplace mechanism of Example 6, applied to every entry of ``x`` (values in ±bound).

    Adds ``Laplace(0, 2·bound/alpha)`` noise, which makes each released entry ``alpha``-locally
    differentially private (sensitivity ``2·bound``; a row of ``p`` entries is ``p·alpha``-LDP by
    composition). Returns the released array and the noise variance ``τ² = 8 bound² / alpha²``.
    """
    alpha = check_float(alpha, name="alpha", owner="laplace_release", low=0.0, low_open=True)
    bound = check_float(bound, name="bound", owner="laplace_release", low=0.0, low_open=True)
    arr = np.asarray(x, dtype=np.float64)
    if np.any(np.abs(arr) > bound):
        raise InputValidationError(
            f"laplace_release: every value must lie in [-{bound:g}, {bound:g}] (the mechanism's "
            "privacy guarantee rests on it); clip the data first."
        )
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    scale = 2.0 * bound / alpha
    return arr + rng.laplace(0.0, scale, arr.shape), 2.0 * scale**2


def example6(
    ns: Sequence[int] = (100, 1000, 10000, 100000),
    *,
    p: int = 3,
    alpha: float = 4.0,
    bound: float = 1.0,
    task_noise: float = 0.5,
    n_tasks: int = 10,
    repeats: int = 3,
    n_future: int = 2000,
    n_boot: int = 200,
    seed: int = 0,
) -> list[Row]:
    """Example 6: Bob releases locally differentially private data; ρ still vanishes.

    Set-up: Bob's ``n × p`` data are uniform on ``[-bound, bound]``; he releases
    ``X̃ = X_B + Laplace`` noise (:func:`laplace_release`: ``alpha``-LDP per entry, noise variance
    ``τ² = 8 bound²/alpha²``) and answers with least squares through the origin on his true data.
    Alice holds ``X̃`` and the label and imitates with the paper's debiased estimator
    ``β̂_a = (X̃ᵀX̃/n − τ² I)⁻¹ X̃ᵀ y / n`` (``"debiased"``; ``τ²`` is public, as a DP mechanism's
    parameters are). ``"naive"`` is least squares on ``X̃``, which is attenuated and does not
    converge to Bob. Predictions are compared at future true feature rows.

    Tasks are ``y = X_B β + task_noise · ε`` with ``β ~ N(0, I)``.
    """
    owner = "example6"
    p = check_int(p, name="p", owner=owner, low=1)
    ns = _sizes(ns, name="ns", owner=owner, low=p + 1)
    alpha = check_float(alpha, name="alpha", owner=owner, low=0.0, low_open=True)
    bound = check_float(bound, name="bound", owner=owner, low=0.0, low_open=True)
    task_noise = check_float(task_noise, name="task_noise", owner=owner, low=0)
    _common(owner, n_tasks, repeats, n_future, n_boot)
    x_future = _rng(seed, 0).uniform(-bound, bound, (n_future, p))
    rows: list[Row] = []
    for n in ns:
        outs: dict[str, tuple[list, list]] = {"debiased": ([], []), "naive": ([], [])}
        for r in range(repeats):
            rng = _rng(seed, 6, n, r)
            x_b = rng.uniform(-bound, bound, (n, p))
            x_rel, tau2 = laplace_release(x_b, alpha=alpha, bound=bound, seed=rng)
            bob = Module(x_b, _ols_origin())
            gram = x_rel.T @ x_rel / n
            debiased = LinearMapImitation(np.linalg.pinv(gram - tau2 * np.eye(p)) @ x_rel.T / n)
            naive = LinearMapImitation(np.linalg.pinv(x_rel))
            tasks = [
                x_b @ rng.standard_normal(p) + task_noise * rng.standard_normal(n)
                for _ in range(n_tasks)
            ]
            module_outs = [bob.predict(y, x_future) for y in tasks]
            for name, imit in (("debiased", debiased), ("naive", naive)):
                outs[name][0].extend(module_outs)
                outs[name][1].extend(imit.predict(y, x_future) for y in tasks)
        for name, (m, i) in outs.items():
            est = _rho(m, i, n_boot, seed)
            rows.append(
                {
                    "example": 6,
                    "imitation": name,
                    "n": n,
                    "p": p,
                    "alpha": alpha,
                    "tau2": 8 * bound**2 / alpha**2,
                    **est,
                    "rho_n": est["rho"] * n,
                }
            )
            logger.info("example 6: n=%d %s rho=%.3g", n, name, est["rho"])
    return rows


# --------------------------------------------------------------------------- Example 7


def example7(
    ns: Sequence[int] = (100, 1000, 10000),
    *,
    p: int = 5,
    released: int = 0,
    correlation: float = 0.0,
    task_noise: float = 0.5,
    n_tasks: int = 10,
    repeats: int = 3,
    n_future: int = 2000,
    n_boot: int = 200,
    seed: int = 0,
) -> list[Row]:
    """Example 7: one released feature breaks differential privacy but barely lowers ρ.

    Set-up: Bob's ``n × p`` features are ``N(0, Σ)`` with unit variances and equal correlation
    ``correlation`` between columns; he answers with least squares through the origin. Column
    ``released`` is published as is (for past and future records), so his data set is not
    ``ε``-differentially private for any ``ε``. Alice's best use of it: least squares of the label
    on the released column (``"released feature"``). ``"nothing released"`` is the trivial
    imitation ``f_I ≡ 0`` (``ρ = 1``). ``rho_theory`` is the population value
    ``mean_t [1 − (Σβ_t)_j² / (Σ_jj β_tᵀΣβ_t)]`` over the tasks drawn (``(p − 1)/p`` on average
    for independent columns).

    Tasks are ``y = X_B β + task_noise · ε`` with ``β ~ N(0, I)``.
    """
    owner = "example7"
    p = check_int(p, name="p", owner=owner, low=2)
    ns = _sizes(ns, name="ns", owner=owner, low=p + 1)
    released = check_int(released, name="released", owner=owner, low=0, high=p - 1)
    correlation = check_float(
        correlation,
        name="correlation",
        owner=owner,
        low=-1.0 / (p - 1),
        high=1.0,
        low_open=True,
        high_open=True,
    )
    task_noise = check_float(task_noise, name="task_noise", owner=owner, low=0)
    _common(owner, n_tasks, repeats, n_future, n_boot)
    sigma = (1 - correlation) * np.eye(p) + correlation * np.ones((p, p))
    chol = np.linalg.cholesky(sigma)
    x_future = _rng(seed, 0).standard_normal((n_future, p)) @ chol.T
    rows: list[Row] = []
    for n in ns:
        outs: dict[str, tuple[list, list]] = {
            "released feature": ([], []),
            "nothing released": ([], []),
        }
        theory = []
        for r in range(repeats):
            rng = _rng(seed, 7, n, r)
            x_b = rng.standard_normal((n, p)) @ chol.T
            bob = Module(x_b, _ols_origin())
            col = x_b[:, [released]]
            imitations: dict[str, Any] = {
                "released feature": LinearMapImitation(np.linalg.pinv(col), columns=[released]),
                "nothing released": ZeroImitation(),
            }
            betas = rng.standard_normal((n_tasks, p))
            tasks = [x_b @ b + task_noise * rng.standard_normal(n) for b in betas]
            for b in betas:
                sb = sigma @ b
                theory.append(1.0 - sb[released] ** 2 / (sigma[released, released] * (b @ sb)))
            module_outs = [bob.predict(y, x_future) for y in tasks]
            for name, imit in imitations.items():
                outs[name][0].extend(module_outs)
                outs[name][1].extend(imit.predict(y, x_future) for y in tasks)
        for name, (m, i) in outs.items():
            est = _rho(m, i, n_boot, seed)
            rows.append(
                {
                    "example": 7,
                    "imitation": name,
                    "n": n,
                    "p": p,
                    "correlation": correlation,
                    **est,
                    "rho_theory": float(np.mean(theory)) if name == "released feature" else 1.0,
                    "dp": "none: a raw column is public",
                }
            )
            logger.info("example 7: n=%d %s rho=%.3g", n, name, est["rho"])
    return rows


#: The measurable examples by number.
EXAMPLES: dict[int, Callable[..., list[Row]]] = {
    3: example3,
    4: example4,
    6: example6,
    7: example7,
}


def run_example(example: int, /, **kwargs: Any) -> list[Row]:
    """Run Example ``example`` (3, 4, 6 or 7) with the keyword arguments of its function."""
    if isinstance(example, bool) or example not in EXAMPLES:
        raise InvalidParameterError(
            "The 'example' parameter of run_example must be one of "
            + ", ".join(str(k) for k in EXAMPLES)
            + f". Got {example!r} instead."
        )
    return EXAMPLES[example](**kwargs)


def own_data_imitation(module: Module) -> Module:
    """Alice holding Bob's data and algorithm: a copy of the module (``ρ = 0``)."""
    return Module(module.x.copy(), module.learner, seed=module.seed)
