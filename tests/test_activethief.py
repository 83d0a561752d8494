"""ActiveThief: selections pick only unlabelled rows, k-center is the greedy core-set, the recipe
stays inside its budget; the validation split is paid for and never trained on, early stopping
keeps the best epoch, warm start continues from the previous round."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import modelsteal.attacks.activethief as at
import modelsteal.attacks.training as training
from modelsteal._cli_common import parse_params
from modelsteal.attacks import AttackState, build_recipe, extract
from modelsteal.attacks.activethief import (
    SEEDINGS,
    SELECTIONS,
    ActiveThief,
    ActiveThiefTrainer,
    deepfool_distance,
    entropy_stop,
    kcenter_greedy,
    validation_size,
)
from modelsteal.attacks.recipes import activethief_pal_2020  # noqa: F401  (registers)
from modelsteal.attacks.training import SubstituteTrainer, train_early_stopped
from modelsteal.errors import InvalidParameterError
from modelsteal.models import TrainConfig, build_model, predict_proba, train_model
from modelsteal.targets import TorchTarget, budgeted

FAST = {"epochs": 2, "min_steps": 20}


@pytest.fixture(scope="module")
def setting(digits, digits_mlp):
    X, y = digits
    return TorchTarget(digits_mlp, input_shape=(64,)), X[800:1400], X[1400:], y[1400:]


@pytest.fixture(scope="module")
def weak_substitute(digits):
    """An untrained MLP: a substitute whose outputs vary over the pool."""
    return build_model("mlp", (64,), 10, seed=1, hidden=(16,))


def _state(pool, substitute=None, labelled=0):
    state = AttackState(pool=pool, n_classes=10, input_shape=(64,), domain=(0.0, 1.0))
    if labelled:
        state.used[:labelled] = True
        state.queried_x.append(pool[:labelled])
        state.responses.append(np.full((labelled, 10), 0.1))
    state.substitute = substitute
    return state


@pytest.mark.parametrize("seeding", SEEDINGS)
@pytest.mark.parametrize("selection", SELECTIONS)
def test_every_selection_picks_unlabelled_rows_once(selection, seeding, setting, weak_substitute):
    _, pool, _, _ = setting
    pool = pool[:150]
    strategy = ActiveThief(selection=selection, seeding=seeding, n_clusters=4)
    rng = np.random.default_rng(0)
    state = _state(pool)
    seen: set[int] = set()
    for step, n in enumerate([20, 20, 17, 30, 0, 63]):
        if step == 2:
            state.substitute = weak_substitute
        proposal = strategy.propose(state, n, rng)
        idx = proposal.pool_index
        assert len(idx) == n == len(proposal.x)
        assert len(set(idx.tolist())) == n
        assert not state.used[idx].any()
        assert seen.isdisjoint(idx.tolist())
        np.testing.assert_array_equal(proposal.x, pool[idx])
        seen.update(idx.tolist())
        state.used[idx] = True
        state.queried_x.append(proposal.x)
        state.responses.append(np.full((n, 10), 0.1))
    assert state.used.all()
    with pytest.raises(InvalidParameterError, match="0 unused rows but 1 queries"):
        strategy.propose(state, 1, rng)


def _brute_kcenter(points, centres, m):
    chosen: list[int] = []
    for _ in range(m):
        covered = np.concatenate([centres, points[chosen]]) if chosen else centres
        best, best_d = -1, -1.0
        for i, p in enumerate(points):
            if i in chosen:
                continue
            d = min(np.linalg.norm(p - c) for c in covered) if len(covered) else np.inf
            if d > best_d:
                best, best_d = i, d
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kcenter_matches_a_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    points = rng.dirichlet(np.ones(4), size=40)
    centres = rng.dirichlet(np.ones(4), size=5)
    assert kcenter_greedy(points, centres, 12).tolist() == _brute_kcenter(points, centres, 12)


def test_kcenter_selection_uses_labelled_outputs_as_centres(setting, weak_substitute):
    _, pool, _, _ = setting
    pool = pool[:80]
    state = _state(pool, weak_substitute, labelled=30)
    picked = ActiveThief(selection="kcenter").propose(state, 7, np.random.default_rng(0))
    probs = predict_proba(weak_substitute, pool)
    expected = 30 + np.array(_brute_kcenter(probs[30:], probs[:30], 7))
    assert picked.pool_index.tolist() == expected.tolist()


class FixedProbs:
    """Stands in for a substitute; predict_proba is patched to return hand-made rows."""


HAND = np.array(
    [
        [0.90, 0.05, 0.05],  # confident
        [0.40, 0.35, 0.25],  # least confident, high entropy, small margin
        [0.50, 0.495, 0.005],  # smallest margin
        [0.34, 0.33, 0.33],  # highest entropy, least confident
        [0.70, 0.20, 0.10],
    ]
)


@pytest.mark.parametrize(
    ("selection", "expected"),
    [("least_confidence", [3, 1]), ("margin", [2, 3]), ("entropy", [3, 1])],
)
def test_uncertainty_selections_pick_the_expected_rows(selection, expected, monkeypatch):
    import modelsteal.attacks.activethief as at

    pool = np.arange(5, dtype=np.float32)[:, None]
    monkeypatch.setattr(at, "predict_proba", lambda model, x, **_: HAND[x[:, 0].astype(int)])
    state = AttackState(pool=pool, n_classes=3, input_shape=(1,))
    state.substitute = FixedProbs()
    picked = ActiveThief(selection=selection).propose(state, 2, np.random.default_rng(0))
    assert picked.pool_index.tolist() == expected
    run = state.memo["activethief"]
    h = -(HAND[expected] * np.log(HAND[expected])).sum(axis=1).mean()
    assert run["batch_entropy"] == [pytest.approx(h)]
    assert run["queries"] == [0]


def test_uniform_balances_predicted_labels(monkeypatch):
    import modelsteal.attacks.activethief as at

    probs = np.eye(3)[[0] * 10 + [1] * 3 + [2] * 2] * 0.8 + 0.2 / 3
    monkeypatch.setattr(at, "predict_proba", lambda model, x, **_: probs[x[:, 0].astype(int)])
    state = AttackState(
        pool=np.arange(15, dtype=np.float32)[:, None], n_classes=3, input_shape=(1,)
    )
    state.substitute = FixedProbs()
    picked = ActiveThief(selection="uniform").propose(state, 6, np.random.default_rng(0))
    labels = probs[picked.pool_index].argmax(axis=1)
    assert np.bincount(labels, minlength=3).tolist() == [2, 2, 2]


@pytest.mark.parametrize(
    ("history", "alpha", "expected"),
    [
        ([], 0.1, False),
        ([1.0], 0.1, False),
        ([1.0, 0.5], 0.1, False),
        ([1.0, 0.5, 0.45], 0.05, True),
        ([1.0, 0.5, 0.45], 0.01, False),
        ([0.2, 0.3], 0.1, True),  # |Δ| is used: a rise counts too
    ],
)
def test_entropy_stop(history, alpha, expected):
    assert entropy_stop(history, alpha) is expected


def test_stop_at_is_recorded_when_the_rule_fires(monkeypatch):
    import modelsteal.attacks.activethief as at

    pool = np.arange(5, dtype=np.float32)[:, None]
    monkeypatch.setattr(at, "predict_proba", lambda model, x, **_: HAND[x[:, 0].astype(int)])
    state = AttackState(pool=pool, n_classes=3, input_shape=(1,))
    strategy = ActiveThief(selection="random", alpha=10.0)
    for _ in range(3):
        state.substitute = FixedProbs()  # a new substitute: a new round
        picked = strategy.propose(state, 1, np.random.default_rng(0))
        state.used[picked.pool_index] = True
        state.queried_x.append(picked.x)
    run = state.memo["activethief"]
    assert len(run["batch_entropy"]) == 3
    assert run["stop_at"] == 2


def test_dfal_distance_is_small_near_the_boundary(weak_substitute, setting):
    _, pool, _, _ = setting
    d = deepfool_distance(weak_substitute, pool[:40], domain=(0.0, 1.0))
    assert d.shape == (40,) and np.all(d >= 0) and np.isfinite(d).all()
    probs = predict_proba(weak_substitute, pool[:40])
    top2 = np.sort(probs, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    # rows the substitute is least sure about are nearer its boundary (rank correlation > 0)
    assert np.corrcoef(np.argsort(np.argsort(d)), np.argsort(np.argsort(margin)))[0, 1] > 0


@pytest.mark.parametrize("selection", ["entropy+kcenter", "dfal", "random"])
def test_selection_is_seeded(selection, setting, weak_substitute):
    _, pool, _, _ = setting
    runs = []
    for _ in range(2):
        state = _state(pool[:120], weak_substitute, labelled=20)
        strategy = ActiveThief(selection=selection)
        runs.append(strategy.propose(state, 15, np.random.default_rng(3)).pool_index.tolist())
    assert runs[0] == runs[1]


def test_rounds_follow_the_budget():
    assert ActiveThief().rounds(1) == [1]
    assert ActiveThief().rounds(100) == [10, 19, 28, 37, 46, 55, 64, 73, 82, 91, 100]
    assert ActiveThief(initial_seed=30, k=25).rounds(100) == [30, 55, 80, 100]
    assert ActiveThief(initial_seed=500).rounds(100) == [100]


@pytest.mark.parametrize("budget", [1, 37, 300])
def test_recipe_runs_on_digits_inside_its_budget(budget, setting):
    target, pool, X_test, y_test = setting
    recipe = build_recipe("activethief", selection="entropy+kcenter", **FAST)
    result = extract(target, recipe, pool=pool, budget=budget, seed=0, eval_x=X_test, eval_y=y_test)
    assert result.queries == len(result.queried_x) == budget
    assert len(np.unique(pool, axis=0)) == len(pool)  # so distinct rows mean distinct queries
    assert len(np.unique(result.queried_x, axis=0)) == budget
    if budget == 300:
        assert result.history[-1]["accuracy"] > 0.5
        assert len(result.info["activethief"]["batch_entropy"]) == 10


def test_the_stopping_rule_ends_the_run(setting):
    target, pool, X_test, y_test = setting
    # alpha = 10 exceeds any change of mean entropy (≤ log 10): the rule fires at the first check
    recipe = build_recipe("activethief", selection="entropy", alpha=10.0, **FAST)
    result = extract(
        target, recipe, pool=pool, budget=300, seed=0, schedule=[300], eval_x=X_test, eval_y=y_test
    )
    run = result.info["activethief"]
    assert run["stop_at"] == result.queries < 300
    assert "entropy rule" in result.info["stopped"]
    assert result.history[-1]["queries"] == result.queries
    assert len(result.queried_x) == result.queries


def test_recipe_is_deterministic(setting):
    target, pool, _, _ = setting
    recipe = build_recipe("activethief_pal_2020", selection="margin", seeding="cluster", **FAST)
    a = extract(target, recipe, pool=pool, budget=60, seed=4)
    b = extract(target, recipe, pool=pool, budget=60, seed=4)
    np.testing.assert_array_equal(a.queried_x, b.queried_x)


def test_errors():
    with pytest.raises(InvalidParameterError, match="'validation' parameter of ActiveThief"):
        ActiveThief(validation=1.5)
    with pytest.raises(InvalidParameterError, match="'validation' parameter of ActiveThief"):
        build_recipe("activethief", validation=-3)
    with pytest.raises(
        InvalidParameterError, match="validation split of ActiveThief \\(30 rows\\)"
    ):
        ActiveThief(initial_seed=30, validation=30).rounds(100)
    with pytest.raises(InvalidParameterError, match="at least 2 are needed"):
        ActiveThief(validation=0.2).rounds(15)
    with pytest.raises(InvalidParameterError, match="'warm_start' parameter.*Got 'yes'"):
        build_recipe("activethief", warm_start="yes")
    with pytest.raises(InvalidParameterError, match="'patience' parameter of ActiveThiefTrainer"):
        build_recipe("activethief", patience=0)
    with pytest.raises(InvalidParameterError, match="'selection' parameter.*'entropy\\+kcenter'"):
        ActiveThief(selection="bald")
    with pytest.raises(InvalidParameterError, match="'seeding' parameter.*'kmeans_input'"):
        build_recipe("activethief", seeding="coreset")
    with pytest.raises(InvalidParameterError, match="'k' parameter of ActiveThief"):
        ActiveThief(k=0)
    with pytest.raises(InvalidParameterError, match="'alpha' parameter of entropy_stop"):
        entropy_stop([1.0, 0.5], -1.0)


# validation split, early stopping, warm start --------------------------------------------------

VALIDATED = {**FAST, "initial_seed": 50, "k": 50, "validation": 0.2}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("validation", "seed_rows", "expected"),
    [
        (0, 100, 0),
        (0.0, 100, 0),
        (0.2, 100, 20),
        (0.2, 2, 1),
        (0.01, 10, 1),
        (0.99, 3, 2),
        (5, 20, 5),
    ],
)
def test_validation_size(validation, seed_rows, expected):
    assert validation_size(validation, seed_rows) == expected


def test_validation_is_the_first_round_point():
    assert ActiveThief(initial_seed=50, k=50, validation=0.2).rounds(200) == [10, 50, 100, 150, 200]
    assert ActiveThief(validation=7).rounds(100) == [7, 10, 19, 28, 37, 46, 55, 64, 73, 82, 91, 100]
    assert ActiveThief(initial_seed=50, k=50).rounds(200) == [50, 100, 150, 200]


@pytest.mark.parametrize("selection", ["entropy+kcenter", "dfal", "uniform", "random"])
def test_validation_rows_are_paid_for_and_never_trained_on_or_selected(
    selection, setting, monkeypatch
):
    target, pool, X_test, y_test = setting
    trained_on: list[np.ndarray] = []
    real = training.train_model

    def spy(model, X, y, **kwargs):
        trained_on.append(np.array(X))
        return real(model, X, y, **kwargs)

    monkeypatch.setattr(training, "train_model", spy)
    outer = budgeted(target, 200)  # counts every row that reaches the target
    recipe = build_recipe("activethief", selection=selection, **VALIDATED)
    result = extract(
        outer,
        recipe,
        pool=pool,
        budget=200,
        seed=0,
        schedule=[100, 200],
        eval_x=X_test,
        eval_y=y_test,
        eval_target=target.query(X_test),
    )
    run = result.info["activethief"]
    assert run["validation_rows"] == 10
    assert outer.spent == result.queries == len(result.queried_x) == 200
    assert [h["queries"] for h in result.history] == [100, 200]  # validation rows included
    assert len(np.unique(result.queried_x, axis=0)) == 200  # never asked twice
    held_out = {row.tobytes() for row in result.queried_x[:10]}
    assert [len(x) for x in trained_on] == [40, 90, 140, 190]
    for x in trained_on:
        assert held_out.isdisjoint(row.tobytes() for row in x)
    assert [(e["train_rows"], e["validation_rows"]) for e in run["training"]] == [
        (0, 10),
        (40, 10),
        (90, 10),
        (140, 10),
        (190, 10),
    ]
    assert all(0 <= e["best_epoch"] < e["epochs"] for e in run["training"][1:])


@pytest.mark.parametrize(("budget", "validation"), [(20, 0.2), (37, 0.5), (300, 0.2), (120, 5)])
def test_budget_is_never_exceeded_with_validation(budget, validation, setting):
    target, pool, _, _ = setting
    outer = budgeted(target, budget)
    recipe = build_recipe("activethief", selection="entropy+kcenter", validation=validation, **FAST)
    result = extract(outer, recipe, pool=pool, budget=budget, seed=1)
    assert outer.spent == result.queries == len(result.queried_x) == budget
    assert len(np.unique(result.queried_x, axis=0)) == budget
    assert result.info["activethief"]["validation_rows"] == recipe.rounds(budget)[0]


@pytest.mark.parametrize("warm_start", [False, True])
def test_warm_start_continues_from_the_previous_round(warm_start, setting, monkeypatch):
    target, pool, _, _ = setting
    starts: list[dict] = []
    finals: list[dict] = []
    real_train = training.train_model
    real_fit = ActiveThiefTrainer.fit

    def train_spy(model, X, y, **kwargs):
        starts.append(copy.deepcopy(model.state_dict()))
        return real_train(model, X, y, **kwargs)

    def fit_spy(self, X, Y, **kwargs):
        model = real_fit(self, X, Y, **kwargs)
        finals.append(copy.deepcopy(model.state_dict()))
        return model

    monkeypatch.setattr(training, "train_model", train_spy)
    monkeypatch.setattr(ActiveThiefTrainer, "fit", fit_spy)
    recipe = build_recipe(
        "activethief",
        selection="entropy",
        initial_seed=30,
        k=30,
        validation=6,
        warm_start=warm_start,
        **FAST,
    )
    result = extract(target, recipe, pool=pool, budget=90, seed=0)
    initial = build_model("mlp", (64,), 10, seed=0).state_dict()
    assert len(finals) == 4 and len(starts) == 3  # the validation round trains nothing
    assert _same(finals[0], initial)  # ... and returns the untrained initial model
    for r in range(3):  # round r starts from round r-1's kept (best-epoch) weights, or afresh
        assert _same(starts[r], finals[r] if warm_start else initial)
    assert not _same(finals[1], initial)
    assert _same(starts[2], initial) is not warm_start
    training_log = result.info["activethief"]["training"]
    assert [e["warm_start"] for e in training_log[1:]] == [warm_start] * 3


def test_early_stopping_restores_the_best_epoch(digits):
    X, y = digits
    x_val = X[1000:1080]
    y_val = np.random.default_rng(0).integers(0, 10, size=80)  # noisy: the last epoch is not best
    config = TrainConfig(epochs=12, lr=1e-2)

    def fresh():
        return build_model("mlp", (64,), 10, seed=0, hidden=(16,))

    model, report = train_early_stopped(
        fresh(), X[:300], y[:300], x_val=x_val, y_val=y_val, config=config, seed=0
    )
    scores = [(a, -loss) for a, loss in zip(report.agreement, report.loss, strict=True)]
    assert report.epochs == 12
    assert report.best_epoch == max(range(12), key=scores.__getitem__)  # the first best
    assert report.best_epoch < 11
    # the kept weights are exactly those of plain training stopped after the best epoch
    short = TrainConfig(epochs=report.best_epoch + 1, lr=1e-2)
    reference = train_model(fresh(), X[:300], y[:300], config=short, seed=0)
    assert _same(model.state_dict(), reference.state_dict())
    # patience: training ends once 2 epochs in a row did not beat the best so far
    _, stopped = train_early_stopped(
        fresh(), X[:300], y[:300], x_val=x_val, y_val=y_val, config=config, seed=0, patience=2
    )
    best = 0
    for epoch in range(1, 12):
        if scores[epoch] > scores[best]:
            best = epoch
        elif epoch - best >= 2:
            break
    assert stopped.epochs == epoch + 1 < 12
    assert stopped.best_epoch == best
    assert stopped.agreement == report.agreement[: stopped.epochs]


def test_the_trainer_outside_a_run_is_the_plain_trainer(digits):
    X, y = digits
    Y = np.eye(10)[y[:120]]
    plain = SubstituteTrainer(min_steps=20).fit(X[:120], Y, input_shape=(64,), n_classes=10, seed=3)
    ours = ActiveThiefTrainer(min_steps=20, warm_start=True).fit(
        X[:120], Y, input_shape=(64,), n_classes=10, seed=3
    )
    assert _same(plain.state_dict(), ours.state_dict())


def test_cli_params_reach_the_recipe():
    params = parse_params(["validation=0.2", "warm_start=true", "patience=3", "dfal_classes=4"])
    recipe = build_recipe("activethief", **params)
    assert recipe.strategy.validation == 0.2 and recipe.strategy.dfal_classes == 4
    assert recipe.trainer.warm_start is True and recipe.trainer.patience == 3
    assert isinstance(recipe.trainer, ActiveThiefTrainer)


# speed: one scoring per round, batched DeepFool ------------------------------------------------


@pytest.mark.parametrize("selection", ["entropy", "margin", "kcenter", "dfal"])
def test_a_round_in_several_calls_scores_the_pool_once(
    selection, setting, weak_substitute, monkeypatch
):
    _, pool, _, _ = setting
    pool = pool[:200]
    rows_scored: list[int] = []
    real = at.predict_proba

    def spy(model, x, **kwargs):
        rows_scored.append(len(x))
        return real(model, x, **kwargs)

    monkeypatch.setattr(at, "predict_proba", spy)
    strategy = ActiveThief(selection=selection)
    whole = strategy.propose(_state(pool, weak_substitute, 20), 30, np.random.default_rng(0))
    rows_scored.clear()
    state = _state(pool, weak_substitute, 20)
    picked: list[int] = []
    for _ in range(3):
        part = strategy.propose(state, 10, np.random.default_rng(0))
        picked += part.pool_index.tolist()
        state.used[part.pool_index] = True
        state.queried_x.append(part.x)
    assert picked == whole.pool_index.tolist()
    assert sum(rows_scored) <= len(pool)  # every pool row scored at most once in the round


def _deepfool_reference(model, row, *, max_iter=20, overshoot=0.02):
    """DeepFool on one row, every class, as in Moosavi-Dezfooli et al.'s Algorithm 2."""
    x0 = torch.from_numpy(row[None].astype(np.float32))
    with torch.no_grad():
        label = int(model(x0).argmax())
    r_tot = torch.zeros_like(x0)
    x_adv = x0.clone()
    for _ in range(max_iter):
        xa = x_adv.clone().requires_grad_(True)
        logits = model(xa)[0]
        if int(logits.argmax()) != label:
            break
        grads = [torch.autograd.grad(logits[j], xa, retain_graph=True)[0] for j in range(10)]
        best, best_ratio, best_w = None, np.inf, None
        for j in range(10):
            if j == label:
                continue
            w = (grads[j] - grads[label]).flatten()
            ratio = float((logits[j] - logits[label]).abs().detach() / w.norm().detach())
            if ratio < best_ratio:
                best, best_ratio, best_w = j, ratio, w
        assert best is not None
        r_tot = r_tot + ((best_ratio + 1e-4) / best_w.norm() * best_w).view_as(x0)
        x_adv = (x0 + (1 + overshoot) * r_tot).clamp(0.0, 1.0).detach()
    return float(((x_adv - x0) ** 2).sum())


