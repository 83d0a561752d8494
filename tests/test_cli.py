"""End to end from the command line: train, steal, a user's CSV and scikit-learn model, errors."""

from __future__ import annotations

import csv
import json

import joblib
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from typer.testing import CliRunner

from modelsteal.cli import app
from modelsteal.models import load_model

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result, result.output


def test_list_shows_every_registry():
    result, out = invoke("list")
    assert result.exit_code == 0, out
    for name in ("digits", "mnist", "kmnist", "mlp", "cnn", "knockoff_orekondy_2019", "random"):
        assert name in out


def test_train_then_steal_on_digits(tmp_path):
    model = tmp_path / "target.pt"
    result, out = invoke(
        "train", "--data", "digits", "--model", "mlp", "--epochs", "5", "--out", model
    )
    assert result.exit_code == 0, out
    assert "test accuracy" in out and model.is_file()
    _, info = load_model(model)
    assert info.metadata["data"] == "digits" and info.metadata["test_accuracy"] > 0.8

    report, sub = tmp_path / "report", tmp_path / "sub.pt"
    result, out = invoke(
        "steal",
        "--target",
        model,
        "--budgets",
        "50,200",
        "--epochs",
        "3",
        "--out",
        report,
        "--save-substitute",
        sub,
    )
    assert result.exit_code == 0, out
    rows = list(csv.DictReader((report / "history.csv").open()))
    assert [int(r["queries"]) for r in rows] == [50, 200]
    assert all(0.0 <= float(r["fidelity"]) <= 1.0 for r in rows)
    assert (report / "curves.png").stat().st_size > 1000
    assert json.loads((report / "run.json").read_text())["meta"]["data"] == "digits"
    _, sub_info = load_model(sub)
    assert sub_info.metadata["queries"] == 200


@pytest.fixture
def user_csv(tmp_path, digits):
    """A user's own CSV with string labels and a scikit-learn model trained on it."""
    X, y = digits
    names = np.array(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )
    path = tmp_path / "mine.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([f"px{i}" for i in range(64)] + ["digit"])
        for row, label in zip(X, names[y], strict=True):
            writer.writerow([f"{v:.4f}" for v in row] + [label])
    model = RandomForestClassifier(n_estimators=30, random_state=0).fit(X, names[y])
    joblib.dump(model, tmp_path / "forest.joblib")
    return path, tmp_path / "forest.joblib"


def test_user_csv_and_sklearn_model_end_to_end(user_csv, tmp_path):
    data, model = user_csv
    result, out = invoke(
        "steal",
        "--target",
        model,
        "--data",
        data,
        "--label-column",
        "digit",
        "--budgets",
        "100,400",
        "--epochs",
        "3",
        "--out",
        tmp_path / "r",
    )
    assert result.exit_code == 0, out
    rows = list(csv.DictReader((tmp_path / "r" / "history.csv").open()))
    assert float(rows[-1]["fidelity"]) > 0.7
    result, out = invoke(
        "train",
        "--data",
        data,
        "--label-column",
        "digit",
        "--epochs",
        "3",
        "--out",
        tmp_path / "own.pt",
    )
    assert result.exit_code == 0, out


def test_cli_errors_are_one_clear_line(user_csv, tmp_path):
    data, model = user_csv
    cases = [
        (
            (
                "steal",
                "--target",
                model,
                "--data",
                data,
                "--label-column",
                "digit",
                "--recipe",
                "nope",
            ),
            "Unknown recipe 'nope'",
        ),
        (("steal", "--target", tmp_path / "missing.pt", "--data", "digits"), "No model file"),
        (
            (
                "steal",
                "--target",
                model,
                "--data",
                data,
                "--label-column",
                "digit",
                "--budgets",
                "ten",
            ),
            "comma-separated list",
        ),
        (
            ("steal", "--target", model, "--data", "breast_cancer"),
            "takes 64 features but input_shape (30,)",
        ),
        (("steal", "--target", model, "--data", data), "label column 'label'"),
        (("train", "--data", "nonexistent", "--out", tmp_path / "x.pt"), "Unknown data set"),
        (("list", "widgets"), "Unknown registry 'widgets'"),
    ]
    for args, message in cases:
        result, out = invoke(*args)
        assert result.exit_code == 2, (args, out)
        assert message in " ".join(out.split()), (args, out)
        assert "Traceback" not in out


