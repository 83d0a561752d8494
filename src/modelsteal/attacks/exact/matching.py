"""Gradient-matching substitutes: train on predictions and input-gradient explanations together.

The practical heuristic of Milli, Schmidt, Dragan, Hardt ("Model Reconstruction from Model
Explanations", FAT* 2019, https://arxiv.org/abs/1807.05185) for deep targets: for every attacker
input ``x`` ask the prediction ``f(x)`` and the explanation ``∇_x f_ŷ(x)`` (the gradient of the
predicted class's logit, ``ŷ = argmax f(x)``), and train the substitute ``f̂`` with

    L = CE(f̂(x), f(x)) + λ · ‖∇_x f̂_ŷ(x) − ∇_x f_ŷ(x)‖² / s²

by double back-propagation (``create_graph=True``). ``s²`` is the mean squared norm of the target's
explanations, so the gradient term is a relative error and ``λ`` is comparable across targets.

Each input costs two rows of the budget: one prediction and one explanation. The paper's λ, query
distribution and normalisation are not known to us (reference §3): the normalisation is ours.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import numpy as np

from modelsteal._checks import check_float, check_int
from modelsteal.attacks.exact._base import wrap_budget
from modelsteal.errors import InvalidParameterError
from modelsteal.models import TrainConfig, build_model, soft_cross_entropy
from modelsteal.targets import Target, output_kind

log = logging.getLogger(__name__)


class MatchedSubstitute(NamedTuple):
    """A substitute trained by :func:`train_gradient_matching` and the rows it cost."""

    substitute: Any  # torch.nn.Module, in eval mode
    queries: int


def train_gradient_matching(
    target: Target,
    x: np.ndarray,
    *,
    arch: str = "cnn",
    arch_params: dict[str, Any] | None = None,
    lam: float = 10.0,
    config: TrainConfig = TrainConfig(),
    steps: int | None = None,
    seed: int,
    budget: int | None = None,
) -> MatchedSubstitute:
    """Query predictions and explanations for ``x`` and train a substitute to match both.

    ``arch`` / ``arch_params``: a registered architecture (``modelsteal.models.MODELS``).
    ``lam``: the weight λ of the normalised gradient-matching term (0 trains on predictions only,
    but still pays for the explanations). ``config``: optimiser, learning rate and batch size;
    ``steps`` (optimiser steps) overrides ``config.epochs`` when given. ``budget`` defaults to
    ``2 len(x)`` rows, which is what this costs.
    """
    import torch

    owner = "train_gradient_matching"
    if not hasattr(target, "explain"):
        raise InvalidParameterError(
            f"{owner} needs a target that answers explanations (an explain(x) method); "
            f"{target!r} has none."
        )
    if output_kind(target) == "labels":
        raise InvalidParameterError(
            f"{owner} trains on returned probabilities, but this target answers labels only."
        )
    lam = check_float(lam, name="lam", owner=owner, low=0.0)
    if steps is not None:
        steps = check_int(steps, name="steps", owner=owner, low=1)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 1 or len(x) == 0:
        raise InvalidParameterError(f"{owner} needs at least one input in x. Got {x.shape}.")
    oracle = wrap_budget(target, budget, default=2 * len(x), owner=owner)
    probs = np.asarray(oracle.query(x), dtype=np.float32)
    grads = np.asarray(oracle.explain(x), dtype=np.float32).reshape(x.shape)
    labels = probs.argmax(axis=1)
    scale2 = float(np.mean(np.sum(grads.reshape(len(x), -1) ** 2, axis=1)))
    scale2 = scale2 if scale2 > 0 else 1.0

    model = build_model(
        arch, tuple(target.input_shape), target.n_classes, seed=seed, **(arch_params or {})
    )
    if config.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay
        )
    X_t, P_t = torch.from_numpy(x), torch.from_numpy(probs)
    G_t, Y_t = torch.from_numpy(grads), torch.from_numpy(labels).long()
    n = len(x)
    per_epoch = -(-n // config.batch_size)
    total = steps if steps is not None else config.epochs * per_epoch
    gen = torch.Generator().manual_seed(seed)
    model.train()
    done = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout masks
        while done < total:
            order = torch.randperm(n, generator=gen)
            for start in range(0, n, config.batch_size):
                if done >= total:
                    break
                idx = order[start : start + config.batch_size]
                xb = X_t[idx].clone().requires_grad_(True)
                logits = model(xb)
                loss = soft_cross_entropy(logits, P_t[idx])
                if lam > 0:
                    picked = logits.gather(1, Y_t[idx, None]).sum()
                    (g,) = torch.autograd.grad(picked, xb, create_graph=True)
                    match = ((g - G_t[idx]) ** 2).flatten(1).sum(dim=1).mean() / scale2
                    loss = loss + lam * match
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                done += 1
            log.debug("step %d loss %.4f", done, float(loss.detach()))
    model.eval()
    return MatchedSubstitute(model, oracle.spent)
