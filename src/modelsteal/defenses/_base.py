"""The Defense contract, its registry, and the wrapper that makes a defended target.

A defense maps a batch of clean probability rows ``y`` (and, where the method needs them, the
inputs ``x``) to the rows returned to the caller. Every defense keeps rows on the simplex; some
also promise to keep the argmax (``preserves_argmax``) and to stay within an ℓ1 distance of the
clean rows (``max_l1``). The contract tests in ``tests/test_defenses.py`` hold every registered
defense to what it promises.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from modelsteal._checks import EXACT_SUM, check_probabilities
from modelsteal._registry import Registry
from modelsteal.errors import InvalidParameterError
from modelsteal.targets import Target
from modelsteal.targets._wrappers import _Wrapper


class Defense(ABC):
    """Base class of response-perturbation defenses.

    Subclasses validate their parameters in ``__init__`` (keyword-only, stored as attributes of
    the same name), implement :meth:`_perturb`, and declare what they promise:

    - ``preserves_argmax``: the top-1 class of every row is unchanged;
    - ``max_l1``: an upper bound on ‖ŷ − y‖₁ per row, or None;
    - ``needs_inputs``: ``perturb`` must be given the queried inputs ``x``;
    - ``stateful``: answers depend on what was asked before (their state lives in a store).
    """

    name: ClassVar[str] = ""
    preserves_argmax: ClassVar[bool] = False
    needs_inputs: ClassVar[bool] = False
    stateful: ClassVar[bool] = False

    @property
    def max_l1(self) -> float | None:
        """The per-row ℓ1 distortion bound this defense guarantees, if any."""
        return None

    def perturb(self, y: np.ndarray, *, x: np.ndarray | None = None) -> np.ndarray:
        """Return the defended rows for clean probability rows ``y`` (shape (n, C))."""
        clean = check_probabilities(y, where=f"{type(self).__name__}.perturb(y)")
        if self.needs_inputs:
            if x is None:
                raise InvalidParameterError(
                    f"{type(self).__name__} needs the queried inputs: call perturb(y, x=x)."
                )
            if len(x) != len(clean):
                raise InvalidParameterError(
                    f"{type(self).__name__}.perturb: y has {len(clean)} rows but x has {len(x)}."
                )
        out = np.asarray(self._perturb(clean, x), dtype=np.float64)
        return _onto_simplex(out)

    @abstractmethod
    def _perturb(self, y: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        """Perturb validated float64 simplex rows ``y``."""

    def params(self) -> dict[str, Any]:
        """The constructor parameters, as plain values (for reports and configs)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def _onto_simplex(out: np.ndarray) -> np.ndarray:
    """Remove float dust (tiny negatives, sums off by ~1e-16) without moving real mass."""
    if np.all(out >= 0) and np.all(np.abs(out.sum(axis=1) - 1.0) <= EXACT_SUM):
        return out  # already a probability row: leave it exactly as the defense made it
    out = np.where(out < 0, 0.0, out)
    sums = out.sum(axis=1, keepdims=True)
    if not np.all(np.isfinite(out)) or np.any(sums <= 0):
        from modelsteal.errors import TargetContractError

        raise TargetContractError("A defense produced a row that is not a probability vector.")
    return out / sums


DEFENSES: Registry[type[Defense]] = Registry("defense")


def build_defense(name: str, **params: Any) -> Defense:
    """Build the defense registered as ``name`` with ``params``."""
    cls = DEFENSES.get(name)
    accepted = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InvalidParameterError(
            f"Defense {name!r} has no parameter {', '.join(map(repr, unknown))}. Its parameters "
            f"are: {', '.join(accepted) if accepted else '(none)'}."
        )
    return cls(**params)


class DefendedTarget(_Wrapper):
    """A target whose answers pass through a defense. The clean answers never leave it."""

    def __init__(self, target: Target, defense: Defense) -> None:
        super().__init__(target)
        if not isinstance(defense, Defense):
            raise InvalidParameterError(
                f"DefendedTarget needs a Defense (see modelsteal.defenses.DEFENSES). "
                f"Got {type(defense).__name__} instead."
            )
        self.defense = defense

    def query(self, x: np.ndarray) -> np.ndarray:
        clean = self.target.query(x)
        return self.defense.perturb(clean, x=np.asarray(x) if self.defense.needs_inputs else None)


def defended(target: Target, defense: Defense | str, **params: Any) -> DefendedTarget:
    """Wrap ``target`` so that every answer passes through ``defense`` (an object or a name)."""
    if isinstance(defense, str):
        defense = build_defense(defense, **params)
    elif params:
        raise InvalidParameterError("Pass parameters only with a defense name, not an object.")
    return DefendedTarget(target, defense)
