"""Parameter and array validation with one message template.

Messages follow one form: ``The 'budget' parameter of BudgetedTarget must be an int in [1, inf).
Got 0 instead.``
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from modelsteal.errors import InputValidationError, InvalidParameterError


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    left = "(" if low is None or low_open else "["
    right = ")" if high is None or high_open else "]"
    return f"{left}{lo}, {hi}{right}"


def _fail(name: str, owner: str, expectation: str, value: Any) -> InvalidParameterError:
    return InvalidParameterError(
        f"The {name!r} parameter of {owner} must be {expectation}. Got {value!r} instead."
    )


def check_int(
    value: Any,
    *,
    name: str,
    owner: str,
    low: int | None = None,
    high: int | None = None,
) -> int:
    """Return ``value`` as an int in ``[low, high]`` or raise a teaching error."""
    expectation = f"an int in {_interval(low, high, False, False)}"
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise _fail(name, owner, expectation, value)
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise _fail(name, owner, expectation, value)
    return value


def check_float(
    value: Any,
    *,
    name: str,
    owner: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a finite float in the given interval or raise a teaching error."""
    expectation = f"a float in {_interval(low, high, low_open, high_open)}"
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise _fail(name, owner, expectation, value)
    value = float(value)
    if not math.isfinite(value):
        raise _fail(name, owner, expectation, value)
    if low is not None and (value < low or (low_open and value == low)):
        raise _fail(name, owner, expectation, value)
    if high is not None and (value > high or (high_open and value == high)):
        raise _fail(name, owner, expectation, value)
    return value


def check_choice(value: Any, *, name: str, owner: str, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``."""
    options = list(choices)
    if value not in options:
        raise _fail(name, owner, "one of " + ", ".join(repr(c) for c in options), value)
    return value


def check_shape(shape: Any, *, name: str, owner: str) -> tuple[int, ...]:
    """Return ``shape`` as a tuple of positive ints."""
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        raise _fail(name, owner, "a tuple of positive ints", shape) from None
    if not out or any(s <= 0 for s in out):
        raise _fail(name, owner, "a tuple of positive ints", shape)
    return out


def check_inputs(
    x: Any, *, input_shape: Sequence[int], where: str, dtype: Any = np.float32
) -> np.ndarray:
    """Validate a query batch: shape ``(n, *input_shape)``, numeric, finite; return it as float32.

    A single example with exactly ``input_shape`` is not accepted silently: batches are explicit.
    """
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise InputValidationError(
            f"{where}: inputs could not be read as an array ({exc})."
        ) from None
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise InputValidationError(
            f"{where}: inputs must be numeric. Got an array of dtype {arr.dtype} instead."
        )
    expected = tuple(input_shape)
    if arr.ndim != len(expected) + 1 or tuple(arr.shape[1:]) != expected:
        hint = ""
        if tuple(arr.shape) == expected:
            hint = " A single example must be sent as a batch of one: x[None]."
        elif arr.ndim >= 2 and int(np.prod(arr.shape[1:])) == int(np.prod(expected)):
            hint = f" Reshape with x.reshape(len(x), *{expected})."
        raise InputValidationError(
            f"{where}: expected inputs of shape (n, {', '.join(map(str, expected))}). "
            f"Got shape {tuple(arr.shape)} instead.{hint}"
        )
    if arr.shape[0] == 0:
        raise InputValidationError(f"{where}: the batch is empty; send at least one row.")
    arr = arr.astype(dtype, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1))
        raise InputValidationError(
            f"{where}: inputs must be finite; rows {bad[:10].tolist()} contain NaN or inf."
        )
    return arr


EXACT_SUM = 1e-12  # |Σ y − 1| within which check_probabilities returns a row as it is
# ... and the bound compiled fast paths use to take a row as is without calling it: half of it,
# since they sum the row in another order than numpy's pairwise sum (a few ulps apart)
FAST_EXACT_SUM = EXACT_SUM / 2


def check_probabilities(
    p: Any, *, n: int | None = None, n_classes: int | None = None, where: str, atol: float = 1e-4
) -> np.ndarray:
    """Validate a batch of probability vectors and return it as float64 rows summing exactly to 1.

    Rows must be finite, non-negative (up to ``atol``) and sum to 1 within ``atol``; they are then
    clipped at 0 and renormalised so downstream code sees exact simplex rows.
    """
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 2:
        raise _contract(where, f"responses must be a 2-D (n, C) array; got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise _contract(where, f"{n} rows were asked for but {arr.shape[0]} came back")
    if n_classes is not None and arr.shape[1] != n_classes:
        raise _contract(
            where, f"responses have {arr.shape[1]} columns, expected n_classes={n_classes}"
        )
    if not np.all(np.isfinite(arr)):
        rows = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        raise _contract(where, f"rows {rows[:10].tolist()} contain NaN or inf")
    if arr.size and arr.min() < -atol:
        row = int(np.argmin(arr.min(axis=1)))
        raise _contract(
            where,
            f"row {row} has a negative entry ({arr[row].min():.3g}); probabilities must be >= 0"
            " (if the model outputs logits, declare output='logits')",
        )
    sums = arr.sum(axis=1)
    off = np.abs(sums - 1.0)
    if off.size and off.max() > atol:
        row = int(np.argmax(off))
        raise _contract(
            where,
            f"row {row} sums to {sums[row]:.6g}, not 1 within {atol:g}"
            " (if the model outputs logits, declare output='logits')",
        )
    if arr.size == 0 or (arr.min() >= 0 and off.max() <= EXACT_SUM):
        return arr  # already exact: renormalising again would only add float dust
    arr = np.clip(arr, 0.0, None)
    return arr / arr.sum(axis=1, keepdims=True)


def _contract(where: str, what: str):
    from modelsteal.errors import TargetContractError

    return TargetContractError(
        f"{where} broke the Target contract: {what}. A target must return an (n, C) array of "
        "probability vectors."
    )


def as_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """An explicit generator from a seed (or the generator itself)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        raise InvalidParameterError(
            "A seed is required: pass an int or a numpy Generator (modelsteal never uses global "
            "random state)."
        )
    return np.random.default_rng(seed)
