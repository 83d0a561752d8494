"""KnockoffNets' adaptive query strategy: a gradient bandit over groups of the attacker's pool.

Orekondy, Schiele, Fritz, "Knockoff Nets: Stealing Functionality of Black-Box Models", CVPR 2019,
§4.2, https://arxiv.org/abs/1812.02766.

The pool is cut into groups (the top-level actions ``a``): the attacker's own coarse labels when it
has them, else k-means clusters of the pool (on a PCA projection of the flattened inputs). A
policy π = softmax(H) over the groups picks a group; a pool row (a leaf) is drawn uniformly among
the group's unused rows and queried. Each answer y (the target's probability vector) earns a
reward built from

- **certainty**: the margin between the two largest probabilities of y;
- **diversity**: Σ_k max(0, y_k − ȳ_k), ȳ the mean of the last Δ (``diversity_window``) answers
  before the pull;
- **loss**: the cross-entropy −Σ_k y_k log ŷ_k between the target's answer and the current
  substitute's prediction ŷ (the substitute that :func:`~modelsteal.attacks.extract` last
  trained, at the recipe's ``rounds``);

each standardised by its running mean and standard deviation; ``reward="all"`` sums the three.
The policy follows the gradient-bandit update (Sutton & Barto §2.8)

    H(a) ← H(a) + α (r − r̄) (1[a = A] − π(a)),

r̄ the running mean of past rewards.

Departures from the paper, and why:

- **Batches.** The paper takes one sample per step. Here a *pull* of ``pull_size`` rows draws each
  row's group from the same π, and the update is the sum of the rows' one-sample updates with π
  held fixed for the pull. The recipe asks :func:`extract` for one pull per call, so every pull's
  answers are in before the next pull is drawn.
- **One-call delay.** Answers reach the strategy only through the :class:`AttackState`: the
  rewards of a pull are computed at the start of the *next* ``propose`` call, from
  ``state.responses``. The policy that draws pull t+1 has therefore learned from pulls 1…t, as in
  the paper; only the rewards of the very last pull are never used. A pull whose answers never
  arrive (the strategy called without :func:`extract`) is dropped without a reward.
- **Numerical stability.** π is computed with the maximum subtracted and over the groups that
  still have unused rows (an exhausted group gets probability 0, so a large H on it cannot drown
  the rest); standardised rewards are clipped to ±``reward_clip`` and H is kept centred, so H and
  π stay finite whatever the raw rewards' scale.
- **A hierarchy of at most two levels.** The paper walks a tree of coarse-to-fine labels. Here
  the groups are the top level; with ``fine_clusters`` each group is cut again by k-means into
  up to that many clusters, each with its own gradient bandit among its group's clusters, as
  the paper's inner nodes: a pull draws a group from π_top, then a cluster from that group's
  π, and a reward updates both (the group's preference among groups, the cluster's among its
  group's clusters). Pool rows are drawn uniformly within the chosen cluster.
- The loss reward needs a substitute: before the first one is trained it is left out of the sum
  (with ``reward="loss"`` the policy then stays where it is).

The run's policy history (π before each pull, the groups drawn, the mean rewards) is kept in
``state.memo["knockoff_adaptive"]`` and comes back as ``ExtractionResult.info``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from modelsteal._checks import check_choice, check_float, check_int
from modelsteal.attacks._base import STRATEGIES, AttackState, Proposal
from modelsteal.errors import InvalidParameterError

log = logging.getLogger(__name__)

__all__ = [
    "KnockoffAdaptive",
    "RunningStandardizer",
    "bandit_update",
    "certainty_reward",
    "diversity_reward",
    "loss_reward",
    "policy",
]

REWARDS = ("certainty", "diversity", "loss", "all")
_MEMO = "knockoff_adaptive"


# --- the bandit, as plain functions ----------------------------------------------------------


def policy(H: np.ndarray, available: np.ndarray | None = None) -> np.ndarray:
    """π = softmax(H) over the ``available`` actions (all when None), 0 elsewhere.

    The maximum over the available actions is subtracted first, so no exp overflows and at least
    one term is exp(0) = 1: the result is finite and sums to 1 for any finite H.
    """
    H = np.asarray(H, dtype=np.float64)
    mask = np.ones(H.shape, dtype=bool) if available is None else np.asarray(available, bool)
    if not mask.any():
        raise InvalidParameterError("policy: no action is available (every group is exhausted).")
    z = np.where(mask, H, -np.inf)
    e = np.exp(z - z[mask].max())
    return e / e.sum()


def bandit_update(
    H: np.ndarray,
    actions: np.ndarray,
    advantages: np.ndarray,
    pi: np.ndarray,
    *,
    alpha: float,
    clip: float | None = None,
) -> np.ndarray:
    """One batched gradient-bandit step: ``H + α Σ_i A_i (e_{a_i} − π)``, returned centred.

    ``actions`` and ``advantages`` (r_i − r̄) are per row of the pull; π is the policy the pull was
    drawn from (held fixed for the pull). ``clip`` bounds each advantage to ±clip first. The result
    has mean 0 (softmax is shift-invariant), so H does not drift.
    """
    adv = np.asarray(advantages, dtype=np.float64)
    adv = np.where(np.isfinite(adv), adv, 0.0)  # a non-finite advantage teaches nothing
    if clip is not None:
        adv = np.clip(adv, -clip, clip)
    k = len(H)
    grad = np.bincount(np.asarray(actions, dtype=np.int64), weights=adv, minlength=k)
    grad -= adv.sum() * np.asarray(pi, dtype=np.float64)
    out = np.asarray(H, dtype=np.float64) + alpha * grad
    return out - out.mean()


@dataclass
class RunningStandardizer:
    """Running mean and variance of a stream of rewards (Chan et al.'s batched Welford update).

    ``standardize(r)`` first adds the batch ``r`` to the running statistics, then returns
    ``(r − mean) / std``; 0 where the statistics cannot say anything yet (fewer than two values,
    zero or non-finite spread). The statistics are kept in units of ``scale``, the largest
    magnitude of the first non-zero batch, so that rewards of any size (1e-300 or 1e300) neither
    underflow nor overflow when squared; ``mean`` and ``std`` are in those units too.
    """

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    scale: float = 0.0

    def _scaled(self, r: np.ndarray) -> np.ndarray:
        r = np.asarray(r, dtype=np.float64)
        if self.scale == 0.0:
            big = float(np.max(np.abs(r), initial=0.0))
            if np.isfinite(big) and big > 0:
                self.scale = big
        return r / self.scale if self.scale else r

    def update(self, r: np.ndarray) -> None:
        r = self._scaled(r)
        n = len(r)
        if n == 0:
            return
        with np.errstate(over="ignore", invalid="ignore"):
            b_mean = float(r.mean())
            b_m2 = float(((r - b_mean) ** 2).sum())
            total = self.count + n
            delta = b_mean - self.mean
            self.mean += delta * n / total
            self.m2 += b_m2 + delta**2 * self.count * n / total
        self.count = total

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / self.count)) if self.count > 1 else 0.0

    def standardize(self, r: np.ndarray) -> np.ndarray:
        self.update(r)
        r = self._scaled(r)
        std = self.std
        if not (np.isfinite(std) and np.isfinite(self.mean)) or std <= 1e-12:
            return np.zeros_like(r)
        with np.errstate(over="ignore", invalid="ignore"):
            z = (r - self.mean) / std
        return np.where(np.isfinite(z), z, 0.0)


# --- rewards ---------------------------------------------------------------------------------


def certainty_reward(y: np.ndarray) -> np.ndarray:
    """Margin between the two largest probabilities of each row."""
    top2 = np.sort(np.asarray(y, dtype=np.float64), axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def diversity_reward(y: np.ndarray, recent_mean: np.ndarray) -> np.ndarray:
    """Σ_k max(0, y_k − ȳ_k) per row: how far each answer moves above the recent mean answer."""
    y = np.asarray(y, dtype=np.float64)
    return np.clip(y - np.asarray(recent_mean, dtype=np.float64), 0.0, None).sum(axis=1)


def loss_reward(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cross-entropy −Σ_k y_k log ŷ_k per row, ŷ the model's softmax (via log-softmax: finite)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
            logq = torch.log_softmax(logits.double(), dim=1).numpy()
    finally:
        model.train(was_training)
    ce = -(np.asarray(y, dtype=np.float64) * logq).sum(axis=1)
    return np.nan_to_num(ce, nan=0.0, posinf=1e6)


# --- the strategy ----------------------------------------------------------------------------


def _groups(
    pool: np.ndarray, n_clusters: int, n_components: int, rng: np.random.Generator
) -> np.ndarray:
    """k-means cluster of each pool row, on a PCA projection of the flattened rows."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    X = pool.reshape(len(pool), -1).astype(np.float32, copy=False)
    seed = int(rng.integers(2**31 - 1))
    if X.shape[1] > n_components and len(X) > n_components:
        X = PCA(n_components, svd_solver="randomized", random_state=seed).fit_transform(X)
    km = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed)
    return km.fit_predict(X).astype(np.int64)


