"""ModelGuard-S: Algorithm 1 by hand, its promises, and the same answer for the same prediction
across batches, restarts, float noise, threads and processes."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import cdist

from modelsteal.defenses.modelguard_s import ModelGuardS
from modelsteal.defenses.stores import (
    CentroidStore,
    CentroidStoreError,
    MemoryCentroidStore,
    SQLiteCentroidStore,
)
from modelsteal.errors import InvalidParameterError

B = [0.8, 0.1, 0.1]  # the three centroids of Figure 2, in order: blue, red, green
R = [0.34, 0.33, 0.33]
G = [0.5, 0.45, 0.05]
P = [0.6, 0.3, 0.1]  # the black point: within ε of blue, nearer to green once green exists


def _ask(defense: ModelGuardS, *rows) -> np.ndarray:
    return defense.perturb(np.array(rows, dtype=np.float64))


def _rows(n: int, c: int, seed: int, alpha: float = 0.5) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.full(c, alpha), size=n)


# --------------------------------------------------------------------------------------------
# Algorithm 1 on hand cases
# --------------------------------------------------------------------------------------------


def test_first_centroid_within_epsilon_not_the_nearest():
    mg = ModelGuardS(epsilon=0.5)
    np.testing.assert_allclose(_ask(mg, [0.8, 0.1, 0.1]), [[0.8, 0.1, 0.1]])  # new centroid
    # 0.6 away from the first: a second centroid
    np.testing.assert_allclose(_ask(mg, [0.5, 0.3, 0.2]), [[0.5, 0.3, 0.2]])
    # 0.4 from the first, 0.2 from the second: the FIRST within ε wins
    np.testing.assert_allclose(_ask(mg, [0.6, 0.25, 0.15]), [[0.8, 0.1, 0.1]])
    assert mg.centroid_counts() == {0: 2}
    # another top class has its own list
    np.testing.assert_allclose(_ask(mg, [0.1, 0.8, 0.1]), [[0.1, 0.8, 0.1]])
    assert mg.centroid_counts() == {0: 2, 1: 1} and mg.n_centroids() == 3
    np.testing.assert_allclose(mg.centroids(0), [[0.8, 0.1, 0.1], [0.5, 0.3, 0.2]])


def test_non_ordered_variant_returns_the_nearest():
    mg = ModelGuardS(epsilon=0.5, ordered=False)
    _ask(mg, [0.8, 0.1, 0.1], [0.5, 0.3, 0.2])
    np.testing.assert_allclose(_ask(mg, [0.6, 0.25, 0.15]), [[0.5, 0.3, 0.2]])


def test_l2_norm_uses_euclidean_distance():
    mg = ModelGuardS(epsilon=0.3, norm="l2")
    assert mg.max_l1 is None
    _ask(mg, [0.8, 0.1, 0.1])
    # ℓ1 distance 0.4 > 0.3, ℓ2 distance ≈ 0.28 ≤ 0.3: matched under ℓ2
    np.testing.assert_allclose(_ask(mg, [0.6, 0.3, 0.1]), [[0.8, 0.1, 0.1]])


def test_figure_2_non_ordered_changes_its_answer_ordered_does_not():
    """Blue, red, black, green, black again (Tang et al., Figure 2)."""
    answers = {}
    for ordered in (True, False):
        mg = ModelGuardS(epsilon=0.5, ordered=ordered)
        first = _ask(mg, B, R, P)[2]
        _ask(mg, G)
        assert mg.centroid_counts() == {0: 3}  # green was > ε from blue and red: appended
        answers[ordered] = first, _ask(mg, P)[0]
    first, again = answers[True]
    np.testing.assert_allclose(first, B)
    np.testing.assert_array_equal(again, first)
    first, again = answers[False]
    np.testing.assert_allclose(first, B)
    np.testing.assert_allclose(again, G)  # the repeated query leaks: its answer moved


def test_m_qpi_repeats_change_non_ordered_answers_only():
    """A stream queried twice (2-QPI): some answers change without ordering, none with it."""
    ys = _rows(400, 4, seed=5, alpha=1.0)
    changed = {}
    for ordered in (True, False):
        mg = ModelGuardS(epsilon=0.4, ordered=ordered)
        first = np.concatenate([mg.perturb(ys[i : i + 50]) for i in range(0, 400, 50)])
        changed[ordered] = int((mg.perturb(ys) != first).any(axis=1).sum())
    assert changed[True] == 0 and changed[False] > 0


# --------------------------------------------------------------------------------------------
# Promises: simplex, argmax, ℓ1 ≤ ε
# --------------------------------------------------------------------------------------------


def _prob_rows(n: int, c: int):
    weights = arrays(np.float64, (n, c), elements=st.sampled_from([0.0, 1e-9, 0.01, 0.3, 1.0, 5.0]))
    return weights.map(lambda w: np.where(w.sum(axis=1, keepdims=True) > 0, w, 1.0)).map(
        lambda w: w / w.sum(axis=1, keepdims=True)
    )


def _check_promises(mg: ModelGuardS, y: np.ndarray, out: np.ndarray) -> None:
    assert out.shape == y.shape and np.all(out >= 0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(out.argmax(axis=1) == y.argmax(axis=1))  # ties included (first index)
    assert np.all(np.abs(out - y).sum(axis=1) <= mg.epsilon + 1e-12)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), epsilon=st.sampled_from([0.05, 0.3, 1.0, 2.0]))
def test_rows_stay_on_simplex_keep_argmax_and_l1_budget(data, epsilon):
    mg = ModelGuardS(epsilon=epsilon)
    for _ in range(2):
        y = data.draw(_prob_rows(data.draw(st.integers(1, 10)), 6))
        _check_promises(mg, y, mg.perturb(y))


def test_promises_on_a_stream_and_declared_flags():
    mg = ModelGuardS(epsilon=0.25)
    assert mg.stateful and mg.preserves_argmax and mg.max_l1 == 0.25
    for seed in range(4):
        y = _rows(128, 10, seed, alpha=0.3)
        _check_promises(mg, y, mg.perturb(y))


def test_rounding_ties_keep_the_argmax():
    mg = ModelGuardS(epsilon=0.5)
    y = np.array([[0.4999999999, 0.5000000001, 0.0], [0.5, 0.5, 0.0]])  # rounds to a tie
    out = mg.perturb(y)
    assert out.argmax(axis=1).tolist() == [1, 0]
    assert out[0, 1] > out[0, 0]


# --------------------------------------------------------------------------------------------
# The same clean prediction always gets the same answer
# --------------------------------------------------------------------------------------------


def test_same_answer_later_in_the_batch_and_in_later_batches():
    mg = ModelGuardS(epsilon=0.3)
    ys = _rows(60, 5, seed=1)
    batch = np.concatenate([ys, ys[::-1]])  # every row twice in one batch
    out = mg.perturb(batch)
    np.testing.assert_array_equal(out[:60], out[60:][::-1])
    for seed in range(2, 6):  # other queries add centroids in between
        mg.perturb(_rows(100, 5, seed))
        np.testing.assert_array_equal(mg.perturb(ys), out[:60])
    one_by_one = np.concatenate([mg.perturb(ys[i : i + 1]) for i in range(60)])
    np.testing.assert_array_equal(one_by_one, out[:60])


@pytest.mark.parametrize("synchronous", ["FULL", "normal"])
def test_same_answer_after_restart(tmp_path, synchronous):
    path = tmp_path / "centroids.sqlite"
    ys, others = _rows(80, 5, seed=1), _rows(200, 5, seed=2)
    store = SQLiteCentroidStore(path, synchronous=synchronous)
    mode = {"FULL": 2, "NORMAL": 1}[synchronous.upper()]
    with store.exclusive("probe"):  # the mode SQLite runs with, not only the one asked for
        assert store._connection().execute("PRAGMA synchronous").fetchone()[0] == mode
    mg = ModelGuardS(epsilon=0.3, store=store)
    before = mg.perturb(ys)
    mg.perturb(others)
    counts = mg.centroid_counts()
    store.close()
    again = ModelGuardS(epsilon=0.3, store=path)  # a new process would do the same
    assert again.centroid_counts() == counts
    np.testing.assert_array_equal(again.perturb(ys), before)
    assert again.centroid_counts() == counts  # nothing new was needed
    again.close()


def _answer_and_die(path: str, synchronous: str, out: str) -> None:
    """Answer rows with ModelGuard-S on ``path``, save the answers, exit without closing anything
    (as a killed process would: no Python clean-up, the SQLite connection left open)."""
    mg = ModelGuardS(epsilon=0.3, store=SQLiteCentroidStore(path, synchronous=synchronous))
    answers = mg.perturb(_rows(120, 5, seed=7))
    lists = {str(label): mg.centroids(label) for label in mg.centroid_counts()}
    np.savez(out, answers=answers, **lists)
    os._exit(0)


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_answers_survive_a_process_that_dies_without_closing(tmp_path, synchronous):
    path, out = str(tmp_path / "c.sqlite"), str(tmp_path / "answers.npz")
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_answer_and_die, args=(path, synchronous, out))
    child.start()
    child.join(timeout=120)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0
    saved = np.load(out)
    again = ModelGuardS(epsilon=0.3, store=path)
    # every centroid the dead process committed is in the file, in its order ...
    counts = {int(k): len(saved[k]) for k in saved.files if k != "answers"}
    assert again.centroid_counts() == counts and sum(counts.values()) > 10
    for label in counts:
        np.testing.assert_array_equal(again.centroids(label), saved[str(label)])
    # ... so the rows it answered get its answers, in another order, without a new centroid
    order = np.random.default_rng(8).permutation(120)
    np.testing.assert_array_equal(
        again.perturb(_rows(120, 5, seed=7)[order]), saved["answers"][order]
    )
    assert again.centroid_counts() == counts
    again.close()


def _boundary_case(epsilon: float = 0.4):
    """A centroid and a row exactly on the matching sphere around it (the worst case for noise)."""
    mg = ModelGuardS(epsilon=epsilon)
    c0 = np.array([0.7, 0.2, 0.1])
    s = mg._geometry(3).radius / 2  # move mass s from class 0 to class 1: ℓ1 distance 2s
    return mg, c0, c0 + np.array([-s, s, 0.0])


def _noisy(y: np.ndarray, scale: float, n: int, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).uniform(-scale, scale, size=(n, len(y)))
    rows = np.clip(y + noise, 0, None)
    return rows / rows.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("scale", [1e-9, 1e-8, 1e-7])
def test_float_noise_never_changes_the_answer(scale):
    mg, c0, edge = _boundary_case()
    mg.perturb(c0[None])
    copies = _noisy(edge, scale, 200, seed=0)
    first = mg.perturb(edge[None])[0]
    for i in range(0, 200, 40):  # batched ...
        np.testing.assert_array_equal(mg.perturb(copies[i : i + 40]), np.tile(first, (40, 1)))
    for row in copies[:20]:  # ... and one at a time
        np.testing.assert_array_equal(mg.perturb(row[None])[0], first)
    assert mg.n_pins() >= 1
    # random predictions with noise, too, after unrelated centroids were added
    ys = _rows(200, 3, seed=3)
    answers = mg.perturb(ys)
    mg.perturb(_rows(200, 3, seed=4))
    for seed in range(3):
        np.testing.assert_array_equal(mg.perturb(_noisy_rows(ys, scale, seed)), answers)


def _noisy_rows(ys: np.ndarray, scale: float, seed: int) -> np.ndarray:
    rows = ys + np.random.default_rng(seed).uniform(-scale, scale, size=ys.shape)
    rows = np.clip(rows, 0, None)
    return rows / rows.sum(axis=1, keepdims=True)


def test_first_noisy_copy_decides_for_all_later_ones():
    mg, c0, edge = _boundary_case()
    mg.perturb(c0[None])
    copies = _noisy(edge, 1e-7, 100, seed=1)
    first = mg.perturb(copies[:1])[0]
    np.testing.assert_array_equal(mg.perturb(copies), np.tile(first, (100, 1)))
    np.testing.assert_array_equal(mg.perturb(edge[None])[0], first)


def test_rounding_alone_is_not_enough():
    """Without a noise tolerance, rows on a decision boundary flip with noise of 1e-7."""
    mg = ModelGuardS(epsilon=0.4, tolerance=0.0)
    c0 = np.array([0.7, 0.2, 0.1])
    s = mg._geometry(3).radius / 2
    mg.perturb(c0[None])
    out = mg.perturb(_noisy(c0 + np.array([-s, s, 0.0]), 1e-7, 100, seed=0))
    assert len(np.unique(out, axis=0)) > 1


# --------------------------------------------------------------------------------------------
# Concurrency: threads and processes on one SQLite file
# --------------------------------------------------------------------------------------------

C_CONC, EPS_CONC = 5, 0.3


def _stream(seed: int) -> list[np.ndarray]:
    """Every distinct vector three times, in a worker-specific order, in batches of 1 to 16."""
    vectors = _rows(150, C_CONC, seed=100, alpha=0.6)
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.tile(np.arange(len(vectors)), 3))
    cuts = np.cumsum(rng.integers(1, 17, size=len(order)))
    return [order[a:b] for a, b in zip(np.r_[0, cuts], cuts, strict=False) if a < len(order)]


def _answer_stream(defense: ModelGuardS, seed: int) -> dict[int, set[bytes]]:
    vectors = _rows(150, C_CONC, seed=100, alpha=0.6)
    seen: dict[int, set[bytes]] = {}
    for idx in _stream(seed):
        for i, row in zip(idx, defense.perturb(vectors[idx]), strict=True):
            seen.setdefault(int(i), set()).add(row.tobytes())
    return seen


_START: threading.Barrier | None = None  # set in each worker process: all start together


def _init_worker(barrier) -> None:
    global _START
    _START = barrier


def _process_worker(args: tuple[str, int]) -> dict[int, set[bytes]]:
    path, seed = args
    defense = ModelGuardS(epsilon=EPS_CONC, store=path)
    if _START is not None:
        _START.wait(timeout=60)
    try:
        return _answer_stream(defense, seed)
    finally:
        defense.close()


def _merge(results) -> dict[int, set[bytes]]:
    merged: dict[int, set[bytes]] = {}
    for seen in results:
        for i, answers in seen.items():
            merged.setdefault(i, set()).update(answers)
    return merged


def _assert_one_valid_answer_each(defense: ModelGuardS, merged: dict[int, set[bytes]]) -> None:
    vectors = _rows(150, C_CONC, seed=100, alpha=0.6)
    assert sorted(merged) == list(range(len(vectors)))
    assert all(len(a) == 1 for a in merged.values()), "a vector got two different answers"
    answers = np.stack([np.frombuffer(next(iter(merged[i]))) for i in range(len(vectors))])
    # the stored lists are an ordered quantization: each centroid is farther than the radius
    # from every earlier one, and each answer is the first centroid within the radius
    radius = defense._geometry(C_CONC).radius
    q, labels = defense._quantize(vectors)
    total = 0
    for label in np.unique(labels):
        cents = defense.centroids(int(label))
        total += len(cents)
        pair = cdist(cents, cents, "cityblock")
        assert np.all(pair[np.triu_indices(len(cents), 1)] > radius)
        assert np.all(cdist(cents, q).min(axis=1) == 0)  # every centroid is a queried row
        rows = np.flatnonzero(labels == label)
        within = cdist(q[rows], cents, "cityblock") <= radius
        np.testing.assert_allclose(answers[rows], cents[within.argmax(axis=1)], atol=1e-15)
    assert total == defense.n_centroids()


def test_eight_threads_on_one_sqlite_store(tmp_path):
    path = tmp_path / "shared.sqlite"
    shared = SQLiteCentroidStore(path)
    results: list[dict[int, set[bytes]]] = [{}] * 8
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(k: int) -> None:
        try:
            # half the threads share one store object (one connection, one cache), half open
            # their own connection as a separate process would
            store = shared if k % 2 else SQLiteCentroidStore(path)
            defense = ModelGuardS(epsilon=EPS_CONC, store=store)
            start.wait(timeout=60)
            results[k] = _answer_stream(defense, seed=k)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    _assert_one_valid_answer_each(ModelGuardS(epsilon=EPS_CONC, store=shared), _merge(results))


def test_threads_on_a_memory_store():
    store = MemoryCentroidStore()
    results: list[dict[int, set[bytes]]] = [{}] * 8
    start = threading.Barrier(8)

    def work(k: int) -> None:
        defense = ModelGuardS(epsilon=EPS_CONC, store=store)
        start.wait(timeout=60)
        results[k] = _answer_stream(defense, seed=k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _assert_one_valid_answer_each(ModelGuardS(epsilon=EPS_CONC, store=store), _merge(results))


def test_three_processes_on_one_sqlite_file(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3, initializer=_init_worker, initargs=(ctx.Barrier(3),)) as pool:
        results = pool.map(_process_worker, [(path, seed) for seed in (11, 12, 13)])
    merged = _merge(results)
    # this process, too, reads the same answers back
    mg = ModelGuardS(epsilon=EPS_CONC, store=path)
    merged = _merge([merged, _answer_stream(mg, seed=14)])
    _assert_one_valid_answer_each(mg, merged)
    mg.close()


# --------------------------------------------------------------------------------------------
# Stores
# --------------------------------------------------------------------------------------------


def test_one_file_keeps_configurations_apart(tmp_path):
    path = tmp_path / "many.sqlite"
    ys = _rows(100, 4, seed=0)
    a = ModelGuardS(epsilon=0.5, store=path)
    a.perturb(ys)
    for other in (
        ModelGuardS(epsilon=0.2, store=path),
        ModelGuardS(epsilon=0.5, norm="l2", store=path),
        ModelGuardS(epsilon=0.5, precision=6, store=path),
        ModelGuardS(epsilon=0.5, ordered=False, store=path),
    ):
        assert other.namespace != a.namespace and other.n_centroids() == 0
        other.perturb(ys)
        other.close()
    assert ModelGuardS(epsilon=0.5, store=path).centroid_counts() == a.centroid_counts()
    a.close()


def test_a_namespace_serves_one_number_of_classes(tmp_path):
    mg = ModelGuardS(epsilon=0.5, store=tmp_path / "s.sqlite")
    mg.perturb(_rows(10, 3, seed=0))
    with pytest.raises(CentroidStoreError, match="predictions have 4 classes"):
        mg.perturb(np.array([[0.7, 0.1, 0.1, 0.1]]))
    mg.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_failed_decision_leaves_no_trace(tmp_path, kind):
    store = MemoryCentroidStore() if kind == "memory" else SQLiteCentroidStore(tmp_path / "s.db")
    assert isinstance(store, CentroidStore)
    store.open_namespace("ns", {"test": 1})
    with pytest.raises(RuntimeError, match="boom"), store.exclusive("ns") as writer:
        assert writer.append_centroid(0, np.array([0.9, 0.1])) == 0
        writer.add_pin(0, np.array([0.9, 0.1]), 0)
        raise RuntimeError("boom")
    assert store.counts("ns") == {} and store.n_pins("ns") == 0
    with store.exclusive("ns") as writer:
        assert writer.append_centroid(0, np.array([0.8, 0.2])) == 0
        assert writer.append_centroid(0, np.array([0.6, 0.4])) == 1
    assert store.counts("ns") == {0: 2}
    np.testing.assert_array_equal(store.view("ns", 0).centroids, [[0.8, 0.2], [0.6, 0.4]])
    store.close()


def test_sqlite_store_keeps_vectors_bit_exact_and_pickles_as_its_path(tmp_path):
    store = SQLiteCentroidStore(tmp_path / "s.db")
    store.open_namespace("ns", {})
    vector = np.array([1 / 3, 1 / 7, 1 - 1 / 3 - 1 / 7])
    with store.exclusive("ns") as writer:
        writer.append_centroid(2, vector)
    clone = pickle.loads(pickle.dumps(store))
    assert clone.path == store.path
    normal = SQLiteCentroidStore(store.path, synchronous="NORMAL")
    assert pickle.loads(pickle.dumps(normal)).synchronous == "NORMAL"
    normal.close()
    assert clone.view("ns", 2).centroids[0].tobytes() == vector.tobytes()
    with pytest.raises(TypeError, match="cannot be copied or sent to another process"):
        pickle.dumps(MemoryCentroidStore())
    store.close()
    clone.close()


# --------------------------------------------------------------------------------------------
# Shortcuts: the memo of answers, the single-row lookup, the grid of long class lists
# --------------------------------------------------------------------------------------------


def _fresh_answers(path, rows: np.ndarray, *, single: bool, epsilon: float = 0.3) -> np.ndarray:
    """Answers of a new defense on the same file (empty memo), one row per call or as a batch."""
    mg = ModelGuardS(epsilon=epsilon, store=path)
    try:
        if single:
            return np.concatenate([mg.perturb(rows[i : i + 1]) for i in range(len(rows))])
        return mg.perturb(rows)
    finally:
        mg.close()


def test_memo_and_single_row_lookups_answer_as_the_batch_path(tmp_path):
    path = tmp_path / "s.sqlite"
    mg = ModelGuardS(epsilon=0.3, store=path)
    ys = _rows(200, 6, seed=1)
    first = mg.perturb(ys)  # decides and remembers
    mg.perturb(_rows(300, 6, seed=2))  # other centroids appended after them
    again = mg.perturb(ys)  # from the memo
    np.testing.assert_array_equal(again, first)
    ones = np.concatenate([mg.perturb(ys[i : i + 1]) for i in range(len(ys))])
    np.testing.assert_array_equal(ones, first)
    # a new defense on the file (no memo): single-row lookups and the batch path agree
    np.testing.assert_array_equal(_fresh_answers(path, ys, single=True), first)
    np.testing.assert_array_equal(_fresh_answers(path, ys, single=False), first)
    # answers handed out are the caller's: changing them changes nothing remembered
    again[:] = 0.0
    np.testing.assert_array_equal(mg.perturb(ys), first)
    mg.close()


def test_first_pin_is_the_earliest_within_the_radius_in_max_norm():
    from modelsteal.defenses import _scan

    rng = np.random.default_rng(21)
    pins = rng.random((40, 6))
    ranks = rng.permutation(1000)[:40].astype(np.int64)
    qs = np.vstack([pins[[3, 17, 17]] + rng.uniform(-0.05, 0.05, (3, 6)), rng.random((30, 6))])
    qs[2] = pins[17] + np.array([0.1, -0.1, 0.0, 0.05, 0.1, -0.02])  # exactly on the radius
    for radius in (0.1, 0.3, 0.6):
        hit = cdist(qs, pins, "chebyshev") <= radius
        expected = np.where(hit.any(axis=1), ranks[hit.argmax(axis=1)], -1)
        np.testing.assert_array_equal(_scan.first_pin(qs, pins, ranks, radius), expected)
    assert _scan.first_pin(qs[2:3], pins, ranks, 0.1)[0] == ranks[17]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_rows_sent_one_at_a_time_decide_as_one_batch(tmp_path, kind):
    # new rows, rows near earlier ones and rows on the matching sphere (pins), 3 classes
    _, c0, edge = _boundary_case()
    ys = np.vstack([c0, edge, _noisy(edge, 1e-9, 5, seed=3), _rows(300, 3, seed=12, alpha=0.4)])
    ys = np.vstack([ys, _noisy_rows(ys[::7], 1e-9, seed=13)])
    stores = [tmp_path / f"{k}.sqlite" for k in "ab"] if kind == "sqlite" else [None, None]
    batch, single = (ModelGuardS(epsilon=0.4, store=s) for s in stores)
    together = batch.perturb(ys)
    one_by_one = np.concatenate([single.perturb(ys[i : i + 1]) for i in range(len(ys))])
    np.testing.assert_array_equal(one_by_one, together)
    assert single.centroid_counts() == batch.centroid_counts()
    for label in batch.centroid_counts():
        np.testing.assert_array_equal(single.centroids(label), batch.centroids(label))
    assert single.n_pins() == batch.n_pins() >= 1
    for mg in (batch, single):
        mg.close()


def test_single_row_lookups_keep_the_noise_promise():
    mg, c0, edge = _boundary_case()
    mg.perturb(c0[None])
    first = mg.perturb(edge[None])[0]
    assert mg.n_pins() >= 1
    for row in _noisy(edge, 1e-7, 40, seed=2):
        mg._memo.clear()  # the single-row lookup, not the memo, must find the pin
        np.testing.assert_array_equal(mg.perturb(row[None])[0], first)


def test_memo_is_bounded_and_only_for_the_ordered_variant(monkeypatch):
    from modelsteal.defenses import modelguard_s as ms

    monkeypatch.setattr(ms, "_MEMO_SIZE", 50)
    mg = ModelGuardS(epsilon=0.3)
    ys = _rows(120, 4, seed=3)
    first = mg.perturb(ys)
    assert list(mg._memo) == [row.tobytes() for row in ys[70:]]  # the oldest are forgotten
    np.testing.assert_array_equal(mg.perturb(ys), first)
    np.testing.assert_array_equal(mg.perturb(ys[:10]), first[:10])
    assert ModelGuardS(epsilon=0.3, ordered=False)._memo is None


def test_memo_does_not_bypass_the_checks():
    mg = ModelGuardS(epsilon=0.3)
    ys = _rows(20, 4, seed=4)
    answers = mg.perturb(ys)
    with pytest.raises(Exception, match="sums to 0.7"):
        mg.perturb(np.vstack([ys[:3], [[0.4, 0.1, 0.1, 0.1]]]))
    with pytest.raises(Exception, match="predictions have 5 classes"):
        mg.perturb(np.array([[0.6, 0.1, 0.1, 0.1, 0.1]]))
    # a row off the simplex by rounding is renormalised, then answered as the clean row
    off = ys[:1] * (1 + 1e-9)
    np.testing.assert_array_equal(mg.perturb(off), answers[:1])
    np.testing.assert_array_equal(mg.perturb(ys.astype(np.float32)[:2]).shape, (2, 4))


def test_threads_sharing_one_defense():
    mg = ModelGuardS(epsilon=EPS_CONC)
    results: list[dict[int, set[bytes]]] = [{}] * 8
    start = threading.Barrier(8)

    def work(k: int) -> None:
        start.wait(timeout=60)
        results[k] = _answer_stream(mg, seed=k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _assert_one_valid_answer_each(mg, _merge(results))


@pytest.mark.parametrize(("norm", "epsilon"), [("l1", 0.05), ("l1", 0.3), ("l2", 0.1)])
def test_grid_lookup_decides_as_the_full_scan(norm, epsilon):
    from modelsteal.defenses import modelguard_s as ms

    mg = ModelGuardS(epsilon=epsilon, norm=norm)
    rng = np.random.default_rng(5)
    c = 8
    geo = mg._geometry(c)
    cents, _ = mg._quantize(_rows(3000, c, seed=6, alpha=0.3))
    grid = ms._Grid(cents[:2500], geo.radius + geo.band, mg._metric)  # 500 appended after
    # built on 1,800, then 700 merged in (same pivots): the same decisions
    merged = ms._Grid(cents[:1800], geo.radius + geo.band, mg._metric).extended(cents[:2500])
    assert merged.size == 2500 and np.all(np.diff(merged.keys) >= 0)
    assert sorted(merged.ranks.tolist()) == list(range(2500))
    queries = list(mg._quantize(_rows(300, c, seed=7, alpha=0.3))[0])
    for i in rng.choice(len(cents), 400):  # on and around the spheres that decide
        step = rng.normal(size=c)
        step -= step.mean()
        step /= np.abs(step).sum() if norm == "l1" else np.linalg.norm(step)
        queries.append(cents[i] + step * (geo.radius + rng.uniform(-2, 2) * geo.band))
        queries.append(cents[i] + rng.normal(0, epsilon / 4, size=c))
    kinds = set()
    for q in queries:
        q = np.clip(q, 0, None) / np.clip(q, 0, None).sum()
        rank, fragile = ms._first_within(q[None], cents, geo, mg._metric)
        expected = (int(rank[0]), bool(fragile[0]))
        assert grid.first_within(q, cents, geo) == expected
        assert merged.first_within(q, cents, geo) == expected
        assert _reference_first_within(q, cents, geo, mg._metric) == expected
        kinds.add((expected[0] >= 0, expected[1]))
    qs = np.clip(np.array(queries), 0, None)
    qs /= qs.sum(axis=1, keepdims=True)
    ref_rank, ref_fragile = ms._first_within(qs, cents, geo, mg._metric)
    for g in (grid, merged):
        rank, fragile = g.first_within_rows(qs, cents, geo)
        np.testing.assert_array_equal(rank, ref_rank)
        np.testing.assert_array_equal(fragile, ref_fragile)
    assert {(True, True), (True, False)} <= kinds  # fragile and clear matches both occur


def _reference_first_within(q, cents, geo, metric) -> tuple[int, bool]:
    """The ordered scan's decision from every distance (scipy), written out plainly."""
    from scipy.spatial.distance import cdist

    d = cdist(q[None], cents, metric)[0]
    fragile = False
    for rank, dist in enumerate(d):
        if dist <= geo.radius + geo.band:
            if dist > geo.radius - geo.band:
                fragile = True
            if dist <= geo.radius:
                return rank, fragile
    return -1, fragile


