"""Imitation privacy (Xian, Wang, Hong, Ding, Ghanadan): how well a module can be imitated.

Definition 4 of the paper sets

    ρ_{I,M} = E_{tasks y} E_{future x̃} L(f_{I,y}(x̃), f_{M,y}(x̃)),

0 meaning the imitation ``I`` reproduces the module ``M`` exactly and about 1 meaning it does no
better than the trivial imitation ``f_I ≡ 0``. A module is (ε, δ)-private with respect to ``I``
when, over the randomness of the imitation (seeds, query sets), ``P(ρ ≤ ε) ≤ δ``.

Pure functions in the style of :mod:`modelsteal.metrics`: arrays in, numbers out. The expectation
over future data is replaced by the empirical mean ``E_n`` over the rows given (as the paper
allows), with a percentile-bootstrap confidence interval over those rows.

Losses
------
``task="classification"``
    The indicator ``1(f_I(x) ≠ f_M(x))`` on labels; (n, C) score rows are reduced by argmax. The
    mean is ``1 − fidelity``.
``task="regression"``
    The scaled squared error ``|f_I − f_M|² / |f_M|²`` (``|·|`` is the Euclidean norm over the
    output dimensions for (n, d) outputs). The paper writes it per sample in the Remark to
    Definition 4, but its examples need it at the dataset level: the trivial imitation must give
    exactly ``ρ = 1``, and in Examples 3 and 6 (linear regression, Gaussian-like features) the
    per-sample ratio has infinite expectation because ``f_M(x̃)`` comes arbitrarily close to 0,
    so ``ρ = o(1)`` is only meaningful for the ratio of means. The default ``scale="dataset"``
    is therefore ``ρ = Σ_i |f_I(x_i) − f_M(x_i)|² / Σ_i |f_M(x_i)|²``; ``scale="sample"`` gives
    the literal mean of per-sample ratios (and refuses rows with ``f_M(x) = 0``). The bootstrap
    recomputes the ratio of sums in every replicate, so the interval is that of the ratio
    estimator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Literal

import numpy as np

from modelsteal._checks import check_choice, check_float, check_int
from modelsteal.errors import InputValidationError
from modelsteal.metrics import _pair_labels

Task = Literal["classification", "regression"]
Scale = Literal["dataset", "sample"]

_TASKS = ("classification", "regression")
_SCALES = ("dataset", "sample")
# Bootstrap replicates are drawn in chunks so the (chunk, n) count matrix stays near this size.
_CHUNK_CELLS = 2_000_000


def _regression_pair(imitation_out: np.ndarray, module_out: np.ndarray) -> tuple[np.ndarray, ...]:
    f_i = np.asarray(imitation_out, dtype=np.float64)
    f_m = np.asarray(module_out, dtype=np.float64)
    if f_i.shape != f_m.shape or f_m.ndim not in (1, 2):
        raise InputValidationError(
            "imitation_out and module_out must be (n,) or (n, d) regression outputs of the same "
            f"shape. Got {f_i.shape} and {f_m.shape}."
        )
    if f_m.shape[0] == 0:
        raise InputValidationError("module_out is empty; imitation privacy needs at least one row.")
    if not (np.all(np.isfinite(f_i)) and np.all(np.isfinite(f_m))):
        raise InputValidationError("imitation_out and module_out must be finite (no NaN or inf).")
    if f_m.ndim == 1:
        f_i, f_m = f_i[:, None], f_m[:, None]
    return f_i, f_m


def _components(
    imitation_out: np.ndarray, module_out: np.ndarray, task: str, scale: str
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row numerator and denominator with ``ρ = Σ num / Σ den`` over any resample of rows."""
    task = check_choice(task, name="task", owner="imitation privacy", choices=_TASKS)
    scale = check_choice(scale, name="scale", owner="imitation privacy", choices=_SCALES)
    if task == "classification":
        li, lm = _pair_labels(imitation_out, module_out, ("imitation_out", "module_out"))
        num = (li != lm).astype(np.float64)
        return num, np.ones_like(num)
    f_i, f_m = _regression_pair(imitation_out, module_out)
    err = np.sum((f_i - f_m) ** 2, axis=1)
    norm = np.sum(f_m**2, axis=1)
    if scale == "sample":
        if np.any(norm == 0):
            raise InputValidationError(
                f"module_out is 0 on {int(np.sum(norm == 0))} rows, where the per-sample scaled "
                "loss |f_I - f_M|^2 / |f_M|^2 is undefined. Use scale='dataset' instead."
            )
        num = err / norm
        return num, np.ones_like(num)
    if norm.sum() == 0:
        raise InputValidationError(
            "module_out is 0 on every row, so the scaled loss |f_I - f_M|^2 / |f_M|^2 is "
            "undefined. Pass the module's outputs on data where it is not identically 0."
        )
    return err, norm


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den``, NaN where ``den = 0`` (a resample holding only rows with ``f_M = 0``)."""
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def imitation_loss(
    imitation_out: np.ndarray,
    module_out: np.ndarray,
    *,
    task: Task = "classification",
    scale: Scale = "dataset",
) -> np.ndarray:
    """Per-row imitation losses whose mean is ``ρ`` on these rows.

    Classification: the 0-1 loss ``1(argmax f_I ≠ argmax f_M)``. Regression with
    ``scale="dataset"``: ``|f_I − f_M|² / mean_j |f_M(x_j)|²``; with ``scale="sample"``:
    ``|f_I − f_M|² / |f_M|²`` row by row. See the module docstring for why the dataset scale is
    the default.
    """
    num, den = _components(imitation_out, module_out, task, scale)
    return num / den.mean() if task == "regression" and scale == "dataset" else num


def _check_ci(n_boot: int, confidence: float, owner: str) -> tuple[int, float]:
    n_boot = check_int(n_boot, name="n_boot", owner=owner, low=1)
    confidence = check_float(
        confidence, name="confidence", owner=owner, low=0.0, high=1.0, low_open=True, high_open=True
    )
    return n_boot, confidence


def _bootstrap(
    nums: np.ndarray,
    dens: np.ndarray,
    *,
    n_boot: int,
    confidence: float,
    seed: int | np.random.Generator | None,
    resample_tasks: bool,
) -> dict[str, float]:
    """Percentile bootstrap of ``mean_t Σ num_t / Σ den_t`` for (m, n) per-task components.

    Rows (shared inputs) are resampled jointly for all tasks via multinomial counts; tasks are
    resampled too when ``resample_tasks`` (the outer expectation of Definition 4).
    """
    rng = np.random.default_rng(seed)
    m, n = nums.shape
    rho = float(_ratio(nums.sum(axis=1), dens.sum(axis=1)).mean())
    chunk = max(1, _CHUNK_CELLS // max(n, 1))
    uniform_rows, uniform_tasks = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    stats = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        counts = rng.multinomial(n, uniform_rows, size=b).astype(np.float64)  # (b, n)
        per_task = _ratio(nums @ counts.T, dens @ counts.T)  # (m, b)
        if resample_tasks and m > 1:
            weights = rng.multinomial(m, uniform_tasks, size=b) / m  # (b, m)
            stats[start : start + b] = np.sum(weights * per_task.T, axis=1)
        else:
            stats[start : start + b] = per_task.mean(axis=0)
    alpha = (1.0 - confidence) / 2.0
    # Replicates whose ratio is undefined (zero denominator) are left out of the percentiles.
    low, high = np.nanquantile(stats, [alpha, 1.0 - alpha])
    return {"rho": rho, "low": float(low), "high": float(high)}


def imitation_privacy(
    imitation_out: np.ndarray,
    module_out: np.ndarray,
    *,
    task: Task = "classification",
    scale: Scale = "dataset",
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int | np.random.Generator | None = 0,
) -> dict[str, float]:
    """Imitation privacy ``ρ`` for one task, with a percentile-bootstrap confidence interval.

    ``imitation_out`` and ``module_out`` are the two prediction functions evaluated on the same
    future (held-out) rows: (n,) labels or (n, C) scores for classification, (n,) or (n, d)
    outputs for regression. Returns ``{"rho": …, "low": …, "high": …}``; the interval resamples
    rows ``n_boot`` times with a generator seeded by ``seed``.
    """
    n_boot, confidence = _check_ci(n_boot, confidence, "imitation_privacy")
    num, den = _components(imitation_out, module_out, task, scale)
    return _bootstrap(
        num[None, :],
        den[None, :],
        n_boot=n_boot,
        confidence=confidence,
        seed=seed,
        resample_tasks=False,
    )


def multi_task_privacy(
    imitation_outs: Sequence[np.ndarray],
    module_outs: Sequence[np.ndarray],
    *,
    task: Task = "classification",
    scale: Scale = "dataset",
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int | np.random.Generator | None = 0,
    resample_tasks: bool = True,
) -> dict[str, float]:
    """``ρ`` averaged over a set of tasks (label vectors drawn for the same inputs).

    Entry ``t`` of each sequence holds the imitation's and the module's outputs for task ``t``, all
    on the same rows. ``ρ`` is the mean over tasks of the single-task ``ρ_t``. The bootstrap
    resamples rows jointly across tasks and, when ``resample_tasks``, the tasks as well.
    """
    n_boot, confidence = _check_ci(n_boot, confidence, "multi_task_privacy")
    if len(imitation_outs) != len(module_outs) or len(module_outs) == 0:
        raise InputValidationError(
            "imitation_outs and module_outs must hold one entry per task, at least one. Got "
            f"{len(imitation_outs)} and {len(module_outs)} entries."
        )
    parts = [
        _components(fi, fm, task, scale) for fi, fm in zip(imitation_outs, module_outs, strict=True)
    ]
    sizes = {num.shape[0] for num, _ in parts}
    if len(sizes) != 1:
        raise InputValidationError(
            f"Every task must be evaluated on the same rows. Got row counts {sorted(sizes)}."
        )
    nums = np.stack([num for num, _ in parts])
    dens = np.stack([den for _, den in parts])
    return _bootstrap(
        nums,
        dens,
        n_boot=n_boot,
        confidence=confidence,
        seed=seed,
        resample_tasks=bool(resample_tasks),
    )


def _check_rhos(rhos: np.ndarray) -> np.ndarray:
    arr = np.asarray(rhos, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise InputValidationError(
            f"rhos must be a non-empty (r,) array of ρ values, one per imitation. Got shape "
            f"{arr.shape} instead."
        )
    if np.any(np.isnan(arr)):
        raise InputValidationError("rhos contains NaN; drop or recompute those imitations.")
    return arr


def _wilson(k: int, n: int, confidence: float) -> tuple[float, float]:
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def privacy_probability(
    rhos: np.ndarray, epsilon: float, *, confidence: float = 0.95
) -> dict[str, float]:
    """Estimate ``P(ρ ≤ ε)`` from ``ρ`` of repeated randomised imitations, with a Wilson interval.

    ``rhos`` holds one ``ρ`` per independent imitation (seed, query set). Returns
    ``{"p": k / r, "low": …, "high": …, "k": k, "r": r}`` where ``k`` counts ``ρ ≤ ε``.
    """
    arr = _check_rhos(rhos)
    epsilon = check_float(epsilon, name="epsilon", owner="privacy_probability", low=0.0)
    confidence = check_float(
        confidence,
        name="confidence",
        owner="privacy_probability",
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
    )
    k, r = int(np.sum(arr <= epsilon)), int(arr.size)
    low, high = _wilson(k, r, confidence)
    return {"p": k / r, "low": low, "high": high, "k": float(k), "r": float(r)}


def is_private(
    rhos: np.ndarray,
    epsilon: float,
    delta: float,
    *,
    confidence: float | None = None,
) -> bool:
    """Whether the module is (ε, δ)-private: ``P(ρ ≤ ε) ≤ δ`` over the imitations in ``rhos``.

    With ``confidence=None`` the point estimate ``k / r`` is compared with ``δ``. With a
    confidence level the Wilson upper bound must be ``≤ δ``, a conservative verdict that holds at
    that level.
    """
    delta = check_float(delta, name="delta", owner="is_private", low=0.0, high=1.0)
    if confidence is None:
        est = privacy_probability(rhos, epsilon)
        return est["p"] <= delta
    est = privacy_probability(rhos, epsilon, confidence=confidence)
    return est["high"] <= delta
