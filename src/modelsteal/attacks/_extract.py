"""One entry point that runs any recipe against any target under a budget."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from modelsteal._checks import as_rng, check_inputs, check_int
from modelsteal.attacks._base import AttackState, PlainQuerier, Querier, QueryStrategy, Recovery
from modelsteal.attacks.training import SubstituteTrainer
from modelsteal.errors import InputValidationError, InvalidParameterError, QueryBudgetExceeded
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
    querier: Querier = field(default_factory=PlainQuerier)
    """How each proposed input is asked (once by default; views or repeats cost more rows)."""
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
    info: dict[str, Any] = field(default_factory=dict, repr=False)
    """What the recipe's parts noted during the run (``AttackState.memo``), for analysis."""
    recovered: np.ndarray | None = field(default=None, repr=False)
    """The training targets of the last fit: the recovery's output on ``responses``."""

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
    side_data: Any = None,
    measure_fidelity: bool = True,
    progress: Progress | None = None,
) -> ExtractionResult:
    """Steal ``target`` with ``recipe``, spending at most ``budget`` queries.

    Every query goes through a :class:`~modelsteal.targets.BudgetedTarget`, so no strategy can
    exceed the budget. At each point of ``schedule`` (default: only the full budget), and after
    each of the recipe's ``rounds``, the substitute is retrained from scratch on everything queried
    so far; at the schedule's points it is also measured, when ``eval_x`` is given:
    ``accuracy`` against ``eval_y`` and ``fidelity`` against the target's labels on ``eval_x``
    (``eval_target``; when omitted they are asked of ``target`` directly, outside the attacker's
    budget, as an evaluator with access to the target would; ``measure_fidelity=False`` skips
    that, e.g. for a remote target whose every row is paid for).

    A budget enforced outside (an outer :func:`~modelsteal.targets.budgeted`, a server's quota)
    does not lose the run: when the target refuses a batch with
    :class:`~modelsteal.errors.QueryBudgetExceeded`, the attack asks for at most the rows that
    remain, then trains on everything it got and stops; ``info["stopped"]`` says why. A strategy
    with a stopping rule (ActiveThief's) ends the run the same way by setting
    ``state.memo["stop"]``; its last proposal is then not asked.
    """
    budget = check_int(budget, name="budget", owner="extract", low=1)
    points = _schedule(schedule, budget)
    pool = check_inputs(pool, input_shape=target.input_shape, where="extract(pool=...)")
    rng = as_rng(seed)
    if eval_x is not None:
        eval_x = check_inputs(eval_x, input_shape=target.input_shape, where="extract(eval_x=...)")
        if eval_target is None and measure_fidelity:
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
        side_data=side_data,
    )
    cost = check_int(recipe.querier.cost, name="cost", owner=type(recipe.querier).__name__, low=1)
    limit = getattr(recipe.strategy, "max_queries", None)
    if limit is not None and budget // cost > limit(state):
        raise InvalidParameterError(
            f"The attacker pool has {limit(state)} rows, fewer than the {budget // cost} inputs "
            f"that {recipe.name} would ask with a budget of {budget} (each pool row is asked at "
            "most once). Lower the budget or give a larger pool."
        )
    evaluate_at = set(points)
    if recipe.rounds is not None:
        extra = [int(r) for r in recipe.rounds(budget) if 0 < int(r) < budget]
        points = sorted(evaluate_at | set(extra))
    oracle = budgeted(target, budget)
    history: list[dict[str, float]] = []
    outside_cap: int | None = None  # rows left according to a budget or quota outside extract
    halted = False  # a strategy asked to stop (state.memo["stop"] says why)
    for step, point in enumerate(points):
        while True:
            room = point - oracle.spent
            if outside_cap is not None:
                room = min(room, outside_cap - oracle.spent)
            n = min(room // cost, recipe.query_batch_size)
            if n <= 0:
                break
            proposal = recipe.strategy.propose(state, n, rng)
            if "stop" in state.memo:  # the strategy's own stopping rule fired
                halted = True
                state.memo.setdefault("stopped", state.memo["stop"])
                break
            try:
                answers = recipe.querier.ask(oracle, proposal.x, state, rng)
            except QueryBudgetExceeded as exc:
                cap = oracle.spent + exc.remaining
                if outside_cap is not None and cap >= outside_cap:
                    raise  # no progress: the outside budget does not shrink the way it says
                outside_cap = cap
                state.memo["stopped"] = str(exc)
                log.warning("%s: %s", recipe.name, exc)
                continue
            if proposal.pool_index is not None:
                state.used[proposal.pool_index] = True
            state.queried_x.append(np.asarray(proposal.x, dtype=np.float32))
            state.responses.append(answers)
            if progress:
                progress("query", oracle.spent, budget)
        if not state.queried_x:
            raise InvalidParameterError(
                f"{recipe.name}: a budget of {point} rows cannot pay for one input at "
                f"{cost} rows each."
            )
        prepare = getattr(recipe.recovery, "prepare", None)
        if prepare is not None and step == 0:
            prepare(state, rng)
        started = time.perf_counter()
        X = state.inputs()
        Y = recipe.recovery(state.answers(), X)
        state.substitute = recipe.trainer.fit(
            X, Y, input_shape=state.input_shape, n_classes=state.n_classes, seed=seed
        )
        if progress:
            progress("train", step + 1, len(points))
        stopped = halted or (outside_cap is not None and oracle.spent < point)
        if point not in evaluate_at and not stopped:
            continue
        record: dict[str, float] = {
            "queries": oracle.spent,
            "train_seconds": time.perf_counter() - started,
        }
        if eval_x is not None:
            sub = predict_proba(state.substitute, eval_x)
            if eval_target is not None:
                record["fidelity"] = fidelity(sub, eval_target)
            if eval_y is not None:
                record["accuracy"] = accuracy(eval_y, sub)
        history.append(record)
        log.info("%s at %d queries: %s", recipe.name, oracle.spent, record)
        if stopped:
            break
    return ExtractionResult(
        recipe=recipe.name,
        substitute=state.substitute,
        queries=oracle.spent,
        budget=budget,
        history=history,
        queried_x=state.inputs(),
        responses=state.answers(),
        seed=seed,
        info=dict(state.memo),
        recovered=Y,
    )
