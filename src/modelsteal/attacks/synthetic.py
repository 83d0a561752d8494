"""Synthetic query strategies: Jacobian-based augmentation (JBDA), its targeted I-FGSM variant
(JBDA-TR) and uniform noise.

JBDA (Papernot et al., AsiaCCS 2017, https://arxiv.org/abs/1602.02697) starts from a small natural
seed set S₀ drawn from the attacker's pool and grows it in rounds. After each round the substitute
f̂ is retrained on everything queried so far; the next round adds, for each x in S (or for κ random
points of S once reservoir sampling starts),

    x' = clip(x + λ_ρ · sign(∇ₓ f̂_{ŷ(x)}(x))),   λ_ρ = λ · (−1)^⌊ρ/τ⌋,

where ŷ(x) is the label the target gave x and f̂_k the substitute's logit for class k.

JBDA-TR (Juuti et al., PRADA, EuroS&P 2019, https://arxiv.org/abs/1805.02628, "T-RND"; used as
a query method by Tang et al. 2024, ModelGuard) keeps the rounds but replaces the single step by
a targeted iterative FGSM towards a random class t ≠ ŷ(x), inside an ℓ∞ ball of radius ε around
the parent point:

    x ← clip_{B∞(x₀, ε) ∩ domain}(x − α · sign(∇ₓ CE(f̂(x), t)))   (``n_iter`` times).

Round structure (:func:`jbda_rounds`): round 0 queries the s seed rows; round r ≥ 1 augments the
whole set S_{r−1}, so |S| doubles, until ``reservoir_after`` (σ) augmentation rounds are done;
from then on each round augments only κ = ``reservoir_size`` random points of S. The last round
is cut short so that the total never passes the budget. Recipes pass :func:`jbda_rounds` to
:func:`~modelsteal.attacks.extract` as ``rounds`` so that the substitute is retrained exactly at
the end of each round.

Departures and choices, where the papers leave room:

- Gradients are taken of the substitute's logits (the paper writes the Jacobian of the output F),
  for a whole batch at once (one backward pass per step).
- When an evaluation point of the schedule falls inside a round, :func:`extract` retrains the
  substitute there and the rest of the round uses that newer substitute.
- JBDA-TR's ε, α and iteration count are not verified from the PRADA paper (marked [M] in the
  project's reference notes). The defaults (ε = 0.1, α = 0.01, 8 iterations) are those of the
  closest code we can check, the targeted ``jbtop{k}`` augmentation of Orekondy et al.'s
  prediction-poisoning repository. One random target per point is kept for all iterations
  (T-RND); ModelGuard's appendix could be read as drawing a new target each iteration.
- JBDA-TR uses the same round structure as JBDA (doubling, then reservoir sampling); ModelGuard
  only says that the set grows until it reaches the target size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from modelsteal._checks import check_float, check_int
from modelsteal.attacks._base import STRATEGIES, AttackState, Proposal
from modelsteal.errors import InvalidParameterError

__all__ = [
    "JBDA",
    "JBDATR",
    "UniformNoise",
    "jacobian_step",
    "jbda_rounds",
    "random_other_classes",
    "targeted_ifgsm",
]


# --- round structure -------------------------------------------------------------------------


def _round_sizes(seed_size: int, reservoir_after: int, reservoir_size: int):
    """Yield the untruncated size of round 0, 1, 2, … (endless)."""
    total, r = seed_size, 0
    yield seed_size
    while True:
        r += 1
        size = total if r <= reservoir_after else min(reservoir_size, total)
        yield size
        total += size


def jbda_rounds(
    budget: int,
    seed_size: int,
    *,
    reservoir_after: int = 3,
    reservoir_size: int = 400,
) -> list[int]:
    """Query counts at the end of each JBDA round for a budget of ``budget`` queries.

    Round 0 holds the ``seed_size`` seed rows; round r ≥ 1 has |S_{r−1}| rows (the set doubles)
    while r ≤ ``reservoir_after`` (σ), then ``reservoir_size`` (κ) rows. The list is strictly
    increasing and ends at ``budget``: the last round is truncated to what the budget leaves.

    >>> jbda_rounds(2000, 150)
    [150, 300, 600, 1200, 1600, 2000]
    >>> jbda_rounds(1000, 150)
    [150, 300, 600, 1000]
    """
    owner = "jbda_rounds"
    budget = check_int(budget, name="budget", owner=owner, low=1)
    seed_size = check_int(seed_size, name="seed_size", owner=owner, low=1)
    reservoir_after = check_int(reservoir_after, name="reservoir_after", owner=owner, low=0)
    reservoir_size = check_int(reservoir_size, name="reservoir_size", owner=owner, low=1)
    ends, total = [], 0
    for size in _round_sizes(seed_size, reservoir_after, reservoir_size):
        total = min(total + size, budget)
        ends.append(total)
        if total == budget:
            return ends
    raise AssertionError("unreachable")  # pragma: no cover


def _locate(done: int, seed_size: int, reservoir_after: int, reservoir_size: int):
    """(round index, queries before it, untruncated size) of the round holding query ``done``."""
    start = 0
    for r, size in enumerate(_round_sizes(seed_size, reservoir_after, reservoir_size)):
        if done < start + size:
            return r, start, size
        start += size
    raise AssertionError("unreachable")  # pragma: no cover


# --- batched input gradients -----------------------------------------------------------------


class _eval_mode:
    """Put a module in eval mode for a block and restore its previous mode after."""

    def __init__(self, module: nn.Module) -> None:
        self.module, self.was_training = module, module.training

    def __enter__(self) -> nn.Module:
        self.module.eval()
        return self.module

    def __exit__(self, *exc: Any) -> None:
        self.module.train(self.was_training)


def _clip_domain(x: np.ndarray, domain: tuple[float, float] | None) -> np.ndarray:
    return x if domain is None else np.clip(x, domain[0], domain[1])


def jacobian_step(
    model: nn.Module,
    x: np.ndarray,
    labels: np.ndarray,
    *,
    step_size: float,
    domain: tuple[float, float] | None = None,
) -> np.ndarray:
    """JBDA's augmentation: ``clip(x + step_size · sign(∇ₓ f̂_label(x)))`` for a whole batch.

    ``f̂_label`` is the model's logit for each row's label; one backward pass serves the batch
    (the rows do not interact, so the gradient of the summed logits is each row's own gradient).
    ``step_size`` may be negative (JBDA's periodic sign).
    """
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).requires_grad_(True)
    index = torch.from_numpy(np.asarray(labels, dtype=np.int64))[:, None]
    with torch.enable_grad(), _eval_mode(model):
        chosen = model(xt).gather(1, index).sum()
        (grad,) = torch.autograd.grad(chosen, xt)
    out = x + np.float32(step_size) * np.sign(grad.numpy())
    return _clip_domain(out, domain).astype(np.float32, copy=False)


def random_other_classes(
    labels: np.ndarray, n_classes: int, rng: np.random.Generator
) -> np.ndarray:
    """For each label, a class drawn uniformly from the ``n_classes − 1`` other classes."""
    labels = np.asarray(labels, dtype=np.int64)
    draw = rng.integers(0, n_classes - 1, size=len(labels))
    return draw + (draw >= labels)


def targeted_ifgsm(
    model: nn.Module,
    x: np.ndarray,
    targets: np.ndarray,
    *,
    epsilon: float,
    step_size: float,
    n_iter: int,
    domain: tuple[float, float] | None = None,
) -> np.ndarray:
    """Targeted I-FGSM for a batch: ``n_iter`` steps of ``x − step_size · sign(∇ₓ CE(f̂(x), t))``,
    each projected on the ℓ∞ ball of radius ``epsilon`` around ``x`` and on ``domain``.

    One forward and one backward pass per step for the whole batch.
    """
    x0 = np.ascontiguousarray(x, dtype=np.float32)
    low, high = x0 - np.float32(epsilon), x0 + np.float32(epsilon)
    if domain is not None:
        low, high = np.maximum(low, domain[0]), np.minimum(high, domain[1])
    t = torch.from_numpy(np.asarray(targets, dtype=np.int64))
    cur = x0.copy()
    with torch.enable_grad(), _eval_mode(model):
        for _ in range(n_iter):
            xt = torch.from_numpy(cur).requires_grad_(True)
            loss = nn.functional.cross_entropy(model(xt), t, reduction="sum")
            (grad,) = torch.autograd.grad(loss, xt)
            cur = np.clip(cur - np.float32(step_size) * np.sign(grad.numpy()), low, high)
    return cur.astype(np.float32, copy=False)


# --- strategies ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Rounds:
    """The seed-then-augment round logic shared by JBDA and JBDA-TR.

    Everything is read from the :class:`AttackState`. Which κ points a reservoir round augments is
    drawn once, at the round's first call, and kept in ``state.memo`` for that round, so that a
    round split over several calls augments κ distinct points.
    """

    seed_size: int | None = None
    reservoir_after: int = 3
    reservoir_size: int = 400

    def _check_rounds(self, owner: str) -> None:
        if self.seed_size is not None:
            object.__setattr__(
                self, "seed_size", check_int(self.seed_size, name="seed_size", owner=owner, low=1)
            )
        for name in ("reservoir_after", "reservoir_size"):
            low = 0 if name == "reservoir_after" else 1
            object.__setattr__(
                self, name, check_int(getattr(self, name), name=name, owner=owner, low=low)
            )

    def rounds(self, budget: int, seed_size: int | None = None) -> list[int]:
        """:func:`jbda_rounds` with this strategy's parameters."""
        s = self.seed_size if seed_size is None else seed_size
        if s is None:
            raise InvalidParameterError(
                f"{type(self).__name__}.rounds needs the seed-set size: pass seed_size=... "
                "(the strategy was built with seed_size=None, i.e. the whole pool)."
            )
        return jbda_rounds(
            budget, s, reservoir_after=self.reservoir_after, reservoir_size=self.reservoir_size
        )

    def _seed_count(self, state: AttackState) -> int:
        s = len(state.pool) if self.seed_size is None else self.seed_size
        if s == 0 or len(state.pool) < s:
            raise InvalidParameterError(
                f"{self.name} draws its seed set of {s} rows from the attacker pool, which has "
                f"{len(state.pool)} rows. Pass a pool of at least {max(s, 1)} natural inputs "
                "or a smaller seed_size."
            )
        return s

    def _parents(
        self, state: AttackState, r: int, start: int, size: int, rng: np.random.Generator
    ) -> np.ndarray:
        if size >= start:  # plain round: every point of S is augmented, in query order
            return np.arange(start)
        plan = state.memo.setdefault(f"{self.name}:reservoir", {})
        if plan.get("key") != (r, start):
            plan.update(key=(r, start), parents=rng.choice(start, size=size, replace=False))
        return plan["parents"]

    def _augment(
        self, model: nn.Module, x: np.ndarray, labels: np.ndarray, *, rho: int, state, rng
    ) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def propose(self, state: AttackState, n: int, rng: np.random.Generator) -> Proposal:
        n = check_int(n, name="n", owner=f"{self.name}.propose", low=1)
        s = self._seed_count(state)
        done = state.n_queried
        if done < s:  # round 0: natural seed rows from the pool
            k = min(n, s - done)
            unused = state.unused
            if len(unused) < k:
                raise InvalidParameterError(
                    f"{self.name} needs {k} more seed rows but the pool has {len(unused)} unused."
                )
            picked = rng.choice(unused, size=k, replace=False)
            return Proposal(x=state.pool[picked], pool_index=picked)
        if state.substitute is None:
            raise InvalidParameterError(
                f"{self.name} augments with the substitute's gradients, but no substitute has "
                "been trained yet. Run it through a recipe whose rounds= retrain the substitute "
                "after each round (build_recipe('jbda') or 'jbda_tr')."
            )
        r, start, size = _locate(done, s, self.reservoir_after, self.reservoir_size)
        offset = done - start
        k = min(n, size - offset)
        idx = self._parents(state, r, start, size, rng)[offset : offset + k]
        X = state.inputs()[:start][idx]
        labels = state.answers()[:start][idx].argmax(axis=1)
        x = self._augment(state.substitute, X, labels, rho=r - 1, state=state, rng=rng)
        return Proposal(x=x)


@STRATEGIES.register("jbda")
@dataclass(frozen=True, kw_only=True)
class JBDA(_Rounds):
    """Jacobian-based dataset augmentation (Papernot et al. 2017).

    Parameters (paper symbols and MNIST values): ``step_size`` λ = 0.1, ``period`` τ = 3 (the
    step's sign flips every τ rounds), ``reservoir_after`` σ = 3, ``reservoir_size`` κ = 400,
    ``seed_size`` (the paper's 150 MNIST test images; None: the whole pool given to extract).
    Augmentation round r uses ρ = r − 1. Inputs are clipped to the state's domain when it has one.
    """

    step_size: float = 0.1
    period: int = 3
    name: str = "jbda"

    def __post_init__(self) -> None:
        owner = "JBDA"
        self._check_rounds(owner)
        step = check_float(self.step_size, name="step_size", owner=owner, low=0, low_open=True)
        object.__setattr__(self, "step_size", step)
        object.__setattr__(
            self, "period", check_int(self.period, name="period", owner=owner, low=1)
        )

    def step_at(self, rho: int) -> float:
        """λ_ρ = λ · (−1)^⌊ρ/τ⌋."""
        return self.step_size * (-1.0) ** (rho // self.period)

    def _augment(self, model, x, labels, *, rho, state, rng):
        return jacobian_step(model, x, labels, step_size=self.step_at(rho), domain=state.domain)


@STRATEGIES.register("jbda_tr")
@dataclass(frozen=True, kw_only=True)
class JBDATR(_Rounds):
    """JBDA-TR (Juuti et al. 2019, T-RND): targeted random I-FGSM from a small seed set.

    Each augmented point gets a random target class t ≠ ŷ(x), drawn from the ``rng`` passed to
    ``propose``, and ``n_iter`` steps of size ``step_size`` (α) towards it within an ℓ∞ ball of
    radius ``epsilon`` (ε) around the point, clipped to the state's domain. The defaults
    (ε = 0.1, α = 0.01, 8 iterations) are unverified against the paper; see the module notes.
    """

    epsilon: float = 0.1
    step_size: float = 0.01
    n_iter: int = 8
    name: str = "jbda_tr"

    def __post_init__(self) -> None:
        owner = "JBDATR"
        self._check_rounds(owner)
        for name in ("epsilon", "step_size"):
            value = check_float(getattr(self, name), name=name, owner=owner, low=0, low_open=True)
            object.__setattr__(self, name, value)
        object.__setattr__(
            self, "n_iter", check_int(self.n_iter, name="n_iter", owner=owner, low=1)
        )

    def _augment(self, model, x, labels, *, rho, state, rng):
        targets = random_other_classes(labels, state.n_classes, rng)
        return targeted_ifgsm(
            model,
            x,
            targets,
            epsilon=self.epsilon,
            step_size=self.step_size,
            n_iter=self.n_iter,
            domain=state.domain,
        )


@STRATEGIES.register("uniform_noise")
@dataclass(frozen=True, kw_only=True)
class UniformNoise:
    """Inputs drawn uniformly over the input domain: the no-knowledge baseline.

    The box is ``domain`` when given, else the state's domain, else the value range of the pool.
    """

    domain: tuple[float, float] | None = None
    name: str = "uniform_noise"

    def __post_init__(self) -> None:
        if self.domain is not None:
            _check_box(self.domain, "UniformNoise")

    def propose(self, state: AttackState, n: int, rng: np.random.Generator) -> Proposal:
        n = check_int(n, name="n", owner="UniformNoise.propose", low=1)
        box = self.domain or state.domain
        if box is None:
            if len(state.pool) == 0:
                raise InvalidParameterError(
                    "UniformNoise needs a box to draw from: pass domain=(low, high), give "
                    "extract a domain, or give it a pool whose value range can serve."
                )
            box = (float(state.pool.min()), float(state.pool.max()))
        low, high = _check_box(box, "UniformNoise")
        x = rng.uniform(low, high, size=(n, *state.input_shape)).astype(np.float32)
        return Proposal(x=x)


def _check_box(box: Sequence[float], owner: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in box)
    except (TypeError, ValueError):
        low = high = float("nan")
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise InvalidParameterError(
            f"The 'domain' parameter of {owner} must be a pair (low, high) of finite floats with "
            f"low < high. Got {box!r} instead."
        )
    return low, high
