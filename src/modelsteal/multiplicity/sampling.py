"""Sample a Rashomon set of surrogates from one fixed set of queried data.

Two samplers, both from ``reference/algorithms.md`` §1.5, and one filter (§1.1, §1.6):

- :func:`sample_retrained` trains ``n_models`` fresh copies of an architecture on the same queries,
  each with its own initialisation seed and its own data-order seed (§1.5 item 1).
- :func:`sample_dropout` perturbs one trained surrogate by multiplying the output of every
  ``nn.Linear`` / ``nn.Conv2d`` by a noise mask (Hsu et al., ICLR 2024; §1.5 item 3). Unlike the
  reference code, which draws a new mask for every batch, each sampled model draws **one** mask,
  seeded, when it is created: one factor per output unit (``nn.Linear``) or per output channel
  (``nn.Conv2d``), shared by every sample in a batch and every spatial position. A sampled model is
  therefore a single deterministic function and can be scored like any other surrogate.
- :func:`rashomon_set` keeps the sampled models whose loss against the target's answers on a
  held-out queried split is within ``epsilon`` of the best (or of a chosen baseline), or, with
  ``criterion="fidelity"``, whose argmax agreement with the target is within ``epsilon`` of it.

:func:`stack_scores` turns a list of models into the ``(m, n, C)`` array that the metrics in
:mod:`modelsteal.multiplicity.metrics` take.

The loss is the (soft) cross-entropy of the model's probabilities against the target's answers, in
nats, and ε is an absolute difference; the paper's own loss and ε are not public (§1.6), so both are
our choice and ε is a parameter. The reference grid for tabular data is ε ∈ [0, 0.04].
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from modelsteal._checks import check_choice, check_float, check_int
from modelsteal.errors import InputValidationError, InvalidParameterError
from modelsteal.models import TrainConfig, build_model, predict_proba, train_model

log = logging.getLogger(__name__)

_LOG_FLOOR = 1e-12
_PERTURBED = (nn.Linear, nn.Conv2d)


def _child_seeds(seed: int, n: int, owner: str) -> list[int]:
    seed = check_int(seed, name="seed", owner=owner, low=0)
    states = np.random.SeedSequence(seed).generate_state(n, dtype=np.uint32)
    return [int(s) for s in states]


def _n_classes(Y: np.ndarray) -> int:
    if Y.ndim == 2:
        return int(Y.shape[1])
    return int(Y.max()) + 1


def sample_retrained(
    X: np.ndarray,
    Y: np.ndarray,
    *,
    arch: str,
    params: dict[str, Any] | None = None,
    config: TrainConfig = TrainConfig(),
    n_models: int,
    seed: int,
    n_classes: int | None = None,
) -> list[nn.Module]:
    """Train ``n_models`` surrogates of architecture ``arch`` on the same queries ``(X, Y)``.

    ``Y`` holds the target's answers: ``(n,)`` labels or ``(n, C)`` probability rows. Model ``j``
    gets an initialisation seed and a data-order seed derived from ``seed`` with
    :class:`numpy.random.SeedSequence`, so the same ``seed`` gives the same models and different
    seeds give different ones. ``params`` are passed to :func:`~modelsteal.models.build_model`.
    """
    owner = "sample_retrained"
    n_models = check_int(n_models, name="n_models", owner=owner, low=1)
    X = np.asarray(X)
    Y = np.asarray(Y)
    if Y.ndim not in (1, 2) or len(Y) != len(X) or len(X) == 0:
        raise InputValidationError(
            f"{owner}: X and Y must have the same, non-zero number of rows and Y must be (n,) "
            f"labels or (n, C) probabilities. Got X {X.shape} and Y {Y.shape}."
        )
    if n_classes is None:
        n_classes = _n_classes(Y)
    seeds = _child_seeds(seed, 2 * n_models, owner)
    models = []
    for j in range(n_models):
        model = build_model(arch, X.shape[1:], n_classes, seed=seeds[2 * j], **dict(params or {}))
        models.append(train_model(model, X, Y, config=config, seed=seeds[2 * j + 1]))
        log.debug("retrained model %d/%d", j + 1, n_models)
    return models


class DropoutSample(nn.Module):
    """``base`` with one fixed noise factor per output unit/channel of every Linear/Conv2d layer.

    The masks are drawn once, at construction, from a generator seeded by ``seed``:

    - ``"bernoulli"``: factor ``b / (1 - p)`` with ``b ~ Bernoulli(1 - p)`` (inverted dropout);
    - ``"gaussian"``: factor ``1 + p * z`` with ``z ~ N(0, 1)``.

    With ``p = 0`` every factor is 1 and the output equals the base model's. The base model is
    shared, not copied, so sampling many models costs only the masks; the hooks that apply the
    masks exist only while :meth:`forward` runs, so the base model itself is left unchanged.
    """

    def __init__(
        self, base: nn.Module, *, p: float, kind: Literal["bernoulli", "gaussian"], seed: int
    ) -> None:
        super().__init__()
        owner = "DropoutSample"
        kind = check_choice(kind, name="kind", owner=owner, choices=("bernoulli", "gaussian"))
        high = 1.0 if kind == "bernoulli" else None
        p = check_float(p, name="p", owner=owner, low=0.0, high=high, high_open=True)
        seed = check_int(seed, name="seed", owner=owner, low=0)
        layers = [(n, m) for n, m in base.named_modules() if isinstance(m, _PERTURBED)]
        if not layers:
            raise InputValidationError(
                f"{owner}: the base model has no nn.Linear or nn.Conv2d layer to perturb."
            )
        self.base = base
        self.p = p
        self.kind = kind
        self.seed = seed
        gen = torch.Generator().manual_seed(seed)
        self._layers = [m for _, m in layers]
        self._masks: list[torch.Tensor] = []
        for _, layer in layers:
            units = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
            if kind == "bernoulli":
                keep = torch.bernoulli(torch.full((units,), 1.0 - p), generator=gen)
                mask = keep / (1.0 - p)
            else:
                mask = 1.0 + p * torch.randn(units, generator=gen)
            self._masks.append(mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        handles = []
        try:
            for layer, mask in zip(self._layers, self._masks, strict=True):
                handles.append(layer.register_forward_hook(_mask_hook(mask)))
            return self.base(x)
        finally:
            for handle in handles:
                handle.remove()


def _mask_hook(mask: torch.Tensor) -> Callable[..., torch.Tensor]:
    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        m = mask.to(dtype=output.dtype, device=output.device)
        if isinstance(module, nn.Conv2d):  # (N, C, H, W): one factor per channel
            return output * m.view(1, -1, 1, 1)
        return output * m  # (..., features): one factor per unit

    return hook


def sample_dropout(
    base_model: nn.Module,
    *,
    p_values: Sequence[float],
    n_per_p: int,
    kind: Literal["bernoulli", "gaussian"] = "bernoulli",
    seed: int,
) -> list[DropoutSample]:
    """Sample ``len(p_values) * n_per_p`` deterministic dropout variants of ``base_model``.

    Models are ordered by ``p`` first, then by draw; each has its own mask seed derived from
    ``seed``. Reference sweeps (§1.5): tabular ``p ∈ linspace(0, 0.2, 21)`` (Bernoulli) or
    ``linspace(0, 0.6, 21)`` (Gaussian). See :class:`DropoutSample` for the masks.
    """
    owner = "sample_dropout"
    n_per_p = check_int(n_per_p, name="n_per_p", owner=owner, low=1)
    ps = [float(p) for p in p_values]
    if not ps:
        raise InvalidParameterError(
            f"The 'p_values' parameter of {owner} must be a non-empty sequence of floats. "
            f"Got {p_values!r} instead."
        )
    seeds = _child_seeds(seed, len(ps) * n_per_p, owner)
    base_model.eval()
    return [
        DropoutSample(base_model, p=p, kind=kind, seed=seeds[i * n_per_p + j])
        for i, p in enumerate(ps)
        for j in range(n_per_p)
    ]


def stack_scores(
    models: Sequence[nn.Module], X: np.ndarray, *, batch_size: int = 1024
) -> np.ndarray:
    """Probabilities of every model on ``X`` as an ``(m, n, C)`` float64 array for the metrics."""
    if len(models) == 0:
        raise InputValidationError("stack_scores: pass at least one model.")
    return np.stack([predict_proba(m, np.asarray(X), batch_size=batch_size) for m in models])


def _criterion_values(scores: np.ndarray, Y: np.ndarray, criterion: str) -> np.ndarray:
    _, n, c = scores.shape
    Y = np.asarray(Y)
    if len(Y) != n or Y.ndim not in (1, 2) or (Y.ndim == 2 and Y.shape[1] != c):
        raise InputValidationError(
            f"rashomon_set: Y_val must be ({n},) labels or ({n}, {c}) probabilities, matching "
            f"X_val and the models' {c} classes. Got shape {Y.shape}."
        )
    if Y.ndim == 1:
        targets = np.zeros((n, c))
        targets[np.arange(n), Y.astype(np.int64)] = 1.0
    else:
        targets = Y.astype(np.float64)
    if criterion == "loss":
        return -(targets[None] * np.log(np.clip(scores, _LOG_FLOOR, None))).sum(axis=2).mean(1)
    return (scores.argmax(axis=2) == targets.argmax(axis=1)[None]).mean(axis=1)


def rashomon_set(
    models: Sequence[nn.Module],
    X_val: np.ndarray,
    Y_val: np.ndarray,
    *,
    epsilon: float,
    criterion: Literal["loss", "fidelity"] = "loss",
    baseline: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the models in the ε-Rashomon set, and every model's loss or fidelity.

    ``Y_val`` holds the target's answers on a held-out queried split: ``(n,)`` labels or ``(n, C)``
    probabilities. With ``criterion="loss"`` a model is kept if its cross-entropy against ``Y_val``
    (nats) is at most ``ref + epsilon``; with ``"fidelity"`` if its argmax agreement with ``Y_val``
    is at least ``ref - epsilon``. ``ref`` is the best model's value, or model ``baseline``'s
    (e.g. the base surrogate ``h0``, as in Marx et al.). Returns ``(kept, values)``: sorted int
    indices into ``models`` and the ``(m,)`` values of the criterion.
    """
    owner = "rashomon_set"
    criterion = check_choice(criterion, name="criterion", owner=owner, choices=("loss", "fidelity"))
    epsilon = check_float(epsilon, name="epsilon", owner=owner, low=0.0)
    if baseline is not None:
        baseline = check_int(baseline, name="baseline", owner=owner, low=0, high=len(models) - 1)
    values = _criterion_values(stack_scores(models, X_val), Y_val, criterion)
    tol = 1e-12
    if criterion == "loss":
        ref = values.min() if baseline is None else values[baseline]
        kept = np.flatnonzero(values <= ref + epsilon + tol)
    else:
        ref = values.max() if baseline is None else values[baseline]
        kept = np.flatnonzero(values >= ref - epsilon - tol)
    log.info(
        "Rashomon set (%s, eps=%g): %d of %d models", criterion, epsilon, len(kept), len(values)
    )
    return kept, values
