"""One entry point that runs any recipe against any target under a budget."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from modelsteal._checks import as_rng, check_inputs, check_int
from modelsteal.attacks._base import AttackState, QueryStrategy, Recovery
from modelsteal.attacks.training import SubstituteTrainer
from modelsteal.errors import InputValidationError, InvalidParameterError
from modelsteal.metrics import accuracy, fidelity
from modelsteal.models import predict_proba
from modelsteal.targets import Target, TorchTarget, budgeted

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: phase is ``"query"`` (rows spent of the budget) or
``"train"`` (checkpoints finished of all)."""


@dataclass(frozen=True)
class Recipe:
    """A named attack: query strategy + recovery + substitute trainer."""

    name: str
    strategy: QueryStrategy
    recovery: Recovery
    trainer: SubstituteTrainer
    paper: str = ""
    query_batch_size: int = 256
    rounds: Callable[[int], Sequence[int]] | None = None
    """Query counts (for a given budget) after which the substitute is retrained so that the
    strategy can use it (JBDA's augmentation rounds, ActiveThief's selection rounds). None: the
    substitute is trained only at the evaluation schedule's points."""


@dataclass
class ExtractionResult:
    """What :func:`extract` returns: the copy, what it cost, and how it improved."""

    recipe: str
    substitute: nn.Module
    queries: int
    budget: int
    history: list[dict[str, float]]
    queried_x: np.ndarray = field(repr=False)
    responses: np.ndarray = field(repr=False)
    seed: int = 0

    def as_target(self) -> TorchTarget:
        """The substitute as a target (e.g. to attack it in turn, or to measure it)."""
        shape = tuple(self.queried_x.shape[1:])
        return TorchTarget(self.substitute, input_shape=shape, n_classes=self.responses.shape[1])


def _schedule(schedule: Sequence[int] | None, budget: int) -> list[int]:
    if schedule is None:
        return [budget]
    points = sorted({check_int(s, name="schedule", owner="extract", low=1) for s in schedule})
    if points[-1] > budget:
        raise InvalidParameterError(
            f"The 'schedule' parameter of extract must not go past the budget ({budget}). "
            f"Got {points} instead."
        )
    return points


def extract(
    target: Target,
    recipe: Recipe,
    *,
    pool: np.ndarray,
    budget: int,
    seed: int,
    schedule: Sequence[int] | None = None,
    eval_x: np.ndarray | None = None,
    eval_y: np.ndarray | None = None,
    eval_target: np.ndarray | None = None,
    domain: tuple[float, float] | None = None,
    progress: Progress | None = None,
) -> ExtractionResult:
    """Steal ``target`` with ``recipe``, spending at most ``budget`` queries.

    Every query goes through a :class:`~modelsteal.targets.BudgetedTarget`, so no strategy can
    exceed the budget. At each point of ``schedule`` (default: only the full budget), and after
    each of the recipe's ``rounds``, the substitute is retrained from scratch on everything queried
    so far; at the schedule's points it is also measured, when ``eval_x`` is given:
    ``accuracy`` against ``eval_y`` and ``fidelity`` against the target's labels on ``eval_x``
    (``eval_target``; when omitted they are asked of ``target`` directly, outside the attacker's
    budget, as an evaluator with access to the target would).
    """
    budget = check_int(budget, name="budget", owner="extract", low=1)
    points = _schedule(schedule, budget)
    pool = check_inputs(pool, input_shape=target.input_shape, where="extract(pool=...)")
    rng = as_rng(seed)
    if eval_x is not None:
        eval_x = check_inputs(eval_x, input_shape=target.input_shape, where="extract(eval_x=...)")
        if eval_target is None:
            eval_target = target.query(eval_x)
        if eval_y is not None and len(eval_y) != len(eval_x):
            raise InputValidationError(
                f"extract: eval_x has {len(eval_x)} rows but eval_y has {len(eval_y)}."
            )
    state = AttackState(
        pool=pool,
        n_classes=target.n_classes,
        input_shape=tuple(target.input_shape),
        domain=domain,
    )
    limit = getattr(recipe.strategy, "max_queries", None)
    if limit is not None and budget > limit(state):
        raise InvalidParameterError(
            f"The attacker pool has {limit(state)} rows, fewer than the budget of {budget} "
            f"queries that {recipe.name} would ask (each pool row is asked at most once). "
            "Lower the budget or give a larger pool."
        )
    evaluate_at = set(points)
    if recipe.rounds is not None:
        extra = [int(r) for r in recipe.rounds(budget) if 0 < int(r) < budget]
        points = sorted(evaluate_at | set(extra))
    oracle = budgeted(target, budget)
    history: list[dict[str, float]] = []
    for step, point in enumerate(points):
        while oracle.spent < point:
            n = min(point - oracle.spent, recipe.query_batch_size)
            proposal = recipe.strategy.propose(state, n, rng)
            answers = oracle.query(proposal.x)
            if proposal.pool_index is not None:
                state.used[proposal.pool_index] = True
            state.queried_x.append(np.asarray(proposal.x, dtype=np.float32))
            state.responses.append(answers)
            if progress:
                progress("query", oracle.spent, budget)
        started = time.perf_counter()
        X, Y = state.inputs(), recipe.recovery(state.answers())
        state.substitute = recipe.trainer.fit(
            X, Y, input_shape=state.input_shape, n_classes=state.n_classes, seed=seed
        )
        if progress:
            progress("train", step + 1, len(points))
        if point not in evaluate_at:
            continue
        record: dict[str, float] = {
            "queries": oracle.spent,
            "train_seconds": time.perf_counter() - started,
        }
        if eval_x is not None:
            sub = predict_proba(state.substitute, eval_x)
            record["fidelity"] = fidelity(sub, eval_target)
            if eval_y is not None:
                record["accuracy"] = accuracy(eval_y, sub)
        history.append(record)
        log.info("%s at %d queries: %s", recipe.name, oracle.spent, record)
    return ExtractionResult(
        recipe=recipe.name,
        substitute=state.substitute,
        queries=oracle.spent,
        budget=budget,
        history=history,
        queried_x=state.inputs(),
        responses=state.answers(),
        seed=seed,
    )
