"""Stateless defenses: none, top-1, top-k, rounding, reverse sigmoid, random logit noise, and the
Adversarial Robustness Toolbox's postprocessors (high-confidence cutoff, Gaussian noise).

Every one keeps rows on the simplex. Where a peer implementation returns rows that do not sum to
one (top-k and rounding without renormalisation), the departure is stated on the class.
"""

from __future__ import annotations

import numpy as np

from modelsteal._checks import as_rng, check_choice, check_float, check_int
from modelsteal.defenses._base import DEFENSES, Defense
from modelsteal.targets import one_hot


def _logit(y: np.ndarray, eps: float) -> np.ndarray:
    p = np.clip(y, eps, 1.0 - eps)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # stable for any z


@DEFENSES.register("none")
class NoDefense(Defense):
    """Returns the clean rows unchanged (the baseline)."""

    name = "none"
    preserves_argmax = True

    @property
    def max_l1(self) -> float:
        return 0.0

    def _perturb(self, y: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        return y


@DEFENSES.register("top1")
class Top1(Defense):
    """Label-only answers: the one-hot top-1 row (ties go to the lowest class index)."""

    name = "top1"
    preserves_argmax = True

    def _perturb(self, y: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        return one_hot(y.argmax(axis=1), y.shape[1])


@DEFENSES.register("topk")
class TopK(Defense):
    """Keep the ``k`` largest probabilities and zero the rest, then renormalise.

    The prediction-poisoning code does not renormalise; we do, so rows stay on the simplex.
    """

    name = "topk"
    preserves_argmax = True

    def __init__(self, *, k: int = 1) -> None:
        self.k = check_int(k, name="k", owner="TopK", low=1)

    def _perturb(self, y: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        if self.k >= y.shape[1]:
            return y
        order = np.argsort(-y, axis=1, kind="stable")[:, : self.k]
        out = np.zeros_like(y)
        np.put_along_axis(out, order, np.take_along_axis(y, order, axis=1), axis=1)
        return out


@DEFENSES.register("rounding")
class Rounding(Defense):
    """Round each probability to ``decimals`` places, keeping the row sum exactly 1.

    Plain rounding (the peers' version) breaks the simplex; we round to multiples of
    10^-decimals with the largest-remainder rule, so rows still sum to one. The argmax can change
    when two classes round to the same value, so it is not promised.
    """

    name = "rounding"

    def __init__(self, *, decimals: int = 1) -> None:
        self.decimals = check_int(decimals, name="decimals", owner="Rounding", low=0, high=12)

    @property
    def max_l1(self) -> float | None:
        return None  # up to C/2 · 10^-decimals per row, plus the rounding of the remainder

    def _perturb(self, y: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        units = 10**self.decimals
        scaled = y * units
        floor = np.floor(scaled + 1e-9)
        remainder = scaled - floor
        missing = np.rint(units - floor.sum(axis=1)).astype(np.int64)
        order = np.argsort(-remainder, axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(y.shape[1])[None, :], axis=1)
        floor += ranks < missing[:, None]
        return floor / units


@DEFENSES.register("reverse_sigmoid")
class ReverseSigmoid(Defense):
    """Reverse sigmoid (Lee et al. 2019): ŷ ∝ y − β(σ(γ·logit(y)) − ½), clipped at 0.

    Defaults follow the ModelGuard comparison (γ = 0.2, β = 0.2, about ℓ1 1.0 at most on 10
    classes); the prediction-poisoning class defaults β = γ = 1 turn every row uniform.

    ``preserve_argmax=True`` swaps the values of the new and the original top class when the
    perturbation moved the argmax (the ModelGuard comparison keeps top-1 accuracy); the swap keeps
    the row's values and the simplex.
    """

    name = "reverse_sigmoid"

    def __init__(self, *, beta: float = 0.2, gamma: float = 0.2, preserve_argmax: bool = True):
        self.beta = check_float(beta, name="beta", owner="ReverseSigmoid", low=0.0)
        self.gamma = check_float(
            gamma, name="gamma", owner="ReverseSigmoid", low=0.0, low_open=True
        )
        self.preserve_argmax = bool(preserve_argmax)

    @property
    def preserves_argmax(self) -> bool:  # type: ignore[override]
        return self.preserve_argmax

    def _perturb(self, y: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        r = self.beta * (_sigmoid(self.gamma * _logit(y, 1e-7)) - 0.5)
        out = np.clip(y - r, 0.0, None)
        dead = out.sum(axis=1) <= 0
        out[dead] = y[dead]  # a row wiped out entirely keeps its clean answer
        out /= out.sum(axis=1, keepdims=True)
        if self.preserve_argmax:
            _restore_argmax(out, y.argmax(axis=1))
        return out


def _restore_argmax(out: np.ndarray, top: np.ndarray) -> None:
    """Swap each row's largest value into column ``top`` (in place); break remaining ties for
    ``top`` with 1e-9 of extra mass (renormalised by the caller)."""
    rows = np.arange(len(out))
    now = out.argmax(axis=1)
    moved = now != top
    if moved.any():
        r, a, b = rows[moved], now[moved], top[moved]
        out[r, a], out[r, b] = out[r, b], out[r, a].copy()
    tied = out.argmax(axis=1) != top
    out[rows[tied], top[tied]] += 1e-9


@DEFENSES.register("random_noise")
class RandomNoise(Defense):
    """Random noise in logit space, projected onto an ε-ball (prediction-poisoning's baseline).

    z = logit(y); Δz ~ U[0, 2ε/C^{1/p}] (or N(0, 1)); Δz is projected onto the ℓ_p ball of radius
    ε; ŷ ∝ σ(z + Δz). ε bounds the logit noise, not the ℓ1 distortion of ŷ.
    """

    name = "random_noise"

    def __init__(
        self,
        *,
        epsilon: float = 1.0,
        dist: str = "l1",
        strategy: str = "uniform",
        seed: int = 0,
    ) -> None:
        self.epsilon = check_float(
            epsilon, name="epsilon", owner="RandomNoise", low=0.0, low_open=True
        )
        self.dist = check_choice(dist, name="dist", owner="RandomNoise", choices=("l1", "l2"))
        self.strategy = check_choice(
            strategy, name="strategy", owner="RandomNoise", choices=("uniform", "gaussian")
        )
        self.seed = check_int(seed, name="seed", owner="RandomNoise", low=0)
        self._rng = as_rng(self.seed)

    def _perturb(self, y: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        n, c = y.shape
        p = 1 if self.dist == "l1" else 2
        if self.strategy == "uniform":
            dz = self._rng.uniform(0.0, 2 * self.epsilon / c ** (1 / p), size=(n, c))
        else:
            dz = self._rng.normal(size=(n, c))
        dz = project_l1_ball(dz, self.epsilon) if p == 1 else _project_l2_ball(dz, self.epsilon)
        return _sigmoid(_logit(y, 1e-7) + dz)


def project_l1_ball(v: np.ndarray, radius: float) -> np.ndarray:
    """Euclidean projection of each row of ``v`` onto the ℓ1 ball of ``radius`` (Duchi et al.)."""
    inside = np.abs(v).sum(axis=1) <= radius
    if inside.all():
        return v
    u = np.sort(np.abs(v), axis=1)[:, ::-1]
    css = np.cumsum(u, axis=1)
    ks = np.arange(1, v.shape[1] + 1)
    rho = (u * ks > css - radius).sum(axis=1)
    theta = (css[np.arange(len(v)), rho - 1] - radius) / rho
    out = np.sign(v) * np.clip(np.abs(v) - theta[:, None], 0.0, None)
    return np.where(inside[:, None], v, out)


def _project_l2_ball(v: np.ndarray, radius: float) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v * np.minimum(1.0, radius / np.maximum(norms, 1e-300))


@DEFENSES.register("high_confidence")
class HighConfidence(Defense):
    """The Adversarial Robustness Toolbox's HighConfidence: zero probabilities below ``cutoff``.

    We renormalise the kept values (ART does not); a row with nothing above the cutoff keeps its
    top class only.
    """

    name = "high_confidence"
    preserves_argmax = True

    def __init__(self, *, cutoff: float = 0.25) -> None:
        self.cutoff = check_float(cutoff, name="cutoff", owner="HighConfidence", low=0.0, high=1.0)

    def _perturb(self, y: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        out = np.where(y >= self.cutoff, y, 0.0)
        empty = out.sum(axis=1) <= 0
        if empty.any():
            out[empty] = one_hot(y[empty].argmax(axis=1), y.shape[1])
        return out


@DEFENSES.register("gaussian_noise")
class GaussianNoise(Defense):
    """The Adversarial Robustness Toolbox's GaussianNoise: add N(0, scale²), clip, renormalise."""

    name = "gaussian_noise"

    def __init__(self, *, scale: float = 0.2, seed: int = 0) -> None:
        self.scale = check_float(scale, name="scale", owner="GaussianNoise", low=0.0)
        self.seed = check_int(seed, name="seed", owner="GaussianNoise", low=0)
        self._rng = as_rng(self.seed)

    def _perturb(self, y: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        out = np.clip(y + self._rng.normal(0.0, self.scale, size=y.shape), 0.0, None)
        empty = out.sum(axis=1) <= 0
        out[empty] = y[empty]
        return out
