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

Each selection round's mean entropy of the chosen batch (under the substitute that chose it) is
recorded in ``state.memo["activethief"]``; with ``alpha`` set, the thesis' stopping rule
(:func:`entropy_stop`, Eq. 4) ends the run when it first fires, and the queries at that point are
recorded as ``stop_at``.

Departures: the original DFAL+k-center keeps ``budget`` DFAL candidates; here every combination
keeps ``candidates · n`` (the strategy does not know the budget). DeepFool uses overshoot 0.02
(the original 0.01). Rounds longer than :attr:`Recipe.query_batch_size` are picked in several
calls against the same substitute; k-center then counts the earlier calls' rows as centres.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans

from modelsteal._checks import check_choice, check_float, check_int
from modelsteal.attacks._base import STRATEGIES, AttackState, Proposal
from modelsteal.errors import InvalidParameterError
from modelsteal.models import predict_proba

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
_CHUNK = 4096


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
    """min_c ‖p − c‖² for every row of ``points``, in vectorised chunks of rows."""
    out = np.full(len(points), np.inf)
    if len(centres) == 0:
        return out
    c = np.asarray(centres, dtype=np.float64)
    c_sq = (c**2).sum(axis=1)
    for start in range(0, len(points), _CHUNK):
        p = np.asarray(points[start : start + _CHUNK], dtype=np.float64)
        d = (p**2).sum(axis=1)[:, None] + c_sq[None, :] - 2.0 * p @ c.T
        out[start : start + _CHUNK] = np.maximum(d.min(axis=1), 0.0)
    return out


def kcenter_greedy(points: np.ndarray, centres: np.ndarray, m: int) -> np.ndarray:
    """Greedy core-set: ``m`` positions of ``points``, each the farthest from all centres so far.

    ``centres`` are the already-covered outputs. The distance of every point to its nearest centre
    is kept and updated with each pick (one vectorised pass per pick, no loop over points).
    Without centres the first pick is position 0.
    """
    points = np.asarray(points, dtype=np.float64)
    m = min(m, len(points))
    dist = _min_sq_dist(points, centres)
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
    batch_size: int = 256,
) -> np.ndarray:
    """‖x_adv − x‖² of DeepFool (Moosavi-Dezfooli et al., 2016) on ``model``, batched.

    Each row stops moving once its predicted label flips; rows that never flip within
    ``max_iter`` steps keep the distance they reached. ``domain`` clips x_adv.
    """
    model.eval()
    out = np.empty(len(x))
    for start in range(0, len(x), batch_size):
        x0 = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size], np.float32))
        with torch.no_grad():
            label = model(x0).argmax(dim=1)
        r_tot = torch.zeros_like(x0)
        x_adv = x0.clone()
        active = torch.ones(len(x0), dtype=torch.bool)
        rows = torch.arange(len(x0))
        for _ in range(max_iter):
            if not active.any():
                break
            xa = x_adv.clone().requires_grad_(True)
            logits = model(xa)
            if (logits.argmax(dim=1) != label).all():
                break
            active &= logits.argmax(dim=1) == label
            grads = torch.stack(
                [
                    torch.autograd.grad(logits[:, j].sum(), xa, retain_graph=True)[0]
                    for j in range(logits.shape[1])
                ],
                dim=1,
            ).flatten(2)  # (B, C, D)
            logits = logits.detach()
            w = grads - grads[rows, label].unsqueeze(1)
            f = logits - logits[rows, label].unsqueeze(1)
            norm = w.norm(dim=2).clamp_min(1e-12)
            ratio = f.abs() / norm
            ratio[rows, label] = torch.inf
            best = ratio.argmin(dim=1)
            w_best = w[rows, best]
            step = (ratio[rows, best] + 1e-4).unsqueeze(1) / norm[rows, best].unsqueeze(1)
            r = (step * w_best).view_as(x0) * active.view(-1, *([1] * (x0.dim() - 1)))
            r_tot = r_tot + r
            x_adv = x0 + (1.0 + overshoot) * r_tot
            if domain is not None:
                x_adv = x_adv.clamp(domain[0], domain[1])
        out[start : start + len(x0)] = ((x_adv - x0) ** 2).flatten(1).sum(dim=1).numpy()
    return out


def _kmeans(features: np.ndarray, n_clusters: int, rng: np.random.Generator):
    km = KMeans(
        n_clusters=n_clusters, n_init=1, random_state=int(rng.integers(2**31 - 1)), max_iter=100
    )
    assign = km.fit_predict(features)
    dist = ((features - km.cluster_centers_[assign]) ** 2).sum(axis=1)
    return assign, dist


# the strategy ---------------------------------------------------------------------------------


