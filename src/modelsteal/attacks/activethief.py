"""ActiveThief's selection strategies (Pal et al., AAAI 2020) and the extensions of Psathas (2022).

Pal, Gupta, Shukla, Kanade, Shevade, Ganapathy, "ActiveThief: Model Extraction Using Active
Learning and Unannotated Public Data", AAAI 2020, https://arxiv.org/abs/1905.09165; Psathas,
"Decreasing Model Stealing Querying for Black Box Adversarial Attacks", TU Delft 2022.

Before any substitute exists the strategy *seeds*: ``"random"`` rows of the pool, or k-means
clusters (see below). Once :func:`~modelsteal.attacks.extract` has trained a substitute (at the
recipe's ``rounds``), the unused pool is scored with the substitute's softmax and ``n`` rows are
picked by ``selection``:

- ``random``; ``uniform``: random rows balanced over the substitute's predicted labels;
- ``least_confidence`` (largest 1 − max p), ``margin`` (smallest p₁ − p₂), ``entropy`` (largest
  −Σ p log p);
- ``kcenter``: greedy core-set (Sener & Savarese) in the substitute's output space, L2 distance;
  the centres are the outputs on every input queried so far;
- ``dfal``: DeepFool distance ‖x_adv − x‖² on the substitute, smallest first;
- combinations ``a+b[+c]``: the first criterion keeps the ``candidates · n`` best rows, the next
  chooses among them (``dfal+kcenter``, ``entropy+kcenter``, ``entropy+uniform``); in
  ``entropy+kcenter+uniform`` k-center orders up to ``2n`` of the entropy candidates and the
  batch is then balanced over predicted labels in that order.

Seeding:

- ``kmeans_input``: k-means with ``n_clusters`` clusters on the flattened inputs of the unused
  pool; rows are taken round-robin over clusters, nearest to the centre first (representative
  rows of every cluster).
- ``cluster``: the thesis' Algorithm 1: k-means on the substitute's predictions for the unused
  pool, the rows *farthest* from their centre first. Before any substitute exists (the very first
  seed, the normal case) it falls back to k-means on the inputs, still farthest first.

Validation split: with ``validation`` set, the first rows asked are drawn at random from the
pool and held out (labelled by the target through the same budget, never selected again);
:class:`ActiveThiefTrainer`, the recipe's trainer, never trains on them and early-stops each
round on its agreement with them, and can warm-start each round from the previous substitute.

Each selection round's mean entropy of the chosen batch (under the substitute that chose it) is
recorded in ``state.memo["activethief"]``; with ``alpha`` set, the thesis' stopping rule
(:func:`entropy_stop`, Eq. 4) ends the run when it first fires, and the queries at that point are
recorded as ``stop_at``.

Cost: the substitute's outputs on the pool, k-center's distances to the labelled rows and DFAL's
distances are computed once per round (a round longer than :attr:`Recipe.query_batch_size` is
picked in several calls against the same substitute; k-center then counts the earlier calls'
rows as centres). k-center's distances are computed in chunks of bounded size; DeepFool runs in
batches, on the rows still moving only, follows a row only while it can still be among the
nearest, and visits rows by increasing margin, stopping once a stretch of 1,024 rows added none
of the nearest (``dfal_exhaustive=True`` visits them all). On MNIST the 40 rows nearest to the
boundary by exact DeepFool among 8,000 were all among the 52 of smallest softmax margin.

Departures: the original DFAL+k-center keeps ``budget`` DFAL candidates; here every combination
keeps ``candidates · n`` (the strategy does not know the budget). DeepFool uses overshoot 0.02
(the original 0.01), and DFAL's early stop above rests on margin order, not a proof. Each
DeepFool step looks for the nearest boundary among the 3 classes of highest logit other than the
current one (``dfal_classes=3``; None considers all, as the original): on 6,000 MNIST pool rows
and a CNN substitute this chose the same 600 nearest rows as all classes (2,558 of the 2,560
nearest; median distance difference 0) at 2.2x the speed
(``benchmarks/dfal_classes.py``).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import nn

from modelsteal._checks import check_choice, check_float, check_int
from modelsteal.attacks._base import STRATEGIES, AttackState, Proposal
from modelsteal.attacks.training import SubstituteTrainer
from modelsteal.errors import InvalidParameterError
from modelsteal.models import on_compute_device, predict_proba

log = logging.getLogger(__name__)

SELECTIONS = (
    "random",
    "uniform",
    "least_confidence",
    "margin",
    "entropy",
    "kcenter",
    "dfal",
    "dfal+kcenter",
    "entropy+kcenter",
    "entropy+uniform",
    "entropy+kcenter+uniform",
)
SEEDINGS = ("random", "cluster", "kmeans_input")
_MEMO = "activethief"
_CACHE = "_activethief_cache"  # this round's scores over the pool (see ActiveThief._cache)
_CHUNK = 4096
_DFAL_BATCH = 128  # DeepFool's batch: small batches keep the activations in cache
_SCAN_ROWS = 1024


# scores ---------------------------------------------------------------------------------------


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy −Σ p log p of each row (natural log; 0 log 0 = 0)."""
    p = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=1)


