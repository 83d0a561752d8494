"""The multiplicity study: config validation, and a tiny end-to-end run through the CLI."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from modelsteal.errors import InvalidParameterError
from modelsteal.multiplicity.cli import multiplicity
from modelsteal.multiplicity.tasks import load_config, parse_config, run_multiplicity

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("multiplicity_*.toml"))

_CATS = {
    "workclass": ["Private", "Self-emp-not-inc", "State-gov", "?"],
    "education": ["Bachelors", "HS-grad", "Masters"],
    "marital-status": ["Married-civ-spouse", "Never-married", "Divorced"],
    "occupation": ["Exec-managerial", "Craft-repair", "Sales", "?"],
    "relationship": ["Husband", "Not-in-family", "Wife", "Own-child"],
    "race": ["White", "Black", "Asian-Pac-Islander"],
    "sex": ["Male", "Female"],
    "native-country": ["United-States", "Mexico", "India"],
}


def write_fake_adult(root: Path, *, n_train: int = 400, n_test: int = 200, seed: int = 0) -> Path:
    """A small Adult-format folder (same columns, separators and label spelling)."""
    rng = np.random.default_rng(seed)
    folder = root / "adult"
    folder.mkdir(parents=True)

    def rows(n: int, test: bool) -> list[str]:
        out = []
        for _ in range(n):
            c = {k: str(rng.choice(v)) for k, v in _CATS.items()}
            age, edu, hours = rng.integers(17, 80), rng.integers(1, 17), rng.integers(10, 80)
            gain = int(rng.choice([0, 0, 0, 5000, 15000]))
            score = 0.08 * edu + 0.03 * (age - 40) + (c["sex"] == "Male") + gain / 10000
            label = ">50K" if score + rng.normal(0, 0.7) > 1.6 else "<=50K"
            fields = [
                age, c["workclass"], rng.integers(20000, 400000), c["education"], edu,
                c["marital-status"], c["occupation"], c["relationship"], c["race"], c["sex"],
                gain, int(rng.choice([0, 0, 1900])), hours, c["native-country"],
                label + ("." if test else ""),
            ]  # fmt: skip
            out.append(", ".join(str(f) for f in fields))
        return out

    (folder / "adult.data").write_text("\n".join(rows(n_train, False)) + "\n\n")
    (folder / "adult.test").write_text("|1x3 Cross validator\n" + "\n".join(rows(n_test, True)))
    return root


TINY = """
task = "adult"
seeds = [0]

[data]
max_eval = 150
sensitive = ["sex", "race"]
min_group_size = 5

[target]
arch = "mlp"
params = {{ hidden = [16] }}
epochs = 3

[attack]
budget = 120
holdout_fraction = 0.25

[surrogate]
arch = "mlp"
params = {{ hidden = [8] }}
epochs = 3

[rashomon]
samplers = {samplers}
n_models = 3
epsilons = [0.0, 0.05]
criterion = ["loss", "fidelity"]
rc_max_samples = 60

[rashomon.dropout]
n_p = 2
p_max = 0.4