@STRATEGIES.register("activethief")
@dataclass(frozen=True)
class ActiveThief:
    """ActiveThief: seed, then pick the rows the substitute finds most informative.

    ``initial_seed`` and ``k`` (rows per selection round) are read by the recipe's ``rounds``;
    None derives them from the budget (10% seed, ten rounds). ``candidates``: the size of the
    pre-filtered set in combined selections, as a multiple of ``n``. ``alpha``: record where
    the entropy stopping rule fires (None: do not check).
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
        if self.alpha is not None:
            check_float(self.alpha, name="alpha", owner=owner, low=0.0)

    def max_queries(self, state: AttackState) -> int:
        """Each pool row is asked at most once."""
        return len(state.pool)

    def rounds(self, budget: int, *, iterations: int = 10) -> list[int]:
        """Query counts after which the substitute is retrained: seed, seed + k, … , budget."""
        budget = check_int(budget, name="budget", owner="ActiveThief.rounds", low=1)
        iterations = check_int(iterations, name="iterations", owner="ActiveThief.rounds", low=1)
        seed = self.initial_seed if self.initial_seed is not None else max(1, budget // 10)
        seed = min(seed, budget)
        k = self.k if self.k is not None else max(1, -(-(budget - seed) // iterations))
        return sorted({*range(seed, budget, k), budget})

    def propose(self, state: AttackState, n: int, rng: np.random.Generator) -> Proposal:
        unused = state.unused
        n = check_int(n, name="n", owner="ActiveThief.propose", low=0)
        if n > len(unused):
            raise InvalidParameterError(
                f"The attacker pool has {len(unused)} unused rows but {n} queries were asked "
                f"for (pool size {len(state.pool)}). Lower the budget or give a larger pool."
            )
        if n == 0:
            return Proposal(x=state.pool[:0], pool_index=unused[:0])
        if state.substitute is None:
            positions = self._seed(state, unused, n, rng)
        else:
            positions = self._select(state, unused, n, rng)
        picked = unused[positions]
        return Proposal(x=state.pool[picked], pool_index=picked)

    # seeding ----------------------------------------------------------------------------------

    def _seed(
        self, state: AttackState, unused: np.ndarray, n: int, rng: np.random.Generator
    ) -> np.ndarray:
        if self.seeding == "random" or len(unused) <= n:
            return rng.choice(len(unused), size=n, replace=False)
        clusters = min(self.n_clusters, len(unused))
        if self.seeding == "cluster" and state.substitute is not None:
            features = self._probs(state, unused)
        else:
            features = state.pool[unused].reshape(len(unused), -1).astype(np.float64)
        assign, dist = _kmeans(features, clusters, rng)
        if self.seeding == "cluster":  # Algorithm 1: farthest from their centres first
            return _top(dist, n, largest=True)
        nearest = np.argsort(dist, kind="stable")  # round-robin over clusters, nearest first
        return nearest[_balanced(assign[nearest], n)]

    # selection --------------------------------------------------------------------------------

    def _probs(self, state: AttackState, rows: np.ndarray) -> np.ndarray:
        parts = [
            predict_proba(state.substitute, state.pool[rows[s : s + _CHUNK]])
            for s in range(0, len(rows), _CHUNK)
        ]
        return np.concatenate(parts)

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
            scores = deepfool_distance(
                state.substitute,
                state.pool[unused],
                max_iter=self.dfal_iterations,
                overshoot=self.dfal_overshoot,
                domain=state.domain,
            )
            pos = _top(scores, m, largest=False)
        else:  # kcenter on its own
            pos = kcenter_greedy(probs, self._centres(state), n)
        for i, step in enumerate(steps[1:], start=1):
            last = i == len(steps) - 1
            if step == "kcenter":
                size = n if last else min(len(pos), 2 * n)
                pos = pos[kcenter_greedy(probs[pos], self._centres(state), size)]
            else:  # uniform: balanced over predicted labels, in the current order
                pos = pos[_balanced(probs[pos].argmax(axis=1), n)]
        pos = pos[:n]
        self._record(state, probs[pos])
        return pos

    def _centres(self, state: AttackState) -> np.ndarray:
        if not state.queried_x:
            return np.empty((0, state.n_classes))
        return predict_proba(state.substitute, state.inputs())

    def _record(self, state: AttackState, chosen: np.ndarray) -> None:
        """Add the batch's mean entropy to this round's entry (one round per substitute)."""
        run: dict[str, Any] = state.memo.setdefault(
            _MEMO,
            {
                "selection": self.selection,
                "seeding": self.seeding,
                "queries": [],
                "batch_entropy": [],
                "batch_size": [],
                "stop_at": None,
                "_substitute": None,
            },
        )
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