@STRATEGIES.register("knockoff_adaptive")
@dataclass(frozen=True, kw_only=True, eq=False)
class KnockoffAdaptive:
    """KnockoffNets-adaptive (Orekondy et al. 2019, §4.2); see the module notes.

    Parameters: ``n_clusters`` k-means groups of the pool (ignored when ``coarse_labels`` gives each
    pool row's group); ``fine_clusters`` 0 for one level, else the k-means clusters each group is
    cut into for a second level; ``reward`` one of ``"certainty"``, ``"diversity"``, ``"loss"``,
    ``"all"``; ``alpha`` the bandit's step size per sample; ``pull_size`` rows per bandit step;
    ``diversity_window`` Δ, the number of recent answers whose mean the diversity reward compares
    with; ``reward_clip`` the bound on standardised rewards; ``n_components`` the PCA dimension the
    pool is clustered in. All randomness (clustering included) comes from the ``rng`` passed to
    :meth:`propose`; all run state lives in ``state.memo``.
    """

    n_clusters: int = 10
    coarse_labels: Any = None
    fine_clusters: int = 0
    reward: str = "all"
    alpha: float = 0.05
    pull_size: int = 32
    diversity_window: int = 256
    reward_clip: float = 3.0
    n_components: int = 32
    name: str = "knockoff_adaptive"

    def __post_init__(self) -> None:
        owner = "KnockoffAdaptive"
        ints = {
            "n_clusters": 2,
            "fine_clusters": 0,
            "pull_size": 1,
            "diversity_window": 1,
            "n_components": 1,
        }
        for key, low in ints.items():
            object.__setattr__(
                self, key, check_int(getattr(self, key), name=key, owner=owner, low=low)
            )
        for key in ("alpha", "reward_clip"):
            value = check_float(getattr(self, key), name=key, owner=owner, low=0, low_open=True)
            object.__setattr__(self, key, value)
        check_choice(self.reward, name="reward", owner=owner, choices=REWARDS)
        if self.coarse_labels is not None:
            labels = np.asarray(self.coarse_labels)
            if labels.ndim != 1 or labels.size == 0 or labels.dtype == object:
                raise InvalidParameterError(
                    f"The 'coarse_labels' parameter of {owner} must be a non-empty 1-d array "
                    f"giving each pool row's group. Got an array of shape {labels.shape} instead."
                )
            _, codes = np.unique(labels, return_inverse=True)
            object.__setattr__(self, "coarse_labels", codes.reshape(-1).astype(np.int64))

    def max_queries(self, state: AttackState) -> int:
        """Each pool row is asked at most once."""
        return len(state.pool)

    # run state ------------------------------------------------------------------------------

    def _run(self, state: AttackState, rng: np.random.Generator) -> dict[str, Any]:
        run = state.memo.get(_MEMO)
        if run is not None:
            return run
        n = len(state.pool)
        if self.coarse_labels is not None:
            if len(self.coarse_labels) != n:
                raise InvalidParameterError(
                    f"KnockoffAdaptive: coarse_labels gives {len(self.coarse_labels)} groups but "
                    f"the pool has {n} rows. Give one group per pool row, in pool order."
                )
            groups = self.coarse_labels
        else:
            if n < self.n_clusters:
                raise InvalidParameterError(
                    f"KnockoffAdaptive: the pool has {n} rows, fewer than n_clusters="
                    f"{self.n_clusters}. Give a larger pool or fewer clusters."
                )
            groups = _groups(state.pool, self.n_clusters, self.n_components, rng)
        parent = np.arange(int(groups.max()) + 1)
        if self.fine_clusters:
            groups, parent = _split_groups(
                state.pool, groups, self.fine_clusters, self.n_components, rng
            )
        k = len(parent)
        run = {
            "groups": groups,  # the leaf (cluster) of each pool row
            "parent": parent,  # the top-level group of each leaf
            "group_sizes": np.bincount(groups, minlength=k),
            "H": np.zeros(int(parent.max()) + 1),  # preferences among the top-level groups
            "H_leaf": np.zeros(k),  # preferences of each leaf among its group's leaves
            "baseline": 0.0,  # r̄, the running mean of the (standardised, clipped) rewards
            "n_rewarded": 0,
            "scales": {r: RunningStandardizer() for r in REWARDS[:3]},
            "pending": None,
            "policy": [],  # π before each pull
            "actions": [],  # groups drawn, one array per pull
            "rewards": [],  # mean raw reward components per rewarded pull
        }
        state.memo[_MEMO] = run
        return run

    # rewards --------------------------------------------------------------------------------

    def _learn(self, run: dict[str, Any], state: AttackState) -> None:
        """Reward the pending pull if its answers have arrived, and update H."""
        pending, run["pending"] = run["pending"], None
        if pending is None:
            return
        start, actions = pending["start"], pending["actions"]
        if state.n_queried != start + len(actions):
            return  # not (or not exactly) queried by extract: nothing to learn from
        y = _tail(state.responses, len(actions))
        parts = {}
        wanted = REWARDS[:3] if self.reward == "all" else (self.reward,)
        if "certainty" in wanted:
            parts["certainty"] = certainty_reward(y)
        if "diversity" in wanted:
            both = _tail(state.responses, len(y) + self.diversity_window)
            before = both[: len(both) - len(y)]
            ref = before.mean(axis=0) if len(before) else y.mean(axis=0)
            parts["diversity"] = diversity_reward(y, ref)
        if "loss" in wanted and state.substitute is not None:
            parts["loss"] = loss_reward(state.substitute, _tail(state.queried_x, len(y)), y)
        run["rewards"].append({key: float(v.mean()) for key, v in parts.items()})
        if not parts:
            return
        r = sum(run["scales"][key].standardize(v) for key, v in parts.items())
        r = np.clip(r, -self.reward_clip, self.reward_clip)
        advantage = r - run["baseline"]
        run["n_rewarded"] += len(r)
        run["baseline"] += float((r - run["baseline"]).sum()) / run["n_rewarded"]
        parent = run["parent"]
        top = parent[actions]
        run["H"] = bandit_update(run["H"], top, advantage, pending["pi_top"], alpha=self.alpha)
        if len(parent) > len(run["H"]):  # the second level: each group's bandit, its rows only
            h_leaf = run["H_leaf"]
            for g in np.unique(top):
                leaves = np.flatnonzero(parent == g)
                rows = top == g
                local = np.searchsorted(leaves, actions[rows])
                h_leaf[leaves] = bandit_update(
                    h_leaf[leaves],
                    local,
                    advantage[rows],
                    pending["pi_leaf"][leaves],
                    alpha=self.alpha,
                )

    # proposing ------------------------------------------------------------------------------

    def propose(self, state: AttackState, n: int, rng: np.random.Generator) -> Proposal:
        n = check_int(n, name="n", owner="KnockoffAdaptive.propose", low=1)
        unused = state.unused
        if n > len(unused):
            raise InvalidParameterError(
                f"The attacker pool has {len(unused)} unused rows but {n} queries were asked "
                f"for (pool size {len(state.pool)}). Lower the budget or give a larger pool."
            )
        run = self._run(state, rng)
        self._learn(run, state)
        groups = run["groups"]
        left = np.bincount(groups[unused], minlength=len(run["parent"]))
        pi, pi_top, pi_leaf = _leaf_policy(run, left)
        # Every pull of this call is drawn from the same π: no answer arrives in between.
        picked, actions = [], []
        for size in _chunks(n, self.pull_size):
            a = _draw_groups(pi, left, size, rng)
            actions.append(a)
            left -= np.bincount(a, minlength=len(left))
        actions = np.concatenate(actions)
        free = ~state.used
        for g in np.unique(actions):
            members = np.flatnonzero(free & (groups == g))
            count = int((actions == g).sum())
            picked.append(rng.choice(members, size=count, replace=False))
        order = np.argsort(actions, kind="stable")
        rows = np.empty(n, dtype=np.int64)
        rows[order] = np.concatenate(picked)
        run["pending"] = {
            "start": state.n_queried,
            "actions": actions,
            "pi_top": pi_top,
            "pi_leaf": pi_leaf,
        }
        run["policy"].append(pi)
        run["actions"].append(actions)
        return Proposal(x=state.pool[rows], pool_index=rows)