def test_demo_writes_table_and_plot(tmp_path):
    result, out = invoke("demo", "--out", tmp_path / "demo")
    assert result.exit_code == 0, out
    assert "fidelity" in out and "1000" in out
    for name in ("history.csv", "history.md", "curves.png", "run.json"):
        assert (tmp_path / "demo" / name).is_file()
    rows = list(csv.DictReader((tmp_path / "demo" / "history.csv").open()))
    assert len(rows) == 12
    best = max(float(r["fidelity"]) for r in rows)
    assert best > 0.9


@pytest.fixture(scope="module")
def digits_target(tmp_path_factory):
    """A digits MLP bundle trained once through the CLI, for the tests that only use it."""
    model = tmp_path_factory.mktemp("cli") / "target.pt"
    result, out = invoke(
        "train", "--data", "digits", "--model", "mlp", "--epochs", "3", "--out", model
    )
    assert result.exit_code == 0, out
    return model


def test_defend_prints_and_writes_utility(digits_target, tmp_path):
    model = digits_target
    result, out = invoke(
        "defend",
        "--target",
        model,
        "--defense",
        "reverse_sigmoid",
        "--sweep",
        "beta=0.0,0.5",
        "--ood",
        "none",
        "--out",
        tmp_path / "u",
    )
    assert result.exit_code == 0, out
    rows = list(csv.DictReader((tmp_path / "u" / "utility.csv").open()))
    assert [float(r["beta"]) for r in rows] == [0.0, 0.5]
    assert float(rows[0]["max_l1"]) < 1e-9 < float(rows[1]["max_l1"])
    assert rows[0]["protected_accuracy"] == rows[0]["clean_accuracy"]
    result, out = invoke(
        "defend", "--target", model, "--defense", "rounding", "--param", "decimals=-2"
    )
    assert result.exit_code == 2
    assert "'decimals' parameter of Rounding must be an int in [0, 12]. Got -2" in " ".join(
        out.split()
    )
    result, out = invoke("list", "defenses")
    assert result.exit_code == 0 and "reverse_sigmoid" in out


def test_steal_passes_recipe_parameters(digits_target, tmp_path):
    model = digits_target
    result, out = invoke(
        "steal",
        "--target",
        model,
        "--recipe",
        "activethief",
        "--param",
        "selection=entropy+kcenter",
        "--param",
        "seeding=cluster",
        "--budgets",
        "60,120",
        "--epochs",
        "2",
        "--out",
        tmp_path / "r",
    )
    assert result.exit_code == 0, out
    rows = list(csv.DictReader((tmp_path / "r" / "history.csv").open()))
    assert [int(r["queries"]) for r in rows] == [60, 120]
    result, out = invoke(
        "steal",
        "--target",
        model,
        "--recipe",
        "activethief",
        "--param",
        "selection=best",
        "--budgets",
        "60",
    )
    assert result.exit_code == 2 and "'selection' parameter" in " ".join(out.split())


def test_steal_strategy_and_seeding_options(digits_target, tmp_path):
    args = ("steal", "--target", digits_target, "--budgets", "60,120", "--epochs", "2")
    result, out = invoke(
        *args,
        "--recipe",
        "activethief",
        "--strategy",
        "entropy+kcenter",
        "--seeding",
        "cluster",
        "--out",
        tmp_path / "r",
    )
    assert result.exit_code == 0, out
    rows = list(csv.DictReader((tmp_path / "r" / "history.csv").open()))
    assert [int(r["queries"]) for r in rows] == [60, 120]
    result, out = invoke(*args, "--recipe", "knockoff", "--seeding", "cluster")
    assert result.exit_code == 2
    assert "has no 'seeding' parameter" in " ".join(out.split())
