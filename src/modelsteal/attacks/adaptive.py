"""Adaptive attack parts without a lookup table: queriers (Smoothing, m-QPI) and the S4L trainer.

- :class:`SmoothingQuerier` (Lukas et al. 2022, as run by Tang et al. 2024): each input is asked as
  ``views`` augmented views and the posteriors are averaged. Every view is a query and is counted
  (the reference scripts count unique images only).
- :class:`RepeatQuerier` (m-QPI, Tang et al. 2024 §4.4, Table 6): each input is asked ``m`` times
  and the answers are averaged. It notes in ``state.memo`` how many inputs got answers that
  differ across the repeats (exact comparison) and which, so the leak of an inconsistent defense
  (non-ordered quantization) can be measured.
- :class:`S4LTrainer` (Jagielski et al. 2020): soft cross-entropy plus ``weight`` × the 4-rotation
  self-supervised loss on the queried images, through a rotation head that shares the
  substitute's body.

The recoveries live in :mod:`modelsteal.attacks.bayes` (partial Bayes) and
:mod:`modelsteal.attacks.ddae` (D-DAE, D-DAE+).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from modelsteal._checks import check_float, check_int
from modelsteal.attacks._base import AttackState
from modelsteal.attacks.training import SubstituteTrainer
from modelsteal.errors import InvalidParameterError
from modelsteal.models import TrainConfig, make_optimizer, soft_cross_entropy

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Queriers
# --------------------------------------------------------------------------------------------


def _shifted(size: int, d: int) -> tuple[slice, slice]:
    """Source and destination slices that move an axis of ``size`` by ``d`` (zero fill)."""
    if d >= 0:
        return slice(0, size - d), slice(d, size)
    return slice(-d, size), slice(0, size + d)


def augment(
    x: np.ndarray,
    rng: np.random.Generator,
    *,
    max_shift: int = 2,
    noise: float = 0.03,
    domain: tuple[float, float] | None = None,
) -> np.ndarray:
    """One random view of each row of ``x``.

    (C, H, W) images: a random translation of up to ``max_shift`` pixels per axis (zero fill)
    plus Gaussian noise. Other inputs: Gaussian noise only. The noise's standard deviation is
    ``noise`` × the width of ``domain`` (or of the batch's value range when no domain is known);
    the result is clipped to ``domain`` when one is given.
    """
    x = np.asarray(x, dtype=np.float32)
    lo, hi = domain if domain is not None else (float(x.min()), float(x.max()))
    out = x.copy()
    if x.ndim == 4 and max_shift > 0:
        n, _, h, w = x.shape
        shifts = rng.integers(-max_shift, max_shift + 1, size=(n, 2))
        out = np.zeros_like(x)
        for i, (dy, dx) in enumerate(shifts):
            src_y, dst_y = _shifted(h, int(dy))
            src_x, dst_x = _shifted(w, int(dx))
            out[i, :, dst_y, dst_x] = x[i, :, src_y, src_x]
    if noise > 0:
        out = out + rng.normal(0.0, noise * max(hi - lo, 1e-12), size=out.shape).astype(np.float32)
    if domain is not None:
        out = np.clip(out, lo, hi)
    return out.astype(np.float32)


@dataclass(frozen=True)
class SmoothingQuerier:
    """Ask ``views`` views of each input and average the answers (cost: ``views`` rows).

    With ``include_original=True`` the first view is the input itself and the others are
    :func:`augment` views; otherwise every view is augmented. All views of a batch go to the
    target in one call.
    """

    views: int = 3
    max_shift: int = 2
    noise: float = 0.03
    include_original: bool = True

    def __post_init__(self) -> None:
        check_int(self.views, name="views", owner="SmoothingQuerier", low=1)
        check_int(self.max_shift, name="max_shift", owner="SmoothingQuerier", low=0)
        check_float(self.noise, name="noise", owner="SmoothingQuerier", low=0)

    @property
    def cost(self) -> int:
        return self.views

    def ask(
        self, oracle: Any, x: np.ndarray, state: AttackState, rng: np.random.Generator
    ) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        views = [
            x
            if (v == 0 and self.include_original)
            else augment(x, rng, max_shift=self.max_shift, noise=self.noise, domain=state.domain)
            for v in range(self.views)
        ]
        answers = np.asarray(oracle.query(np.concatenate(views)), dtype=np.float64)
        return answers.reshape(self.views, len(x), -1).mean(axis=0)


@dataclass(frozen=True)
class RepeatQuerier:
    """m-QPI: ask the same inputs ``m`` times, one full pass after the other, and average.

    Notes in ``state.memo``: ``"mqpi_changed"`` (how many inputs got differing answers across the
    repeats, compared exactly), ``"mqpi_changed_index"`` (their row indices in query order) and
    ``"mqpi_first"`` (the first answer of every input, to compare 1-QPI with m-QPI).
    """

    m: int = 2

    def __post_init__(self) -> None:
        check_int(self.m, name="m", owner="RepeatQuerier", low=1)

    @property
    def cost(self) -> int:
        return self.m

    def ask(
        self, oracle: Any, x: np.ndarray, state: AttackState, rng: np.random.Generator
    ) -> np.ndarray:
        # One call for all m repeats: it is answered (and paid for) whole or refused whole.
        flat = np.asarray(oracle.query(np.concatenate([x] * self.m)), dtype=np.float64)
        answers = flat.reshape(self.m, len(x), -1)
        changed = np.any(answers != answers[:1], axis=(0, 2))
        offset = state.n_queried
        memo = state.memo
        memo["mqpi_changed"] = memo.get("mqpi_changed", 0) + int(changed.sum())
        index = (offset + np.flatnonzero(changed)).tolist()
        memo.setdefault("mqpi_changed_index", []).extend(index)
        memo.setdefault("mqpi_first", []).append(answers[0])
        return answers.mean(axis=0)


# --------------------------------------------------------------------------------------------
# S4L
# --------------------------------------------------------------------------------------------


class RotationModel(nn.Module):
    """A classifier ``head(body(x))`` with a 4-way rotation head on the same body."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        if not isinstance(net, nn.Sequential) or not isinstance(net[-1], nn.Linear):
            raise InvalidParameterError(
                "S4L needs a substitute whose last layer is nn.Linear inside an nn.Sequential "
                f"(the registered 'cnn' and 'mlp' are). Got {type(net).__name__} instead."
            )
        self.body = net[:-1]
        self.head = net[-1]
        self.rotation = nn.Linear(self.head.in_features, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def rotation_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.rotation(self.body(x))


def rotations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 4 rotations (0°, 90°, 180°, 270°) of a batch of (C, H, W) images, and their labels."""
    views = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
    labels = torch.arange(4).repeat_interleave(len(x))
    return views, labels


def train_s4l(
    model: RotationModel,
    X: np.ndarray,
    Y: np.ndarray,
    *,
    config: TrainConfig,
    weight: float,
    seed: int,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> RotationModel:
    """Train ``model`` on soft labels ``Y`` + ``weight`` × rotation cross-entropy, in place.

    ``on_epoch(epoch, classification_loss, rotation_loss)`` gets the epoch's mean losses.
    """
    X_t = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    T = torch.from_numpy(np.ascontiguousarray(Y, dtype=np.float32))
    opt = make_optimizer(model, config)
    gen = torch.Generator().manual_seed(seed)
    n = len(X_t)
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for epoch in range(config.epochs):
            order = torch.randperm(n, generator=gen)
            ce_total = rot_total = 0.0
            for start in range(0, n, config.batch_size):
                idx = order[start : start + config.batch_size]
                xb = X_t[idx]
                opt.zero_grad(set_to_none=True)
                ce = soft_cross_entropy(model(xb), T[idx])
                views, labels = rotations(xb)
                rot = nn.functional.cross_entropy(model.rotation_logits(views), labels)
                (ce + weight * rot).backward()
                opt.step()
                ce_total += float(ce.detach()) * len(idx)
                rot_total += float(rot.detach()) * len(idx)
            if on_epoch is not None:
                on_epoch(epoch, ce_total / n, rot_total / n)
    model.eval()
    return model


def _square_image(input_shape: Sequence[int]) -> bool:
    shape = tuple(input_shape)
    return len(shape) == 3 and shape[1] == shape[2]


@dataclass(frozen=True)
class S4LTrainer(SubstituteTrainer):
    """:class:`SubstituteTrainer` + the S4L rotation loss (``weight``; the reference uses 1.0).

    Square (C, H, W) images only: other inputs have no meaningful 90° rotations, and are trained
    plainly (soft cross-entropy alone), with a log message.
    """

    weight: float = 1.0

    def __post_init__(self) -> None:
        check_float(self.weight, name="weight", owner="S4LTrainer", low=0)

    def fit(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        *,
        input_shape: Sequence[int],
        n_classes: int,
        seed: int,
    ) -> nn.Module:
        if not _square_image(input_shape):
            log.info("S4L: inputs of shape %s are not square images: plain loss.", input_shape)
            return super().fit(X, Y, input_shape=input_shape, n_classes=n_classes, seed=seed)
        net = self.new_model(input_shape, n_classes, seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = RotationModel(net)
        return train_s4l(model, X, Y, config=self.config_for(len(X)), weight=self.weight, seed=seed)


# --------------------------------------------------------------------------------------------
# Recipe helpers
# --------------------------------------------------------------------------------------------


def pool_strategy(
    strategy: str = "random",
    strategy_params: dict[str, Any] | None = None,
    *,
    cost: int = 1,
) -> tuple[Any, Callable[[int], list[int]] | None]:
    """A registered query strategy by name, and its retraining rounds (JBDA-style ones).

    ``cost`` is the querier's rows per input: round points are given in rows, so the rounds of
    a strategy that grows its set by inputs are scaled by it. JBDA-style strategies get the
    JBDA recipes' seed set of 150 rows unless ``strategy_params`` names ``seed_size``.
    """
    from modelsteal.attacks._base import STRATEGIES

    params = dict(strategy_params or {})
    built = STRATEGIES.get(strategy)(**params)
    if not hasattr(built, "reservoir_size"):
        return built, None
    if built.seed_size is None:  # as the JBDA recipes: a 150-row seed set unless told
        built = STRATEGIES.get(strategy)(**{**params, "seed_size": 150})
    from modelsteal.attacks.synthetic import jbda_rounds

    def rounds(budget: int) -> list[int]:
        inputs = jbda_rounds(
            max(budget // cost, 1),
            built.seed_size,
            reservoir_after=built.reservoir_after,
            reservoir_size=built.reservoir_size,
        )
        return [r * cost for r in inputs]

    return built, rounds