def test_batched_deepfool_matches_a_one_row_reference(weak_substitute, setting):
    _, pool, _, _ = setting
    x = pool[:12]
    expected = [_deepfool_reference(weak_substitute, row) for row in x]
    for batch_size in (1024, 5):
        got = deepfool_distance(weak_substitute, x, domain=(0.0, 1.0), batch_size=batch_size)
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-7)
    every = deepfool_distance(weak_substitute, x, domain=(0.0, 1.0), classes=9)
    np.testing.assert_allclose(every, expected, rtol=1e-3, atol=1e-7)
    few = deepfool_distance(weak_substitute, x, domain=(0.0, 1.0), classes=2)
    assert np.isfinite(few).all() and (few >= 0).all()


def test_bounded_deepfool_finds_the_same_nearest_rows(weak_substitute, setting):
    _, pool, _, _ = setting
    x = pool[:80]
    kwargs = {"max_iter": 20, "overshoot": 0.02, "domain": (0.0, 1.0), "classes": None}
    exact, every = at._deepfool(weak_substitute, x, batch_size=16, **kwargs)
    assert every.all()
    bounded, final = at._deepfool(weak_substitute, x, batch_size=16, keep=6, **kwargs)
    assert not final.all()  # some rows were left once they could not be among the 6 nearest
    np.testing.assert_allclose(bounded[final], exact[final], rtol=1e-4, atol=1e-8)
    assert (bounded[~final] <= exact[~final] + 1e-6).all()  # lower bounds
    assert set(np.argsort(bounded)[:6]) == set(np.argsort(exact)[:6])
    assert final[np.argsort(bounded)[:6]].all()