[rashomon.awp]
step_size = 0.01
max_steps = 20
"""


@pytest.fixture
def fake_data(tmp_path) -> Path:
    return write_fake_adult(tmp_path / "data")


def _tiny(tmp_path: Path, samplers: str = '["retrain", "dropout", "awp"]') -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(samplers=samplers))
    return path


def test_cli_end_to_end_writes_the_report(tmp_path, fake_data):
    app = typer.Typer()
    app.command()(multiplicity)
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app, [str(_tiny(tmp_path)), "--out", str(out), "--data-dir", str(fake_data)]
    )
    assert result.exit_code == 0, result.output
    for name in (
        "report.md",
        "summary.csv",
        "models.csv",
        "result.json",
        "rc_distribution.png",
        "fairness_vs_fidelity.png",
        "multiplicity_vs_epsilon.png",
    ):
        assert (out / name).is_file(), name
    with (out / "summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * 2 * 2  # samplers × criteria × ε
    for r in rows:
        assert 1 <= int(r["set_size"]) <= int(r["n_sampled"]) == 4
        assert float(r["fidelity_min"]) <= float(r["fidelity_max"])
        assert 1.0 <= float(r["rc_mean"]) <= 2.0
        assert float(r["sex.dp.min"]) <= float(r["sex.dp.max"])
    with (out / "models.csv").open() as fh:
        models = list(csv.DictReader(fh))
    assert len(models) == 3 * 4
    report = (out / "report.md").read_text()
    assert "group fairness by sex" in report and "group fairness by race" in report
    meta = json.loads((out / "result.json").read_text())
    assert meta["config"]["task"] == "adult" and meta["runs"][0]["n_queries"] == 120


def test_run_is_seeded_and_sets_grow_with_epsilon(tmp_path, fake_data):
    cfg = load_config(_tiny(tmp_path, '["dropout", "awp"]'))
    a = run_multiplicity(cfg, data_dir=fake_data)
    b = run_multiplicity(cfg, data_dir=fake_data)
    assert a.rows == b.rows
    for sampler in ("dropout", "awp"):
        for crit in ("loss", "fidelity"):
            sizes = [
                r["set_size"] for r in a.rows if r["sampler"] == sampler and r["criterion"] == crit
            ]
            assert sizes == sorted(sizes)
    # every AWP walk was drawn for ε = 0.05 and stays within it on the held-out loss
    awp = [r for r in a.model_rows if r["sampler"] == "awp" and not r["is_base"]]
    assert all(r["drawn_for_eps"] == 0.05 and r["in_set_from_eps_loss"] <= 0.05 for r in awp)
    # the ε = 0 loss set with reference "base" always holds h0
    zero = [r for r in a.rows if r["epsilon"] == 0.0 and r["criterion"] == "loss"]
    assert all(r["set_size"] >= 1 for r in zero)


def test_cli_reports_a_bad_key_and_exits_2(tmp_path):
    app = typer.Typer()
    app.command()(multiplicity)
    path = tmp_path / "bad.toml"
    path.write_text('task = "adult"\n[attack]\nbudgett = 10\n')
    result = CliRunner().invoke(app, [str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "attack.budgett" in result.output


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({}, "'task' setting .* is missing"),
        ({"task": "mnist"}, "'task' setting .* must be one of 'adult'"),
        ({"task": "adult", "sedes": [0]}, "Unknown key 'sedes' in the top level"),
        ({"task": "adult", "seeds": 3}, "'seeds' setting"),
        ({"task": "adult", "seeds": [-1]}, "'seeds' setting"),
        ({"task": "adult", "data": {"max_eval": 1}}, "'data.max_eval' setting"),
        ({"task": "adult", "data": {"sensitive": "sex"}}, "'data.sensitive' setting"),
        ({"task": "adult", "data": 3}, "'data' setting .* must be a table"),
        ({"task": "adult", "target": {"arch": "resnet"}}, "'target.arch' setting"),
        ({"task": "adult", "target": {"params": 3}}, "'target.params' setting"),
        ({"task": "adult", "surrogate": {"epochs": 0}}, "'surrogate.epochs' setting"),
        ({"task": "adult", "attack": {"budget": "many"}}, "'attack.budget' setting"),
        ({"task": "adult", "attack": {"answers": "logits"}}, "'attack.answers' setting"),
        (
            {"task": "adult", "attack": {"holdout_fraction": 1.0}},
            "'attack.holdout_fraction' setting",
        ),
        ({"task": "adult", "rashomon": {"samplers": ["bagging"]}}, "'rashomon.samplers' setting"),
        ({"task": "adult", "rashomon": {"samplers": []}}, "'rashomon.samplers' setting"),
        ({"task": "adult", "rashomon": {"epsilons": [-0.1]}}, "'rashomon.epsilons' setting"),
        ({"task": "adult", "rashomon": {"criterion": "mse"}}, "'rashomon.criterion' setting"),
        ({"task": "adult", "rashomon": {"reference": "h1"}}, "'rashomon.reference' setting"),
        (
            {"task": "adult", "rashomon": {"dropout": {"p": 0.1}}},
            r"Unknown key 'rashomon.dropout.p' in \[rashomon.dropout\]",
        ),
        (
            {"task": "adult", "rashomon": {"dropout": {"kind": "bernoulli", "p_max": 1.0}}},
            "'rashomon.dropout.p_max' setting",
        ),
        (
            {"task": "adult", "rashomon": {"awp": {"direction": "down"}}},
            "'rashomon.awp.direction' setting",
        ),
    ],
)
def test_config_errors_name_the_key(raw, match):
    with pytest.raises(InvalidParameterError, match=match):
        parse_config(raw, source="t.toml")


def test_load_config_file_errors(tmp_path):
    with pytest.raises(InvalidParameterError, match="No multiplicity config"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("task = \n")
    with pytest.raises(InvalidParameterError, match="not valid TOML"):
        load_config(bad)


def test_defaults_and_single_criterion():
    cfg = parse_config({"task": "compas", "rashomon": {"criterion": "fidelity"}})
    assert cfg.rashomon.criterion == ("fidelity",)
    assert cfg.seeds == (0,) and cfg.rashomon.samplers == ("retrain", "dropout", "awp")
    assert cfg.as_dict()["task"] == "compas"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_example_configs_are_valid(path):
    cfg = load_config(path)
    assert path.stem == f"multiplicity_{cfg.task}"


def test_budget_larger_than_the_pool_names_the_key(tmp_path, fake_data):
    raw = {
        "task": "adult",
        "attack": {"budget": 10_000},
        "rashomon": {"samplers": ["dropout"], "n_models": 1},
        "target": {"epochs": 1},
    }
    with pytest.raises(InvalidParameterError, match="'attack.budget' setting"):
        run_multiplicity(parse_config(raw), data_dir=fake_data)


def test_unknown_sensitive_feature_names_the_key(tmp_path, fake_data):
    raw = {"task": "adult", "data": {"sensitive": ["age"]}, "target": {"epochs": 1}}
    with pytest.raises(InvalidParameterError, match="'data.sensitive' setting .* 'age'"):
        run_multiplicity(parse_config(raw), data_dir=fake_data)


@pytest.mark.data
def test_real_compas_tiny_run(tmp_path):
    root = os.environ.get("MODELSTEAL_DATA") or str(ROOT.parent / "shared" / "datasets")
    if not (Path(root) / "compas" / "compas-scores-two-years.csv").is_file():
        pytest.skip("the COMPAS file is not in the data folder")
    raw = {
        "task": "compas",
        "data": {"sensitive": ["race"], "min_group_size": 50},
        "target": {"epochs": 5, "params": {"hidden": [16]}},
        "surrogate": {"epochs": 5, "params": {"hidden": [8]}},
        "attack": {"budget": 300},
        "rashomon": {"samplers": ["dropout"], "n_models": 4, "epsilons": [0.0, 0.02]},
    }
    result = run_multiplicity(parse_config(raw), data_dir=root)
    assert result.runs[0].n_eval == 1543  # 25% of the 6,172 rows kept by ProPublica's filter
    assert 0.5 < result.runs[0].target_accuracy < 0.8
    assert {r["sampler"] for r in result.rows} == {"dropout"}
    assert "race.dp.target" in result.rows[0]
