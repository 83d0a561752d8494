"""ρ against budget and side information (model class, data distribution): properties and CLI."""

from __future__ import annotations

import json

import pytest

from modelsteal.errors import InvalidParameterError
from modelsteal.privacy import LEVELS, side_information_curve

P = 4
LINEAR_BUDGETS = (1, 2, 3, 4, 5, 8, 20)
DIGITS_BUDGETS = (10, 40)
DIGITS_ARGS = {"budgets": DIGITS_BUDGETS, "seeds": 2, "n_boot": 50, "epsilons": (0.1, 0.5)}


@pytest.fixture(scope="module")
def digits_rows():
    return side_information_curve("digits", **DIGITS_ARGS)


@pytest.fixture(scope="module")
def linear_rows():
    return side_information_curve("linear", LINEAR_BUDGETS, p=P, seeds=3, n_boot=50)


def _cell(rows, level, budget):
    (row,) = [r for r in rows if r["level"] == level and r["budget"] == budget]
    return row


@pytest.mark.parametrize(
    ("rows_name", "budgets"), [("digits_rows", DIGITS_BUDGETS), ("linear_rows", LINEAR_BUDGETS)]
)
def test_rows_cover_every_level_and_budget(request, rows_name, budgets):
    rows = request.getfixturevalue(rows_name)
    assert [(r["level"], r["budget"]) for r in rows] == [(lv, b) for lv in LEVELS for b in budgets]
    for r in rows:
        assert (r["class_known"], r["distribution_known"]) == LEVELS[r["level"]]
        # Every imitation asked exactly its budget, as counted by the module's API.
        assert r["queries"] == r["budget"]
        assert len(r["rhos"]) == r["seeds"]
        assert r["rho_min"] <= r["rho"] <= r["rho_max"]
        assert r["low"] <= r["rho"] <= r["high"]
        ps = [e["p"] for e in r["privacy"]]
        assert ps == sorted(ps)  # P(ρ ≤ ε) cannot fall as ε grows
        for e in r["privacy"]:
            assert 0 <= e["low"] <= e["p"] <= e["high"] <= 1 and e["r"] == r["seeds"]
    json.dumps(rows)  # plain values only


def test_digits_rho_is_a_disagreement_rate(digits_rows):
    for r in digits_rows:
        assert all(0.0 <= v <= 1.0 for v in r["rhos"])
        assert 0.0 <= r["low"] <= r["high"] <= 1.0
    assert 0.5 < digits_rows[0]["module_score"] <= 1.0


def test_linear_known_class_is_exact_from_p_queries_on_any_distribution(linear_rows):
    for level in ("both", "class only"):
        for b in LINEAR_BUDGETS:
            row = _cell(linear_rows, level, b)
            if b >= P:
                assert row["rho_max"] <= 1e-8, (level, b, row["rhos"])
                assert all(e["p"] == 1.0 for e in row["privacy"])
            else:
                # Fewer queries than features leave part of the coefficients unseen.
                assert row["rho_min"] > 1e-6, (level, b, row["rhos"])


def test_linear_unknown_class_never_reaches_zero(linear_rows):
    for level in ("distribution only", "neither"):
        for b in LINEAR_BUDGETS:
            assert _cell(linear_rows, level, b)["rho_min"] > 1e-6


@pytest.mark.parametrize("p", [2, 12])
def test_linear_exactness_threshold_follows_p(p):
    rows = side_information_curve("linear", (p - 1, p), p=p, seeds=2, n_boot=20)
    for level in ("both", "class only"):
        assert _cell(rows, level, p - 1)["rho_min"] > 1e-6
        assert _cell(rows, level, p)["rho_max"] <= 1e-8


def test_same_call_gives_identical_rows(digits_rows, linear_rows):
    assert side_information_curve("digits", **DIGITS_ARGS) == digits_rows
    again = side_information_curve("linear", LINEAR_BUDGETS, p=P, seeds=3, n_boot=50)
    assert again == linear_rows
    other = side_information_curve("linear", LINEAR_BUDGETS, p=P, seeds=3, n_boot=50, seed=1)
    assert [r["rhos"] for r in other] != [r["rhos"] for r in linear_rows]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "mnist"}, r"'task' parameter of side_information_curve .* Got 'mnist'"),
        ({"budgets": ()}, "'budgets' parameter of side_information_curve must hold at least"),
        ({"budgets": (5, 0)}, r"'budgets' parameter .* \[1, inf\)\. Got 0 instead"),
        ({"budgets": (-3,)}, r"'budgets' parameter .* Got -3 instead"),
        ({"seeds": 0}, r"'seeds' parameter of side_information_curve .* Got 0 instead"),
        ({"epsilons": (0.1, -1.0)}, r"'epsilons' parameter .* Got -1.0 instead"),
        ({"n_boot": 0}, "'n_boot' parameter"),
        ({"task": "linear", "p": 1}, r"'p' parameter .* \[2, inf\)\. Got 1 instead"),
        ({"task": "digits", "p": 5}, "'p' parameter of side_information_curve applies to"),
        (
            {"task": "digits", "budgets": (10, 5000)},
            r"\[1, 944\] for task='digits' .* Got 5000 instead",
        ),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, match):
    kwargs = {"task": "linear", "budgets": (2,), "seeds": 1, "n_boot": 10, **kwargs}
    with pytest.raises(InvalidParameterError, match=match):
        side_information_curve(**kwargs)


def test_cli_side_info_prints_tables_and_writes_json(privacy_cli, tmp_path):
    out = tmp_path / "side.json"
    result, text = privacy_cli(
        "side-info",
        *("--task", "linear", "--p", 3, "--budgets", "2,3,6", "--seeds", 2),
        *("--epsilons", "0.01,0.5", "--n-boot", 20, "--out", out),
    )
    assert result.exit_code == 0, text
    for word in ("Side information (linear)", "distribution only", "neither", "ε = 0.5", "2/2"):
        assert word in text
    rows = json.loads(out.read_text())
    assert [(r["level"], r["budget"]) for r in rows] == [
        (lv, b) for lv in LEVELS for b in (2, 3, 6)
    ]
    assert [e["epsilon"] for e in rows[0]["privacy"]] == [0.01, 0.5]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("side-info", "--task", "cifar"), "'task' parameter of side_information_curve"),
        (("side-info", "--task", "linear", "--budgets", "5,x"), "comma-separated ints"),
        (("side-info", "--task", "linear", "--budgets", "0,5"), "'budgets' parameter"),
        (("side-info", "--task", "linear", "--seeds", 0), "'seeds' parameter"),
        (("side-info", "--task", "linear", "--epsilons", "a"), "comma-separated numbers"),
    ],
)
def test_cli_side_info_errors_are_one_clear_line(privacy_cli, args, message):
    result, text = privacy_cli(*args)
    assert result.exit_code == 2
    assert message in " ".join(text.split())