def least_confidence(probs: np.ndarray) -> np.ndarray:
    """1 − max p of each row: larger is less confident."""
    return 1.0 - np.asarray(probs, dtype=np.float64).max(axis=1)


def margin(probs: np.ndarray) -> np.ndarray:
    """p₁ − p₂, the gap between the two largest probabilities of each row: smaller is closer."""
    p = np.asarray(probs, dtype=np.float64)
    if p.shape[1] < 2:
        return np.ones(len(p))
    top2 = np.partition(p, p.shape[1] - 2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def entropy_stop(history: Sequence[float], alpha: float) -> bool:
    """The thesis' stopping rule (Eq. 4): stop when |H_{i−1} − H_i| ≤ α.

    ``history`` holds the mean entropy of each round's selected batch, oldest first; with fewer
    than two rounds there is nothing to compare and the rule does not fire.
    """
    alpha = check_float(alpha, name="alpha", owner="entropy_stop", low=0.0)
    if len(history) < 2:
        return False
    return bool(abs(float(history[-2]) - float(history[-1])) <= alpha)


def _top(scores: np.ndarray, m: int, *, largest: bool) -> np.ndarray:
    """Positions of the ``m`` best scores, best first; ties keep the lower position (stable)."""
    order = np.argsort(-scores if largest else scores, kind="stable")
    return order[:m]


def _balanced(labels: np.ndarray, m: int) -> np.ndarray:
    """Positions of ``m`` rows balanced over ``labels``, taken round-robin in the given order.

    Row i's rank is the number of earlier rows with its label; rows are taken by rank, then by
    position, so every label gets its first row before any label gets its second.
    """
    labels = np.asarray(labels)
    by_label = np.argsort(labels, kind="stable")
    sorted_labels = labels[by_label]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(labels)]))
    rank = np.empty(len(labels), dtype=np.int64)
    rank[by_label] = np.arange(len(labels)) - run_start
    return np.lexsort((np.arange(len(labels)), rank))[:m]