def _leaf_policy(
    run: dict[str, Any], left: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(π over the leaves, π_top over the groups, each leaf's π within its group), over the
    leaves and groups that still have unused rows: π(leaf) = π_top(group) · π_group(leaf)."""
    parent = run["parent"]
    n_groups = len(run["H"])
    alive = np.bincount(parent, weights=left, minlength=n_groups) > 0
    pi_top = policy(run["H"], alive)
    pi_leaf = np.zeros(len(parent))
    if len(parent) == n_groups:  # one level: each group is its own single leaf
        pi_leaf[:] = 1.0
    else:
        for g in np.flatnonzero(alive):
            leaves = np.flatnonzero(parent == g)
            pi_leaf[leaves] = policy(run["H_leaf"][leaves], left[leaves] > 0)
    return pi_top[parent] * pi_leaf, pi_top, pi_leaf


def _split_groups(
    pool: np.ndarray, groups: np.ndarray, k: int, n_components: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Cut each group into up to ``k`` k-means clusters: (the leaf of each row, each leaf's group).

    Groups with at most ``k`` rows stay whole."""
    leaf = np.empty(len(groups), dtype=np.int64)
    parent = []
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        sub = (
            _groups(pool[rows], k, n_components, rng)
            if len(rows) > k
            else np.zeros(len(rows), dtype=np.int64)
        )
        _, sub = np.unique(sub, return_inverse=True)  # clusters numbered 0..m-1, none empty
        leaf[rows] = len(parent) + sub.reshape(-1)
        parent += [int(g)] * (int(sub.max()) + 1)
    return leaf, np.asarray(parent, dtype=np.int64)


def _chunks(n: int, size: int) -> list[int]:
    return [size] * (n // size) + ([n % size] if n % size else [])


def _draw_groups(
    pi: np.ndarray, left: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    """``size`` group draws from π, never more from a group than it has unused rows.

    Draws that land on an exhausted group are drawn again from π renormalised over the rest.
    """
    out = np.zeros(len(pi), dtype=np.int64)
    left = left.copy()
    p = np.where(left > 0, pi, 0.0)
    need = size
    while need > 0:
        if p.sum() <= 0:  # π put all its mass on exhausted groups: fall back to the rest
            p = (left > 0).astype(np.float64)
        counts = rng.multinomial(need, p / p.sum())
        take = np.minimum(counts, left)
        out += take
        left -= take
        need -= int(take.sum())
        p = np.where(left > 0, p, 0.0)
    return np.repeat(np.arange(len(pi)), out)[rng.permutation(size)]


def _tail(batches: list[np.ndarray], n: int) -> np.ndarray:
    """The last ``n`` rows of a list of batches, concatenated."""
    parts, have = [], 0
    for batch in reversed(batches):
        if have >= n:
            break
        parts.append(batch)
        have += len(batch)
    if not parts:
        return np.zeros((0,))
    return np.concatenate(parts[::-1])[-n:]