def test_long_class_lists_grid_lookups_answer_as_the_full_scan(tmp_path, monkeypatch):
    from modelsteal.defenses import modelguard_s as ms

    path = tmp_path / "long.sqlite"
    mg = ModelGuardS(epsilon=0.05, store=path)
    ys = _rows(2500, 6, seed=8, alpha=0.3)
    first = mg.perturb(ys)
    assert min(mg.centroid_counts().values()) >= 200
    probe = np.vstack([ys[::25], _noisy_rows(ys[::25], 1e-9, seed=9), _rows(100, 6, seed=11)])
    monkeypatch.setattr(ms, "_GRID_FROM", 10**9)  # the full scan, for reference
    expected = _fresh_answers(path, probe, single=False, epsilon=0.05)
    np.testing.assert_array_equal(expected[: len(ys[::25])], first[::25])
    monkeypatch.setattr(ms, "_GRID_FROM", 200)  # the grid, for single rows and batches
    monkeypatch.setattr(ms, "_GRID_BATCH_FROM", 0)
    monkeypatch.setattr(ms, "_GRID_KEEPS", 1.0)  # used however little it prunes
    fresh = ModelGuardS(epsilon=0.05, store=path)
    np.testing.assert_array_equal(fresh.perturb(probe[:150]), expected[:150])
    single = np.concatenate([fresh.perturb(probe[i : i + 1]) for i in range(len(probe))])
    np.testing.assert_array_equal(single, expected)
    assert fresh._grids and all(g.useful for g in fresh._grids.values())  # the grid was used
    mg.perturb(_rows(60, 6, seed=10, alpha=0.3))  # appended after the grids were built
    fresh.centroid_counts()  # (this reads them into its cache)
    fresh._memo.clear()
    single = np.concatenate([fresh.perturb(probe[i : i + 1]) for i in range(150)])
    np.testing.assert_array_equal(single, expected[:150])
    fresh._memo.clear()
    np.testing.assert_array_equal(fresh.perturb(probe[:150]), expected[:150])
    fresh.close()
    mg.close()