def _min_sq_dist(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """min_c ‖p − c‖² for every row of ``points``, in vectorised chunks of rows.

    A chunk's distance matrix holds at most about 4 million entries (32 MB), whatever the
    number of centres.
    """
    out = np.full(len(points), np.inf)
    if len(centres) == 0:
        return out
    c = np.asarray(centres, dtype=np.float64)
    c_sq = (c**2).sum(axis=1)
    chunk = max(1, min(_CHUNK, 2**22 // len(c)))
    for start in range(0, len(points), chunk):
        p = np.asarray(points[start : start + chunk], dtype=np.float64)
        d = (p**2).sum(axis=1)[:, None] + c_sq[None, :] - 2.0 * p @ c.T
        out[start : start + chunk] = np.maximum(d.min(axis=1), 0.0)
    return out


def kcenter_greedy(
    points: np.ndarray,
    centres: np.ndarray | None,
    m: int,
    *,
    min_dist: np.ndarray | None = None,
) -> np.ndarray:
    """Greedy core-set: ``m`` positions of ``points``, each the farthest from all centres so far.

    ``centres`` are the already-covered outputs. The distance of every point to its nearest centre
    is kept and updated with each pick (one vectorised pass per pick, no loop over points).
    Without centres the first pick is position 0. ``min_dist``: the squared distances of
    ``points`` to their nearest centre, when already known (``centres`` is then not read).
    """
    points = np.asarray(points, dtype=np.float64)
    m = min(m, len(points))
    if min_dist is None:
        dist = _min_sq_dist(points, np.empty((0, points.shape[1])) if centres is None else centres)
    else:
        dist = np.array(min_dist, dtype=np.float64)
    sq = (points**2).sum(axis=1)
    picked = np.empty(m, dtype=np.int64)
    for i in range(m):
        j = int(np.argmax(dist))
        picked[i] = j
        np.minimum(dist, np.maximum(sq - 2.0 * (points @ points[j]) + sq[j], 0.0), out=dist)
        dist[j] = -np.inf  # never picked twice, even when points repeat
    return picked


def deepfool_distance(
    model: torch.nn.Module,
    x: np.ndarray,
    *,
    max_iter: int = 20,
    overshoot: float = 0.02,
    domain: tuple[float, float] | None = None,
    classes: int | None = None,
    batch_size: int = 1024,
) -> np.ndarray:
    """‖x_adv − x‖² of DeepFool (Moosavi-Dezfooli et al., 2016) on ``model``, batched.

    Each row stops moving once its predicted label flips; rows that never flip within
    ``max_iter`` steps keep the distance they reached. ``domain`` clips x_adv. ``classes``: how
    many candidate classes (those with the largest logits besides the predicted one) each step
    linearises; None takes all of them (exact DeepFool). Only the rows still moving are
    evaluated at each step, and one backward pass per candidate class gives the gradients of
    f_j − f_label for the whole batch.
    """
    dist, _ = _deepfool(
        model,
        x,
        max_iter=max_iter,
        overshoot=overshoot,
        domain=domain,
        classes=classes,
        batch_size=batch_size,
    )
    return dist


def _deepfool(
    model: torch.nn.Module,
    x: np.ndarray,
    *,
    max_iter: int,
    overshoot: float,
    domain: tuple[float, float] | None,
    classes: int | None,
    batch_size: int,
    keep: int | None = None,
    known: np.ndarray | None = None,
    scan: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`deepfool_distance` and a mask of the rows whose distance is final.

    With ``keep``, only the ``keep`` smallest distances (of these rows and the final distances
    ``known`` from earlier) are needed: once ``keep`` are final, a row whose distance so far
    already reaches the ``keep``-th smallest of them (the bar) is not moved further; it gets the
    distance reached (a lower bound, as DeepFool's steps add up) and ``False`` in the mask. Rows
    early in ``x`` set the bar, so put likely-near rows first. ``scan=True`` also stops once
    1,024 rows in a row put none under the bar, on the premise that ``x`` is ordered from near
    to far; the rows not visited get NaN and ``False``.
    """
    model.eval()
    out = np.full(len(x), np.nan)
    final = np.ones(len(x), dtype=bool)
    quiet = 0  # rows visited since a batch last added one of the keep nearest
    finished: list[np.ndarray] = []  # final distances so far (for the bar)
    if known is not None and len(known):
        finished.append(np.asarray(known, dtype=np.float64))

    def bar() -> float:
        done = np.concatenate(finished) if finished else np.empty(0)
        return float(np.partition(done, keep - 1)[keep - 1]) if len(done) >= keep else np.inf

    with on_compute_device(model) as device:
        for start in range(0, len(x), batch_size):
            x0 = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size], np.float32))
            x0 = x0.to(device)
            r_tot = torch.zeros_like(x0)
            x_adv = x0.clone()
            label = torch.empty(0, dtype=torch.long, device=device)
            active = torch.arange(len(x0), device=device)  # rows whose label has not flipped yet
            for it in range(max_iter):
                xa = x_adv[active].clone().requires_grad_(True)
                logits = model(xa)
                if it == 0:
                    label = logits.detach().argmax(dim=1)
                lab = label[active]
                still = logits.argmax(dim=1) == lab
                if not still.all():  # the flipped rows are done
                    if keep is not None:
                        gone = active[~still]
                        finished.append(
                            ((x_adv[gone] - x0[gone]) ** 2).flatten(1).sum(1).cpu().numpy()
                        )
                    if not still.any():
                        active = active[still]
                        break
                # Gradients for every row evaluated (cheaper than evaluating the rest again), steps
                # for the rows that have not flipped.
                rows = torch.arange(len(lab), device=device)
                n_classes = logits.shape[1]
                q = n_classes - 1 if classes is None else min(classes, n_classes - 1)
                others = logits.detach().clone()
                others[rows, lab] = -torch.inf
                cand = others.topk(q, dim=1).indices  # (B, q)
                own = logits[rows, lab]
                diff = logits.gather(1, cand) - own.unsqueeze(1)  # f_j − f_label, (B, q)
                grads = torch.stack(
                    [
                        torch.autograd.grad(diff[:, j].sum(), xa, retain_graph=j < q - 1)[0]
                        for j in range(q)
                    ],
                    dim=1,
                ).flatten(2)[still]  # (B', q, D)
                active = active[still]
                rows = torch.arange(len(active), device=device)
                f = diff.detach()[still]
                norm = grads.norm(dim=2).clamp_min(1e-12)
                ratio = f.abs() / norm
                best = ratio.argmin(dim=1)
                step = (ratio[rows, best] + 1e-4) / norm[rows, best]
                r = (step.unsqueeze(1) * grads[rows, best]).view(len(active), *x0.shape[1:])
                r_tot[active] += r
                moved = x0[active] + (1.0 + overshoot) * r_tot[active]
                if domain is not None:
                    moved = moved.clamp(domain[0], domain[1])
                x_adv[active] = moved.detach()
                if keep is not None and it < max_iter - 1:
                    so_far = ((x_adv[active] - x0[active]) ** 2).flatten(1).sum(dim=1).cpu().numpy()
                    beyond = so_far >= bar()
                    if beyond.any():  # cannot be among the keep nearest any more
                        far = torch.from_numpy(beyond).to(device)
                        final[start + active[far].cpu().numpy()] = False
                        active = active[~far]
                        if len(active) == 0:
                            break
            dist = ((x_adv - x0) ** 2).flatten(1).sum(dim=1).cpu().numpy()
            out[start : start + len(x0)] = dist
            if keep is not None and len(active):  # rows that ran out of steps: final as they are
                finished.append(dist[active.cpu().numpy()])
            if scan and keep is not None:
                done = final[start : start + len(x0)]
                added = bool((dist[done] < bar()).any())  # any of the keep nearest so far?
                quiet = 0 if added else quiet + len(x0)
                if quiet >= _SCAN_ROWS:  # a long stretch added none: stop visiting
                    out[start + len(x0) :] = np.nan
                    final[start + len(x0) :] = False
                    break
    return out, final


def _kmeans(features: np.ndarray, n_clusters: int, rng: np.random.Generator):
    km = KMeans(
        n_clusters=n_clusters, n_init=1, random_state=int(rng.integers(2**31 - 1)), max_iter=100
    )
    assign = km.fit_predict(features)
    dist = ((features - km.cluster_centers_[assign]) ** 2).sum(axis=1)
    return assign, dist


# the strategy ---------------------------------------------------------------------------------


def _check_validation(validation: Any) -> int | float:
    """``validation`` as rows (an int ≥ 0) or a share of the seed (a float in [0, 1))."""
    if isinstance(validation, float | np.floating):
        return check_float(
            validation, name="validation", owner="ActiveThief", low=0.0, high=1.0, high_open=True
        )
    return check_int(validation, name="validation", owner="ActiveThief", low=0)


def validation_size(validation: int | float, seed_rows: int) -> int:
    """Rows of an initial seed of ``seed_rows`` held out for validation.

    ``validation``: an int is a number of rows, a float in [0, 1) a share of the seed (rounded,
    at least one row); 0 holds out none. At least one seed row is always left for training.
    """
    value = _check_validation(validation)
    if isinstance(value, float):
        if value == 0.0:
            return 0
        return max(1, min(round(value * seed_rows), seed_rows - 1))
    if value and value >= seed_rows:
        raise InvalidParameterError(
            f"The validation split of ActiveThief ({value} rows) is taken from the initial seed, "
            f"which has {seed_rows} rows: at least one must be left for training. Lower "
            "'validation', give it as a share (e.g. 0.2), or raise 'initial_seed'."
        )
    return value


@STRATEGIES.register("activethief")
@dataclass(frozen=True)
class ActiveThief:
    """ActiveThief: seed, then pick the rows the substitute finds most informative.

    ``initial_seed`` and ``k`` (rows per selection round) are read by the recipe's ``rounds``;
    None derives them from the budget (10% seed, ten rounds). ``candidates``: the size of the
    pre-filtered set in combined selections, as a multiple of ``n``. ``alpha``: record where
    the entropy stopping rule fires (None: do not check). ``validation``: rows of the initial
    seed drawn at random and held out, labelled by the target, for :class:`ActiveThiefTrainer`'s
    early stopping (an int: rows; a float in [0, 1): a share of the seed; 0: none). They are
    asked first, through the same budget, and are never selected again; :meth:`rounds` puts a
    retraining point right after them, which is how the strategy knows where they end.
    ``dfal_classes``: candidate classes per DeepFool step, those of highest logit (None: all).
    ``dfal_exhaustive``: follow every unlabelled row with DeepFool until it is out of the
    running, instead of visiting them by increasing softmax margin and stopping once 1,024 rows
    in a row added none of the nearest (see :meth:`_dfal`).
    """

    selection: str = "kcenter"
    seeding: str = "random"
    initial_seed: int | None = None
    k: int | None = None
    n_clusters: int = 10
    candidates: int = 10
    alpha: float | None = None
    dfal_iterations: int = 20
    dfal_overshoot: float = 0.02
    dfal_classes: int | None = 3
    dfal_exhaustive: bool = False
    validation: int | float = 0
    name: str = "activethief"

    def __post_init__(self) -> None:
        owner = "ActiveThief"
        check_choice(self.selection, name="selection", owner=owner, choices=SELECTIONS)
        check_choice(self.seeding, name="seeding", owner=owner, choices=SEEDINGS)
        if self.initial_seed is not None:
            check_int(self.initial_seed, name="initial_seed", owner=owner, low=1)
        if self.k is not None:
            check_int(self.k, name="k", owner=owner, low=1)
        check_int(self.n_clusters, name="n_clusters", owner=owner, low=1)
        check_int(self.candidates, name="candidates", owner=owner, low=1)
        check_int(self.dfal_iterations, name="dfal_iterations", owner=owner, low=1)
        check_float(self.dfal_overshoot, name="dfal_overshoot", owner=owner, low=0.0)
        if self.dfal_classes is not None:
            check_int(self.dfal_classes, name="dfal_classes", owner=owner, low=1)
        if not isinstance(self.dfal_exhaustive, bool | np.bool_):
            raise InvalidParameterError(
                "The 'dfal_exhaustive' parameter of ActiveThief must be a bool. "
                f"Got {self.dfal_exhaustive!r} instead."
            )
        if self.alpha is not None:
            check_float(self.alpha, name="alpha", owner=owner, low=0.0)
        _check_validation(self.validation)

    def max_queries(self, state: AttackState) -> int:
        """Each pool row is asked at most once."""
        return len(state.pool)

    def rounds(self, budget: int, *, iterations: int = 10) -> list[int]:
        """Query counts after which the substitute is retrained: seed, seed + k, … , budget.

        With ``validation``, the validation rows come out of the initial seed and the first
        point is their count (only they have been asked there; the trainer then returns the
        untrained initial model), so the later points do not move.
        """
        budget = check_int(budget, name="budget", owner="ActiveThief.rounds", low=1)
        iterations = check_int(iterations, name="iterations", owner="ActiveThief.rounds", low=1)
        seed = self.initial_seed if self.initial_seed is not None else max(1, budget // 10)
        seed = min(seed, budget)
        held_out = 0
        if self.validation:
            if seed < 2:
                raise InvalidParameterError(
                    f"ActiveThief's validation split comes out of the initial seed, which has "
                    f"{seed} row(s) with a budget of {budget}: at least 2 are needed. Raise the "
                    "budget or 'initial_seed', or set validation=0."
                )
            held_out = validation_size(self.validation, seed)
        k = self.k if self.k is not None else max(1, -(-(budget - seed) // iterations))
        points = {*range(seed, budget, k), budget}
        if held_out:
            points.add(held_out)
        return sorted(points)

    def propose(self, state: AttackState, n: int, rng: np.random.Generator) -> Proposal:
        _CURRENT.set(weakref.ref(state))  # for ActiveThiefTrainer, see _current_state
        unused = state.unused
        n = check_int(n, name="n", owner="ActiveThief.propose", low=0)
        if n > len(unused):
            raise InvalidParameterError(
                f"The attacker pool has {len(unused)} unused rows but {n} queries were asked "
                f"for (pool size {len(state.pool)}). Lower the budget or give a larger pool."
            )
        if n == 0:
            return Proposal(x=state.pool[:0], pool_index=unused[:0])
        phase = self._phase(state)
        if phase == "validation":  # drawn at random, as the original's validation set
            positions = rng.choice(len(unused), size=n, replace=False)
        elif phase == "seed":
            positions = self._seed(state, unused, n, rng)
        else:
            positions = self._select(state, unused, n, rng)
        picked = unused[positions]
        return Proposal(x=state.pool[picked], pool_index=picked)

    def _phase(self, state: AttackState) -> str:
        """``"validation"`` (asking the held-out rows), ``"seed"`` or ``"select"``.

        The validation phase lasts until the first substitute exists (the recipe's first round
        point); its rows are then counted in ``memo["activethief"]["validation_rows"]``, and the
        model trained on nothing then (``"_placeholder"``) still counts as no substitute.
        """
        run = self._run(state)
        if run["validation_rows"] is None:
            if state.substitute is None:
                return "validation"
            run["validation_rows"] = state.n_queried
            run["_placeholder"] = weakref.ref(state.substitute)
        placeholder = run["_placeholder"]
        if state.substitute is None or (
            placeholder is not None and placeholder() is state.substitute
        ):
            return "seed"
        return "select"

    # seeding ----------------------------------------------------------------------------------

    def _seed(
        self, state: AttackState, unused: np.ndarray, n: int, rng: np.random.Generator
    ) -> np.ndarray:
        if self.seeding == "random" or len(unused) <= n:
            return rng.choice(len(unused), size=n, replace=False)
        clusters = min(self.n_clusters, len(unused))
        # No trained substitute exists while seeding, so cluster seeding (Algorithm 1) runs its
        # k-means on the inputs, as kmeans_input does.
        features = state.pool[unused].reshape(len(unused), -1).astype(np.float64)
        assign, dist = _kmeans(features, clusters, rng)
        if self.seeding == "cluster":  # Algorithm 1: farthest from their centres first
            return _top(dist, n, largest=True)
        nearest = np.argsort(dist, kind="stable")  # round-robin over clusters, nearest first
        return nearest[_balanced(assign[nearest], n)]

    # selection --------------------------------------------------------------------------------

    def _cache(self, state: AttackState) -> dict[str, Any]:
        """This round's scores, kept while the substitute is the same object.

        A round longer than the recipe's query batch is picked in several calls; the substitute's
        outputs on the pool (and DFAL's distances) are computed once per round, not per call.
        """
        cache = state.memo.get(_CACHE)
        if cache is None or cache["substitute"]() is not state.substitute:
            n_pool = len(state.pool)
            cache = {
                "substitute": weakref.ref(state.substitute),
                "probs": np.full((n_pool, state.n_classes), np.nan),
                "dfal": np.full(n_pool, np.nan),
                "dfal_final": np.zeros(n_pool, dtype=bool),
                "centre_dist": np.full(n_pool, np.nan),
                "covered": np.zeros(n_pool, dtype=bool),
            }
            state.memo[_CACHE] = cache
        return cache

    def _probs(self, state: AttackState, rows: np.ndarray) -> np.ndarray:
        """The substitute's softmax on pool ``rows`` (computed once per round and row)."""
        probs = self._cache(state)["probs"]
        missing = rows[np.isnan(probs[rows, 0])]
        for s in range(0, len(missing), _CHUNK):
            part = missing[s : s + _CHUNK]
            probs[part] = predict_proba(state.substitute, state.pool[part], batch_size=256)
        return probs[rows]

    def _dfal(self, state: AttackState, rows: np.ndarray, need: int) -> np.ndarray:
        """DFAL distances of pool ``rows``; the ``need`` smallest are exact DeepFool distances.

        The rest may be lower bounds or NaN (not visited): rows are visited by increasing
        softmax margin, a row is followed only while it can still be among the ``need``
        nearest, and (unless ``dfal_exhaustive``) the visit stops once 1,024 rows in a row
        added none of them (see :func:`_deepfool`). A later call of the round that
        needs more rows visits only the rows that are not ruled out by what is known.
        """
        cache = self._cache(state)
        scores, final = cache["dfal"], cache["dfal_final"]
        known = scores[rows[final[rows]]]
        bar = np.partition(known, need - 1)[need - 1] if len(known) >= need else np.inf
        # not visited yet (NaN), or a lower bound that no longer rules the row out
        todo = rows[~final[rows] & ~(scores[rows] >= bar)]
        if len(todo):
            todo = todo[np.argsort(margin(self._probs(state, todo)), kind="stable")]
            scores[todo], final[todo] = self._deepfool(
                state, todo, keep=need, known=known, scan=not self.dfal_exhaustive
            )
        while True:
            nearest = rows[_top(scores[rows], need, largest=False)]
            redo = nearest[~final[nearest]]
            if len(redo) == 0:
                return scores[rows]
            scores[redo], final[redo] = self._deepfool(state, redo)

    def _deepfool(
        self,
        state: AttackState,
        rows: np.ndarray,
        *,
        keep: int | None = None,
        known: np.ndarray | None = None,
        scan: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        return _deepfool(
            state.substitute,
            state.pool[rows],
            max_iter=self.dfal_iterations,
            overshoot=self.dfal_overshoot,
            domain=state.domain,
            classes=self.dfal_classes,
            batch_size=_DFAL_BATCH,
            keep=keep,
            known=known,
            scan=scan,
        )

    def _select(
        self, state: AttackState, unused: np.ndarray, n: int, rng: np.random.Generator
    ) -> np.ndarray:
        probs = self._probs(state, unused)
        steps = self.selection.split("+")
        m = min(len(unused), self.candidates * n) if len(steps) > 1 else n
        first = steps[0]
        if first == "random":
            pos = rng.choice(len(unused), size=n, replace=False)
        elif first == "uniform":
            order = rng.permutation(len(unused))
            pos = order[_balanced(probs[order].argmax(axis=1), n)]
        elif first == "least_confidence":
            pos = _top(least_confidence(probs), m, largest=True)
        elif first == "margin":
            pos = _top(margin(probs), m, largest=False)
        elif first == "entropy":
            pos = _top(entropy(probs), m, largest=True)
        elif first == "dfal":
            pos = _top(self._dfal(state, unused, m), m, largest=False)
        else:  # kcenter on its own
            pos = self._kcenter(state, unused, n)
        for i, step in enumerate(steps[1:], start=1):
            last = i == len(steps) - 1
            if step == "kcenter":
                size = n if last else min(len(pos), 2 * n)
                pos = pos[self._kcenter(state, unused[pos], size)]
            else:  # uniform: balanced over predicted labels, in the current order
                pos = pos[_balanced(probs[pos].argmax(axis=1), n)]
        pos = pos[:n]
        self._record(state, probs[pos])
        return pos

    def _kcenter(self, state: AttackState, rows: np.ndarray, m: int) -> np.ndarray:
        """k-center's ``m`` picks among pool ``rows`` (positions in ``rows``).

        The centres are the substitute's outputs on every row asked so far (all pool rows). The
        squared distance of each row to its nearest centre is kept for the round and brought up
        to date with the rows asked since, so a round in several calls pays for the distances to
        the labelled rows once.
        """
        cache = self._cache(state)
        dist, covered = cache["centre_dist"], cache["covered"]
        new = np.flatnonzero(state.used & ~covered)
        if len(new):
            known = np.flatnonzero(~np.isnan(dist))
            if len(known):
                to_new = _min_sq_dist(self._probs(state, known), self._probs(state, new))
                dist[known] = np.minimum(dist[known], to_new)
            covered[new] = True
        missing = rows[np.isnan(dist[rows])]
        if len(missing):
            centres = self._probs(state, np.flatnonzero(covered))
            dist[missing] = _min_sq_dist(self._probs(state, missing), centres)
        return kcenter_greedy(self._probs(state, rows), centres=None, m=m, min_dist=dist[rows])

    def _run(self, state: AttackState) -> dict[str, Any]:
        """This run's record in ``state.memo["activethief"]`` (comes back as result.info)."""
        return state.memo.setdefault(
            _MEMO,
            {
                "selection": self.selection,
                "seeding": self.seeding,
                "validation_rows": None if self.validation else 0,
                "queries": [],
                "batch_entropy": [],
                "batch_size": [],
                "stop_at": None,
                "training": [],
                "_substitute": None,
                "_placeholder": None,
            },
        )

    def _record(self, state: AttackState, chosen: np.ndarray) -> None:
        """Add the batch's mean entropy to this round's entry (one round per substitute)."""
        run = self._run(state)
        ref = run["_substitute"]
        h = entropy(chosen)
        if ref is not None and ref() is state.substitute:
            total = run["batch_size"][-1] + len(h)
            run["batch_entropy"][-1] = (
                run["batch_entropy"][-1] * run["batch_size"][-1] + float(h.sum())
            ) / total
            run["batch_size"][-1] = total
            return
        # a new round: the previous rounds are complete, so the stopping rule can be checked
        if (
            self.alpha is not None
            and run["stop_at"] is None
            and entropy_stop(run["batch_entropy"], self.alpha)
        ):
            run["stop_at"] = state.n_queried
            state.memo["stop"] = (
                f"ActiveThief's entropy rule (alpha={self.alpha}) fired at "
                f"{state.n_queried} queries"
            )
            log.info("ActiveThief: entropy stopping rule fired at %d queries", state.n_queried)
        run["_substitute"] = weakref.ref(state.substitute)
        run["queries"].append(state.n_queried)
        run["batch_entropy"].append(float(h.mean()))
        run["batch_size"].append(len(h))


# the trainer ----------------------------------------------------------------------------------

_CURRENT: ContextVar[weakref.ref[AttackState] | None] = ContextVar(
    "activethief_state", default=None
)
"""The state of the run whose strategy proposed last in this thread (or task).

:func:`~modelsteal.attacks.extract` hands its trainer only (X, Y), but the trainer needs to
know which leading rows are the validation split and, for a warm start, the previous round's
substitute. Both are in the run's :class:`AttackState`; the strategy names it here on every
proposal, and extract retrains only after a proposal of the same run, in the same thread.
"""


def _current_state(X: np.ndarray) -> AttackState | None:
    """The run that asked exactly the rows ``X``, or None (e.g. the trainer used on its own)."""
    ref = _CURRENT.get()
    state = None if ref is None else ref()
    if state is None or _MEMO not in state.memo or state.n_queried != len(X):
        return None
    if len(X) and not np.array_equal(state.queried_x[0][:1], X[:1]):
        return None
    return state


@dataclass(frozen=True)
class ActiveThiefTrainer(SubstituteTrainer):
    """The ActiveThief recipe's substitute trainer: early stopping and an optional warm start.

    Inside a run of the :class:`ActiveThief` strategy, the leading ``validation_rows`` rows of
    what was asked (the validation split) are not trained on: after every epoch the substitute's
    agreement with the target's labels on them is measured, training stops after ``patience``
    epochs without improvement (None: runs every epoch) and the best epoch's weights are kept
    (:func:`~modelsteal.attacks.training.train_early_stopped`). Before any other row has been
    asked it returns the untrained initial model. ``warm_start=False`` (the original) trains
    every round from the same initial weights; True starts from the previous round's substitute
    (the optimiser starts afresh). Each round is noted in ``info["activethief"]["training"]``.
    Outside such a run it is a plain :class:`~modelsteal.attacks.training.SubstituteTrainer`.
    """

    warm_start: bool = False
    patience: int | None = 5

    def __post_init__(self) -> None:
        if not isinstance(self.warm_start, bool | np.bool_):
            raise InvalidParameterError(
                "The 'warm_start' parameter of ActiveThiefTrainer must be a bool. "
                f"Got {self.warm_start!r} instead."
            )
        if self.patience is not None:
            check_int(self.patience, name="patience", owner="ActiveThiefTrainer", low=1)

    def fit(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        *,
        input_shape: Sequence[int],
        n_classes: int,
        seed: int,
    ) -> nn.Module:
        state = _current_state(X)
        if state is None:
            log.debug("ActiveThiefTrainer outside an ActiveThief run: plain training.")
            return super().fit(X, Y, input_shape=input_shape, n_classes=n_classes, seed=seed)
        run = state.memo[_MEMO]
        held_out = run["validation_rows"]
        entry: dict[str, Any] = {"queries": len(X)}
        if held_out is None:  # only the validation split has been asked: nothing to train on
            model = self.new_model(input_shape, n_classes, seed)
            model.eval()
            run["training"].append({**entry, "train_rows": 0, "validation_rows": len(X)})
            return model
        previous = state.substitute if self.warm_start else None
        model, report = self.fit_validated(
            X[held_out:],
            Y[held_out:],
            input_shape=input_shape,
            n_classes=n_classes,
            seed=seed,
            init=previous,
            validation=(X[:held_out], Y[:held_out]) if held_out else None,
            patience=self.patience,
        )
        entry.update(
            train_rows=len(X) - held_out,
            validation_rows=held_out,
            warm_start=previous is not None,
        )
        if report is not None:
            entry.update(
                best_epoch=report.best_epoch,
                epochs=report.epochs,
                validation_agreement=report.agreement[report.best_epoch],
            )
        run["training"].append(entry)
        return model
