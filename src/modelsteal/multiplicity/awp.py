"""Adversarial weight perturbation (AWP): walk a surrogate's weights to the edge of the set.

A third Rashomon sampler beside re-training and dropout exploration
(:mod:`modelsteal.multiplicity.sampling`), after Hsu & Calmon (NeurIPS 2022), who perturb the
weights of a trained model adversarially while its loss stays within ε of the base model's.
The reference procedure runs one optimisation per (evaluated sample, class) pair, which is far
too slow to sample a set of whole models; :func:`sample_awp` keeps its two ingredients (a walk in
weight space that is adversarial to the fit, stopped at the loss tolerance) but draws one walk per
sampled model.

The procedure, for sampled model ``j`` with its own generator (seeded from ``seed`` with
:class:`numpy.random.SeedSequence`):

1. ``tol = L(θ0) + ε``, where ``L`` is the Rashomon loss of :func:`~modelsteal.multiplicity.
   rashomon_set`: the mean cross-entropy, in nats, of the model's probabilities against the
   target's answers ``Y_val`` on the held-out queried split ``X_val`` (``reference_loss``
   replaces ``L(θ0)`` when given, e.g. the best loss of a pooled set).
2. Direction of each step:

   - ``direction="ascent"`` (default): the gradient of the same cross-entropy, against the
     target's answers, on a seeded random subset ``B_j`` of ``batch_size`` rows of ``X_val``; the
     walk is gradient *ascent* on the fit to ``B_j``, so each model gives up agreement on its own
     rows first and different models flip different decisions.
   - ``direction="random"``: one seeded Gaussian direction, fixed for the whole walk.

   Each parameter tensor ``θ_l`` moves by ``step_size · ‖θ0_l‖`` along its own normalised
   direction ``d_l / ‖d_l‖`` (a per-layer, relative step: layers of different scales move by the
   same fraction of their norm).
3. After every step, ``L`` is evaluated on all of ``X_val``. The walk stops at the first step
   with ``L > tol``; the segment between the last point inside and that first point outside is
   then bisected ``refine`` times and the last point found inside is returned, so the model lies
   within ``step_size · 2^-refine`` (relative) of the set's boundary along its walk. A walk that
   is still inside after ``max_steps`` steps stops there (``left=False``).

Every returned model satisfies ``L ≤ tol``, so it belongs to the ε-Rashomon set of
:func:`~modelsteal.multiplicity.rashomon_set` with ``criterion="loss"`` and the base model as
``baseline``. Cost: ``n_models · (steps + refine)`` evaluations of ``L`` plus one backward pass
on ``batch_size`` rows per ascent step.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from modelsteal._checks import check_choice, check_float, check_int
from modelsteal.errors import InputValidationError
from modelsteal.models import predict_proba, soft_cross_entropy
from modelsteal.multiplicity.sampling import _child_seeds, _criterion_values

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class AWPSample:
    """One model of :func:`sample_awp` and how its walk ended.

    ``loss``: its Rashomon loss on ``X_val`` (≤ ``tol``); ``tol``: ``L(θ0) + ε``; ``steps``:
    whole steps taken inside the set; ``left``: whether the walk reached the set's boundary
    (False when ``max_steps`` ran out first); ``epsilon``: the ε of its walk.
    """

    model: nn.Module
    loss: float
    tol: float
    steps: int
    left: bool
    epsilon: float


def _loss(model: nn.Module, X: np.ndarray, Y: np.ndarray) -> float:
    scores = predict_proba(model, X)[None]
    return float(_criterion_values(scores, Y, "loss")[0])


def _targets(Y: np.ndarray, n_classes: int) -> torch.Tensor:
    if Y.ndim == 1:
        out = np.zeros((len(Y), n_classes), dtype=np.float32)
        out[np.arange(len(Y)), Y.astype(np.int64)] = 1.0
        return torch.from_numpy(out)
    return torch.from_numpy(np.ascontiguousarray(Y, dtype=np.float32))


def _unit(tensors: list[torch.Tensor], scales: list[float]) -> list[torch.Tensor]:
    out = []
    for t, s in zip(tensors, scales, strict=True):
        norm = float(t.norm())
        out.append(t * (s / norm) if norm > 0 else torch.zeros_like(t))
    return out


def sample_awp(
    base_model: nn.Module,
    X_val: np.ndarray,
    Y_val: np.ndarray,
    *,
    epsilon: float,
    n_models: int,
    seed: int,
    direction: Literal["ascent", "random"] = "ascent",
    step_size: float = 0.005,
    max_steps: int = 100,
    batch_size: int = 64,
    refine: int = 8,
    reference_loss: float | None = None,
) -> list[AWPSample]:
    """Sample ``n_models`` weight perturbations of ``base_model`` inside the ε-Rashomon set.

    ``Y_val`` holds the target's answers on the held-out queried split ``X_val``: ``(n,)`` labels
    or ``(n, C)`` probabilities. See the module docstring for the exact procedure. The base model
    is left unchanged; each sample owns a copy of it.
    """
    owner = "sample_awp"
    epsilon = check_float(epsilon, name="epsilon", owner=owner, low=0.0)
    n_models = check_int(n_models, name="n_models", owner=owner, low=1)
    direction = check_choice(direction, name="direction", owner=owner, choices=("ascent", "random"))
    step_size = check_float(step_size, name="step_size", owner=owner, low=0.0, low_open=True)
    max_steps = check_int(max_steps, name="max_steps", owner=owner, low=1)
    batch_size = check_int(batch_size, name="batch_size", owner=owner, low=1)
    refine = check_int(refine, name="refine", owner=owner, low=0)
    X_val = np.asarray(X_val, dtype=np.float32)
    Y_val = np.asarray(Y_val)
    if len(X_val) == 0 or len(Y_val) != len(X_val) or Y_val.ndim not in (1, 2):
        raise InputValidationError(
            f"{owner}: X_val and Y_val must have the same, non-zero number of rows and Y_val must "
            f"be (n,) labels or (n, C) probabilities. Got X_val {X_val.shape}, Y_val "
            f"{Y_val.shape}."
        )
    params0 = [p.detach().clone() for p in base_model.parameters()]
    if not params0:
        raise InputValidationError(f"{owner}: the base model has no parameters to perturb.")
    base_model.eval()
    base_loss = _loss(base_model, X_val, Y_val)
    ref = base_loss if reference_loss is None else float(reference_loss)
    tol = ref + epsilon
    if base_loss > tol + 1e-12:
        raise InputValidationError(
            f"{owner}: the base model's loss {base_loss:.6g} is already above the tolerance "
            f"{tol:.6g} (reference_loss + epsilon); nothing of its neighbourhood is in the set."
        )
    scales = [step_size * float(p.norm()) for p in params0]
    n_classes = int(predict_proba(base_model, X_val[:1]).shape[1])
    targets = _targets(Y_val, n_classes)
    seeds = _child_seeds(seed, n_models, owner)
    samples = []
    for j in range(n_models):
        model = copy.deepcopy(base_model)
        model.eval()
        params = list(model.parameters())
        gen = torch.Generator().manual_seed(seeds[j])
        if direction == "random":
            fixed = _unit([torch.randn(p.shape, generator=gen) for p in params0], scales)
        else:
            rows = torch.randperm(len(X_val), generator=gen)[: min(batch_size, len(X_val))]
            xb = torch.from_numpy(X_val[rows.numpy()])
            tb = targets[rows]
        inside = [p.detach().clone() for p in params]
        loss, steps, left = base_loss, 0, False
        for _ in range(max_steps):
            if direction == "random":
                step = fixed
            else:
                model.zero_grad(set_to_none=True)
                soft_cross_entropy(model(xb), tb).backward()
                grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach() for p in params]
                step = _unit(grads, scales)
            with torch.no_grad():
                for p, d in zip(params, step, strict=True):
                    p.add_(d)
            new_loss = _loss(model, X_val, Y_val)
            if new_loss > tol:
                outside = [p.detach().clone() for p in params]
                loss = _bisect(model, inside, outside, X_val, Y_val, tol, refine, loss)
                left = True
                break
            inside = [p.detach().clone() for p in params]
            loss, steps = new_loss, steps + 1
        else:
            _assign(model, inside)
        model.zero_grad(set_to_none=True)
        samples.append(
            AWPSample(model=model, loss=loss, tol=tol, steps=steps, left=left, epsilon=epsilon)
        )
        log.debug("AWP %d/%d: %d steps, loss %.5f, tol %.5f", j + 1, n_models, steps, loss, tol)
    return samples


def _assign(model: nn.Module, values: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, v in zip(model.parameters(), values, strict=True):
            p.copy_(v)


def _bisect(
    model: nn.Module,
    inside: list[torch.Tensor],
    outside: list[torch.Tensor],
    X: np.ndarray,
    Y: np.ndarray,
    tol: float,
    rounds: int,
    inside_loss: float,
) -> float:
    """Bisect the segment inside → outside; leave ``model`` at the last point inside."""
    lo, hi, best = 0.0, 1.0, inside_loss
    for _ in range(rounds):
        mid = (lo + hi) / 2
        _assign(model, [a + mid * (b - a) for a, b in zip(inside, outside, strict=True)])
        value = _loss(model, X, Y)
        if value <= tol:
            lo, best = mid, value
        else:
            hi = mid
    _assign(model, [a + lo * (b - a) for a, b in zip(inside, outside, strict=True)])
    return best