# --------------------------------------------------------------------------------------------
# Parameter errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (
            {"epsilon": 0},
            r"The 'epsilon' parameter of ModelGuardS must be a float in \(0, 2\]. Got 0(\.0)? inst",
        ),
        ({"epsilon": 2.5}, r"'epsilon' parameter of ModelGuardS must be a float in \(0, 2\]"),
        ({"norm": "l3"}, r"'norm' parameter of ModelGuardS must be one of 'l1', 'l2'. Got 'l3'"),
        ({"ordered": 1}, r"'ordered' parameter of ModelGuardS must be a bool. Got 1 instead"),
        ({"precision": 0}, r"'precision' parameter of ModelGuardS must be an int in \[1, 12\]"),
        ({"tolerance": -1e-6}, r"'tolerance' parameter of ModelGuardS must be a float in \[0,"),
        ({"store": 3}, r"'store' parameter of ModelGuardS must be a CentroidStore, a path"),
    ],
)
def test_bad_parameters(params, match):
    with pytest.raises(InvalidParameterError, match=match):
        ModelGuardS(**params)


def test_epsilon_too_small_for_the_noise_tolerance():
    mg = ModelGuardS(epsilon=1e-5)
    with pytest.raises(InvalidParameterError, match=r"epsilon=1e-05 is too small for tolerance"):
        mg.perturb(np.array([[0.6, 0.4]]))


