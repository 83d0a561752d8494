"""Decision-tree path finding (Tramèr et al., USENIX Security 2016, Algorithm 1).

https://arxiv.org/abs/1609.02943

The target reveals which leaf an input lands in (BigML returns a leaf's confidence, which acts as
a pseudo-identifier). Starting from a random input, the attack explores one leaf at a time: for
every continuous feature it line-searches the whole feature range with the other features fixed,
which finds the interval of the current leaf and one input in every neighbouring leaf along that
axis; for every categorical feature it tries each category (CATEGORY_SPLIT), which finds the set of
categories that keep the input in the leaf and one input per other leaf. Each leaf's region is the
product of those intervals and sets (a tree leaf is a box), so the recovered partition predicts
exactly like the target on every input of the domain.

Departures: the line search bisects on the float32 grid the targets compute on (or on the integers
for integer features), so thresholds are found exactly instead of to a precision ε (pass
``epsilon`` for the paper's behaviour); the midpoints of one line's pending intervals go out as one
batch. Only the bottom-up Algorithm 1 is implemented, not the top-down variant with incomplete
queries.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelsteal._checks import as_rng, check_choice, check_float
from modelsteal.attacks.exact._base import EXACT_ATTACKS, ExactResult, n_features, wrap_budget

# The Adult loader lives in the data package; re-exported here for existing callers.
from modelsteal.data import TabularData, load_adult  # noqa: F401
from modelsteal.errors import InvalidParameterError
from modelsteal.targets import BaseTarget, FunctionTarget, Target, one_hot

KINDS = ("continuous", "integer", "categorical")


class LeafTarget(BaseTarget):
    """A fitted scikit-learn decision tree that answers which leaf an input reaches.

    ``answer="leaf"`` (default): each row is one-hot over the tree's leaves (``n_classes`` is the
    number of leaves), an exact leaf identifier like BigML's; ``leaf_classes[j]`` is the class label
    the API returns with leaf ``j`` (public in every response, so the attack may read it).
    ``answer="confidence"``: rows are the leaf's class probabilities, a pseudo-identifier that two
    leaves with equal confidences share (the paper's caveat).
    """

    def __init__(self, tree: Any, *, answer: str = "leaf") -> None:
        inner = getattr(tree, "tree_", None)
        if inner is None or not hasattr(tree, "apply"):
            raise InvalidParameterError(
                "LeafTarget needs a fitted scikit-learn DecisionTreeClassifier. "
                f"Got {type(tree).__name__} instead (call fit(X, y) first)."
            )
        self.answer = check_choice(
            answer, name="answer", owner="LeafTarget", choices=("leaf", "confidence")
        )
        self.tree = tree
        self.input_shape = (int(tree.n_features_in_),)
        leaves = np.flatnonzero(inner.children_left == -1)
        self.n_leaves = len(leaves)
        self._slot = np.full(inner.node_count, -1, dtype=np.int64)
        self._slot[leaves] = np.arange(len(leaves))
        values = inner.value[leaves, 0, :]
        self.leaf_classes = values.argmax(axis=1)
        self.n_labels = len(tree.classes_)
        self.n_classes = self.n_leaves if self.answer == "leaf" else self.n_labels
        if self.n_classes < 2:
            raise InvalidParameterError(
                "LeafTarget needs a tree with at least 2 leaves (and 2 classes); this one has "
                f"{self.n_leaves} leaves."
            )

    def _predict(self, x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), -1)
        if self.answer == "confidence":
            return self.tree.predict_proba(flat)
        return one_hot(self._slot[self.tree.apply(flat)], self.n_leaves)

    def labels(self, x: np.ndarray) -> np.ndarray:
        """The tree's predicted class index (evaluation helper, not a query)."""
        return self.tree.predict(np.asarray(x, dtype=np.float32).reshape(len(x), -1)).astype(int)


def _next_up(a: float) -> float:
    return float(np.nextafter(np.float32(a), np.float32(np.inf)))


class _Explorer:
    """Runs Algorithm 1 against a budgeted oracle; keeps the leaves found."""

    def __init__(self, oracle, lo, hi, kinds, values, epsilon, shape) -> None:
        self.oracle = oracle
        self.lo, self.hi, self.kinds, self.values = lo, hi, kinds, values
        self.epsilon = epsilon
        self.shape = shape

    def ask(self, x: np.ndarray) -> list[bytes]:
        rows = self.oracle.query(x.reshape(len(x), *self.shape).astype(np.float32))
        self.last = rows
        return [np.round(r, 9).tobytes() for r in rows]

    def _mid(self, a: float, b: float, kind: str) -> float | None:
        """A grid point strictly between a and b, or None when they are adjacent."""
        if kind == "integer":
            m = np.floor((a + b) / 2)
            return None if m <= a else float(m)
        if self.epsilon is not None and b - a <= self.epsilon:
            return None
        m = float(np.float32((a + b) / 2))
        return None if m <= a or m >= b else m

    def line(self, x: np.ndarray, i: int, id_x: bytes, row_x: np.ndarray):
        """Segments (first, last, id, response row, point) along feature i through x."""
        kind = self.kinds[i]
        ends = np.array([self.lo[i], self.hi[i]])
        pts = np.repeat(x[None], 2, axis=0)
        pts[:, i] = ends
        ids = self.ask(pts)
        resp = {id_x: row_x, ids[0]: self.last[0], ids[1]: self.last[1]}
        known = {float(ends[0]): ids[0], float(ends[1]): ids[1]}
        known[float(x[i])] = id_x
        pending = [(float(ends[0]), float(ends[1]))]
        breaks: list[tuple[float, float]] = []
        while pending:
            mids, todo = [], []
            for a, b in pending:
                if known[a] == known[b]:
                    continue
                m = self._mid(a, b, kind)
                if m is None:
                    breaks.append((a, b))
                elif m in known:
                    todo.append((a, m, b))
                else:
                    mids.append(m)
                    todo.append((a, m, b))
            new = sorted({m for m in mids})
            if new:
                q = np.repeat(x[None], len(new), axis=0)
                q[:, i] = new
                got = self.ask(q)
                for m, g, r in zip(new, got, self.last, strict=True):
                    known[m] = g
                    resp.setdefault(g, r)
            pending = [p for a, m, b in todo for p in ((a, m), (m, b))]
        breaks.sort()
        firsts = [float(ends[0])] + [b for _, b in breaks]
        lasts = [a for a, _ in breaks] + [float(ends[1])]
        segs = []
        for f, l_ in zip(firsts, lasts, strict=True):
            sid = known[f]
            point = x.copy()
            point[i] = f
            segs.append((f, l_, sid, resp[sid], point))
        return segs

    def categories(self, x: np.ndarray, i: int):
        vals = np.asarray(self.values[i], dtype=np.float64)
        pts = np.repeat(x[None], len(vals), axis=0)
        pts[:, i] = vals
        ids = self.ask(pts)
        return vals, ids, self.last


@EXACT_ATTACKS.register("tree_path_finding")
def tree_path_finding(
    target: Target,
    *,
    seed: int | np.random.Generator,
    domain: Any,
    kinds: Sequence[str] | None = None,
    categories: dict[int, Sequence[float]] | None = None,
    epsilon: float | None = None,
    budget: int | None = None,
) -> ExactResult:
    """Extract a decision tree's partition with Tramèr's path-finding Algorithm 1.

    ``domain`` is the (low, high) range of every feature (the public feature ranges); ``kinds``
    says per feature ``"continuous"`` (default), ``"integer"`` or ``"categorical"``; a categorical
    feature's values are ``categories[i]`` (default: the integers in its range). ``epsilon=None``
    searches thresholds exactly on the float32 grid; a float stops each bisection at that width.
    ``budget`` defaults to 10,000,000 rows (the count is reported either way).

    The target answers leaf identifiers: a :class:`LeafTarget`, or any target whose response row
    is the same for exactly the inputs of one leaf. When it has ``leaf_classes`` (the label that
    comes with each leaf), the recovered model predicts those labels; otherwise it predicts the
    identifier's argmax.
    """
    owner = "tree_path_finding"
    d = n_features(target)
    from modelsteal.attacks.exact._base import check_domain

    lo, hi = check_domain(domain, d, owner=owner)
    kinds = tuple(["continuous"] * d if kinds is None else kinds)
    if len(kinds) != d:
        raise InvalidParameterError(
            f"The 'kinds' parameter of {owner} must name one kind per feature ({d}). "
            f"Got {len(kinds)} instead."
        )
    for k in kinds:
        check_choice(k, name="kinds", owner=owner, choices=KINDS)
    values: dict[int, np.ndarray] = {}
    for i, k in enumerate(kinds):
        if k == "categorical":
            given = (categories or {}).get(i)
            values[i] = (
                np.arange(np.ceil(lo[i]), np.floor(hi[i]) + 1)
                if given is None
                else np.asarray(given, dtype=np.float64)
            )
        elif k == "integer":
            lo[i], hi[i] = np.ceil(lo[i]), np.floor(hi[i])
        else:
            lo[i], hi[i] = float(np.float32(lo[i])), float(np.float32(hi[i]))
    if epsilon is not None:
        epsilon = check_float(epsilon, name="epsilon", owner=owner, low=0.0, low_open=True)
    leaf_classes = getattr(target, "leaf_classes", None)
    n_labels = int(getattr(target, "n_labels", target.n_classes))
    oracle = wrap_budget(target, budget, default=10_000_000, owner=owner)
    rng = as_rng(seed)
    ex = _Explorer(oracle, lo, hi, kinds, values, epsilon, tuple(target.input_shape))

    x0 = rng.uniform(lo, hi)
    for i, k in enumerate(kinds):
        if k == "integer":
            x0[i] = np.round(x0[i])
        elif k == "categorical":
            x0[i] = rng.choice(values[i])
    x0 = x0.astype(np.float32).astype(np.float64)
    (id0,) = ex.ask(x0[None])
    queue = deque([(x0, id0, ex.last[0])])
    seen = {id0}
    leaves: list[dict[str, Any]] = []
    while queue:
        x, lid, row = queue.popleft()
        lower, upper = lo.copy(), hi.copy()
        allowed: dict[int, np.ndarray] = {}
        for i, k in enumerate(kinds):
            if k == "categorical":
                vals, ids, rows = ex.categories(x, i)
                allowed[i] = np.array([g == lid for g in ids])
                for v, g, r in zip(vals, ids, rows, strict=True):
                    if g not in seen:
                        seen.add(g)
                        p = x.copy()
                        p[i] = v
                        queue.append((p, g, r))
                continue
            for first, last, sid, r, point in ex.line(x, i, lid, row):
                if sid == lid and first <= x[i] <= last:
                    lower[i], upper[i] = first, last
                elif sid not in seen:
                    seen.add(sid)
                    queue.append((point, sid, r))
        label = (
            int(leaf_classes[int(np.argmax(row))])
            if leaf_classes is not None
            else int(np.argmax(row))
        )
        leaves.append(
            {"lower": lower, "upper": upper, "allowed": allowed, "label": label, "point": x}
        )

    params = {
        "lower": np.array([lf["lower"] for lf in leaves]),
        "upper": np.array([lf["upper"] for lf in leaves]),
        "labels": np.array([lf["label"] for lf in leaves], dtype=np.int64),
        "allowed": {i: np.array([lf["allowed"][i] for lf in leaves]) for i in values},
        "category_values": values,
        "points": np.array([lf["point"] for lf in leaves]),
    }
    n_out = n_labels if leaf_classes is not None else target.n_classes
    model = FunctionTarget(
        _BoxPredictor(params, kinds, n_out),
        n_classes=n_out,
        input_shape=tuple(target.input_shape),
    )
    info = {"leaves_found": len(leaves)}
    if hasattr(target, "n_leaves"):
        info["leaves_total"] = int(target.n_leaves)
    return ExactResult(
        name=owner,
        params=params,
        model=model,
        queries=oracle.spent,
        budget=oracle.budget,
        info=info,
    )


class _BoxPredictor:
    """Predicts with the recovered partition: the label of the box an input falls in."""

    def __init__(self, params: dict[str, Any], kinds: Sequence[str], n_out: int) -> None:
        self.p = params
        self.kinds = tuple(kinds)
        self.n_out = n_out
        self.numeric = np.array([k != "categorical" for k in kinds])

    def leaf_index(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32).astype(np.float64).reshape(len(x), -1)
        out = np.full(len(x), -1, dtype=np.int64)
        lower, upper, num = self.p["lower"], self.p["upper"], self.numeric
        codes = {}
        for i, vals in self.p["category_values"].items():
            pos = np.searchsorted(vals, x[:, i])
            pos = np.clip(pos, 0, len(vals) - 1)
            codes[i] = np.where(vals[pos] == x[:, i], pos, -1)
        for j in range(len(lower)):
            inside = ((x[:, num] >= lower[j, num]) & (x[:, num] <= upper[j, num])).all(axis=1)
            for i, allowed in self.p["allowed"].items():
                c = codes[i]
                inside &= (c >= 0) & allowed[j][np.clip(c, 0, None)]
            out[(out < 0) & inside] = j
        return out

    def __call__(self, x: np.ndarray) -> np.ndarray:
        idx = self.leaf_index(x)
        labels = np.where(idx >= 0, self.p["labels"][np.clip(idx, 0, None)], 0)
        return one_hot(labels, self.n_out)
