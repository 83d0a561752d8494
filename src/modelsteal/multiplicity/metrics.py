"""Multiplicity metrics over a Rashomon set: arrays in, numbers out.

Every function takes ``scores``, an ``(m, n, C)`` array holding the probability vectors that ``m``
models of the set give to the same ``n`` samples over ``C`` classes. Decision-based metrics use the
argmax of each row; score-based metrics use the probabilities themselves.

A ``reference`` (or ``labels``) argument is either ``(n,)`` integer labels or ``(n, C)`` score rows,
whose argmax is taken. For stealing, pass the base surrogate's or the target's predictions.

Definitions follow ``reference/algorithms.md`` §1.2–1.4 (Marx et al. 2020 for ambiguity and
discrepancy, Kulynych et al. 2023 for disagreement, Watson-Daniels et al. 2023 for the viable
prediction range, Hsu & Calmon 2022 for Rashomon capacity).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from modelsteal.errors import InputValidationError, InvalidParameterError

_SIMPLEX_ATOL = 1e-6
_LOG_FLOOR = 1e-12


def _check_scores(scores: np.ndarray) -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 3:
        raise InputValidationError(
            "scores must be an (m models, n samples, C classes) array of probabilities. "
            f"Got shape {arr.shape} instead; stack the models' (n, C) outputs with np.stack."
        )
    m, n, c = arr.shape
    if m == 0 or n == 0 or c == 0:
        raise InputValidationError(
            f"scores must hold at least one model, sample and class. Got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise InputValidationError(
            "scores holds NaN or infinite values; pass finite probabilities."
        )
    if np.any(arr < -_SIMPLEX_ATOL):
        raise InputValidationError(
            f"scores must be non-negative probabilities. Got a minimum of {arr.min():.3g}."
        )
    dev = np.abs(arr.sum(axis=2) - 1.0)
    if dev.max() > _SIMPLEX_ATOL:
        k = np.unravel_index(dev.argmax(), dev.shape)
        raise InputValidationError(
            "Every row of scores must sum to 1 (a probability vector on the simplex). Got a row "
            f"summing to {arr[k].sum():.6g} (model {k[0]}, sample {k[1]}); apply a softmax to "
            "logits first."
        )
    return np.clip(arr, 0.0, None)


def _check_reference(reference: np.ndarray, n: int, c: int, name: str) -> np.ndarray:
    arr = np.asarray(reference)
    if arr.ndim == 2:
        if arr.shape != (n, c):
            raise InputValidationError(
                f"{name} as scores must have shape ({n}, {c}) to match scores. Got {arr.shape}."
            )
        return arr.argmax(axis=1)
    if arr.ndim != 1:
        raise InputValidationError(
            f"{name} must be (n,) labels or (n, C) scores. Got shape {arr.shape} instead."
        )
    if arr.shape[0] != n:
        raise InputValidationError(
            f"{name} must have one label per sample: {n} expected, got {arr.shape[0]}."
        )
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise InputValidationError(f"{name} labels must be integers in [0, {c}).")
        arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= c):
        raise InputValidationError(
            f"{name} labels must lie in [0, {c}). Got values in [{arr.min()}, {arr.max()}]."
        )
    return arr.astype(np.int64, copy=False)


def _disagreement_matrix(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    s = _check_scores(scores)
    _, n, c = s.shape
    ref = _check_reference(reference, n, c, "reference")
    return s.argmax(axis=2) != ref[None, :]


def ambiguity(scores: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of samples on which at least one model's decision differs from ``reference``.

    ``α = (1/n) Σ_i max_m 1[argmax h_m(x_i) ≠ b_i]``.
    """
    return float(np.any(_disagreement_matrix(scores, reference), axis=0).mean())


def discrepancy(scores: np.ndarray, reference: np.ndarray) -> float:
    """Largest fraction of samples on which one single model's decisions differ from ``reference``.

    ``δ = max_m (1/n) Σ_i 1[argmax h_m(x_i) ≠ b_i]``.
    """
    return float(_disagreement_matrix(scores, reference).mean(axis=1).max())


def disagreement(scores: np.ndarray, *, reduce: Literal["max", "mean"] = "max") -> np.ndarray:
    """Per-sample disagreement ``4 μ (1 − μ)`` of the models' decisions, in [0, 1].

    For each class ``k``, ``μ_ik`` is the fraction of models whose argmax on sample ``i`` is ``k``
    (a one-vs-rest binarisation) and ``4 μ_ik (1 − μ_ik)`` its normalised Bernoulli variance.
    ``reduce="max"`` (default) keeps the most contested class, so the value does not shrink as
    classes are added and is 1 whenever some class wins exactly half the votes; ``reduce="mean"``
    averages over all ``C`` classes. For ``C = 2`` both classes give the same value, so either
    choice equals the binary definition ``4 μ (1 − μ)`` with ``μ`` the share voting for class 1.
    """
    s = _check_scores(scores)
    if reduce not in ("max", "mean"):
        raise InvalidParameterError(
            f"The 'reduce' parameter of disagreement must be 'max' or 'mean'. Got {reduce!r}."
        )
    c = s.shape[2]
    decisions = s.argmax(axis=2)  # (m, n)
    mu = (decisions[:, :, None] == np.arange(c)[None, None, :]).mean(axis=0)  # (n, C)
    per_class = 4.0 * mu * (1.0 - mu)
    return per_class.max(axis=1) if reduce == "max" else per_class.mean(axis=1)