def test_dfal_visits_by_margin_and_stops_early_with_the_same_picks(
    digits_mlp, setting, monkeypatch
):
    _, pool, _, _ = setting
    monkeypatch.setattr(at, "_SCAN_ROWS", 64)  # stop after 64 rows in a row add none
    monkeypatch.setattr(at, "_DFAL_BATCH", 32)
    x = pool[np.argsort(at.margin(predict_proba(digits_mlp, pool)), kind="stable")]
    kwargs = {"max_iter": 20, "overshoot": 0.02, "domain": (0.0, 1.0), "classes": None}
    exact, _ = at._deepfool(digits_mlp, x, batch_size=32, **kwargs)
    scanned, final = at._deepfool(digits_mlp, x, batch_size=32, keep=8, scan=True, **kwargs)
    assert np.isnan(scanned).sum() > len(x) // 2  # most rows were never visited
    assert set(np.argsort(scanned)[:8]) == set(np.argsort(exact)[:8])
    assert final[np.argsort(scanned)[:8]].all()
    # the strategy: the same round with and without the early stop
    picks = []
    for exhaustive in (False, True):
        state = AttackState(pool=pool, n_classes=10, input_shape=(64,), domain=(0.0, 1.0))
        state.used[:40] = True
        state.queried_x.append(pool[:40])
        state.substitute = digits_mlp
        strategy = ActiveThief(selection="dfal", dfal_exhaustive=exhaustive)
        round_picks: list[int] = []
        for _ in range(3):
            part = strategy.propose(state, 10, np.random.default_rng(0))
            round_picks += part.pool_index.tolist()
            state.used[part.pool_index] = True
            state.queried_x.append(part.x)
        picks.append(round_picks)
    assert picks[0] == picks[1]