def test_sqlite_store_refuses_memory_databases():
    with pytest.raises(InvalidParameterError, match="needs a file"):
        SQLiteCentroidStore(":memory:")


def test_sqlite_store_synchronous_must_be_full_or_normal(tmp_path):
    with pytest.raises(
        InvalidParameterError,
        match=r"'synchronous' parameter of SQLiteCentroidStore must be one of 'FULL', 'NORMAL'.*"
        r"Got 'OFF' instead",
    ):
        SQLiteCentroidStore(tmp_path / "s.db", synchronous="OFF")
    assert not (tmp_path / "s.db").exists()  # refused before anything was created


def test_sqlite_store_refuses_a_file_that_cannot_use_wal(tmp_path, monkeypatch):
    import sqlite3

    from modelsteal.defenses.stores import CentroidStoreError

    connect = sqlite3.connect

    class NoWal:  # a connection on a file system where SQLite refuses WAL
        def __init__(self, *args, **kwargs):
            self._conn = connect(*args, **kwargs)

        def execute(self, sql, *args):
            if sql == "PRAGMA journal_mode=WAL":
                return self._conn.execute("PRAGMA journal_mode")  # stays 'delete'
            return self._conn.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self._conn, name)

    monkeypatch.setattr(sqlite3, "connect", NoWal)
    with pytest.raises(CentroidStoreError, match=r"WAL journal \(it stays in 'delete' mode\)"):
        SQLiteCentroidStore(tmp_path / "s.db")