def _label_scores(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    s = _check_scores(scores)
    _, n, c = s.shape
    y = _check_reference(labels, n, c, "labels")
    return s[:, np.arange(n), y]  # (m, n)


def viable_prediction_range(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-sample range ``max_m s_mi − min_m s_mi`` of the scores given to class ``labels_i``."""
    s = _label_scores(scores, labels)
    return s.max(axis=0) - s.min(axis=0)


def score_variance(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-sample variance over models (``ddof=0``) of the score given to class ``labels_i``."""
    return _label_scores(scores, labels).var(axis=0)


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    top = a.max(axis=axis, keepdims=True)
    return np.squeeze(top, axis=axis) + np.log(np.exp(a - top).sum(axis=axis))


def capacity_bits(scores: np.ndarray, *, tol: float = 1e-12, max_iter: int = 1000) -> np.ndarray:
    """Per-sample capacity (in bits) of the channel model index → label, by Blahut–Arimoto.

    For sample ``i`` the channel's rows are ``h_m(x_i)``. All ``n`` channels are iterated together
    in log space (probabilities clipped at 1e-12 before the log); a sample stops updating once the
    squared change of its input weights divided by ``m`` falls below ``tol``, or after ``max_iter``
    rounds. The returned value is the mutual information of the final weights (a lower bound on
    the capacity), clipped to ``[0, log2 min(m, C)]``. Convergence is linear; channels whose rows
    are nearly identical converge slowly and may sit ~1e-4 below the capacity after 1000 rounds,
    so raise ``max_iter`` when that precision matters. Cost: O(max_iter · n · m · C).
    """
    s = _check_scores(scores)
    if not (isinstance(max_iter, int | np.integer) and max_iter >= 1):
        raise InvalidParameterError(
            "The 'max_iter' parameter of capacity_bits must be an int in [1, inf). "
            f"Got {max_iter!r}."
        )
    if not (np.isfinite(tol) and tol > 0):
        raise InvalidParameterError(
            f"The 'tol' parameter of capacity_bits must be a float in (0, inf). Got {tol!r}."
        )
    m, n, c = s.shape
    p = np.transpose(s, (1, 0, 2))  # (n, m, C): one channel per sample
    log_p = np.log(np.clip(p, _LOG_FLOOR, None))
    # Σ_y P log P per row; with it D(P_m ‖ out) = neg_ent − Σ_y P_my log out_y. The update
    # w_m ← w_m · exp D(P_m ‖ out), normalised, is Blahut–Arimoto's r_m = exp Σ_y P log q_{m|y}.
    neg_ent = np.where(p > 0, p * log_p, 0.0).sum(axis=2)  # (n, m)
    log_w = np.full((n, m), -np.log(m))
    active = np.ones(n, dtype=bool)
    idx = np.arange(n)
    for _ in range(max_iter):
        lw, pp = log_w[idx], p[idx]
        w = np.exp(lw)
        log_out = np.log(np.clip(np.einsum("nm,nmc->nc", w, pp), _LOG_FLOOR, None))
        div = neg_ent[idx] - np.einsum("nmc,nc->nm", pp, log_out)
        new = lw + div
        new -= _logsumexp(new, axis=1)[:, None]
        change = ((np.exp(new) - w) ** 2).sum(axis=1) / m
        log_w[idx] = new
        active[idx[change < tol]] = False
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
    w = np.exp(log_w)
    log_out = np.log(np.clip(np.einsum("nm,nmc->nc", w, p), _LOG_FLOOR, None))
    div = neg_ent - np.einsum("nmc,nc->nm", p, log_out)
    bits = (w * div).sum(axis=1) / np.log(2.0)
    return np.clip(bits, 0.0, np.log2(min(m, c)))


def rashomon_capacity(
    scores: np.ndarray, *, tol: float = 1e-12, max_iter: int = 1000
) -> np.ndarray:
    """Per-sample Rashomon capacity ``RC = 2^C`` (Hsu & Calmon 2022), with ``1 ≤ RC ≤ min(m, C)``.

    ``C`` is :func:`capacity_bits`; RC is 1 exactly when all models give the sample the same score
    vector and ``min(m, C)`` when as many models put all mass on distinct classes.
    """
    return np.exp2(capacity_bits(scores, tol=tol, max_iter=max_iter))


def summarise(values: np.ndarray) -> dict[str, float]:
    """Summary of per-sample values: ``mean``, quantiles ``q50``/``q90``/``q99`` and ``max``."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise InputValidationError("values is empty; summarise needs at least one value.")
    if not np.all(np.isfinite(v)):
        raise InputValidationError("values holds NaN or infinite entries; pass finite values.")
    q50, q90, q99 = np.quantile(v, [0.5, 0.9, 0.99])
    return {
        "mean": float(v.mean()),
        "q50": float(q50),
        "q90": float(q90),
        "q99": float(q99),
        "max": float(v.max()),
    }
