"""Experiment grids: config validation, expansion, the resumable store, backends, reports, audit."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from modelsteal.experiments import (
    ConfigError,
    ResultStore,
    load_config,
    parse_config,
    run_grid,
    write_report,
)
from modelsteal.experiments.audit import audit_config, to_toml

SMALL = """
name = "small"
seeds = [0]

[data]
name = "digits"
pool_fraction = 0.7
test_fraction = 0.2

[target]
arch = "logreg"
epochs = 20

[attack]
budgets = [60, 120]
params = { epochs = 5, min_steps = 50 }

[[defenses]]
name = "none"

[[defenses]]
name = "modelguard_s"
label = "ModelGuard-S"
sweep = { epsilon = [0.5, 1.0] }

[[attacks]]
label = "Naive"
recipe = "knockoff"

[[attacks]]
label = "Partial Bayes"
recipe = "pbayes"
params = { samples_per_query = 5 }
"""


def write(tmp_path: Path, text: str = SMALL, name: str = "small.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def strip_times(value):
    if isinstance(value, dict):
        return {k: strip_times(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [strip_times(v) for v in value]
    return value


def test_expansion_counts_keys_and_labels(tmp_path):
    cfg = load_config(write(tmp_path))
    cells = cfg.cells()
    # 3 defense settings (none + 2 sweep values): 3 utility cells + 3 × 2 attacks × 1 seed.
    assert [c.kind for c in cells].count("utility") == 3
    assert [c.kind for c in cells].count("attack") == 6
    assert len({c.key for c in cells}) == len(cells)
    assert cells == load_config(write(tmp_path)).cells()  # deterministic
    labels = {c.labels["defense"] for c in cells}
    assert labels == {"none", "ModelGuard-S (epsilon=0.5)", "ModelGuard-S (epsilon=1.0)"}
    # Adaptive recipes are not told the defense in the spec: the runner injects it.
    pbayes = [c for c in cells if c.spec.get("recipe") == "pbayes"]
    assert all(c.spec["params"]["samples_per_query"] == 5 for c in pbayes)
    assert all(c.spec["params"]["epochs"] == 5 for c in pbayes)
    # A label is cosmetic: renaming it keeps every key.
    renamed = load_config(write(tmp_path, SMALL.replace('"Naive"', '"Plain"'), "r.toml")).cells()
    assert {c.key for c in renamed} == {c.key for c in cells}


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            ('name = "none"', 'name = "nonsense"'),
            r"defenses\[0\]\.name: Unknown defense 'nonsense'",
        ),
        (('recipe = "knockoff"', 'recipe = "knockof"'), r"attacks\[0\]\.recipe: Unknown recipe"),
        (("budgets = [60, 120]", "budgets = [0]"), r"attack\.budgets\[0\] must be an int >= 1"),
        (("epsilon = [0.5, 1.0]", "epsilon = [-1.0]"), r"defenses\[1\]\.params: .*epsilon"),
        (("[target]", "[target]\nepochz = 3"), r"unknown key 'target\.epochz'"),
        (
            ("params = { samples_per_query = 5 }", "params = { sample = 5 }"),
            r"attacks\[1\]\.params: recipe 'pbayes' takes no parameter sample",
        ),
        (('name = "digits"', 'name = "digitz"'), r"data\.name 'digitz' is neither"),
        (('arch = "logreg"', 'arch = "resnet"'), r"target\.arch 'resnet' is unknown"),
        (
            ("sweep = { epsilon = [0.5, 1.0] }", "sweep = { epsilon = [0.5], delta = [1] }"),
            r"sweep one parameter",
        ),
    ],
)
def test_config_errors_name_the_key(tmp_path, edit, match):
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, SMALL.replace(*edit)))


def test_config_errors_missing_tables_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match=r"missing \[attacks\]"):
        parse_config({"data": {"name": "digits"}, "defenses": [{"name": "none"}]})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "name = ", "bad.toml"))
    with pytest.raises(ConfigError, match="No config file"):
        load_config(tmp_path / "absent.toml")
    strategy_on_fixed = (
        SMALL + '\n[[strategies]]\nname = "jbda_tr"\n\n[[attacks]]\nrecipe = "jbda"\n'
    )
    with pytest.raises(ConfigError, match=r"attacks\[2\] \(recipe 'jbda'\) cannot take"):
        load_config(write(tmp_path, strategy_on_fixed, "s.toml"))


def test_grid_runs_resumes_and_reports(tmp_path):
    cfg = load_config(write(tmp_path))
    out = tmp_path / "run"
    seen = []
    first = run_grid(cfg, out, progress=lambda c, r, e, n, t: seen.append((c.key, e)))
    assert (first.total, first.finished, first.failed, first.skipped) == (9, 9, 0, 0)
    assert all(e is None for _, e in seen)
    rows = ResultStore(out / "results.sqlite").rows()
    assert len(rows) == 9 and len({r["key"] for r in rows}) == 9
    for r in rows:
        res = r["result"]
        if r["kind"] == "attack":
            assert res["queries"] <= 120  # the budget is never exceeded
            assert [h["queries"] for h in res["history"]] == [60, 120]
            assert 0.0 <= res["accuracy"] <= 1.0 and 0.0 <= res["fidelity"] <= 1.0
            if r["spec"]["defense"]["name"] == "modelguard_s":
                eps = r["spec"]["defense"]["params"]["epsilon"]
                assert res["queried_max_l1"] <= eps + 1e-9
                assert res["centroids"] >= 1
        else:
            assert 0.0 <= res["protected_accuracy"] <= 1.0
            if r["spec"]["defense"]["name"] == "modelguard_s":
                growth = [g["centroids"] for g in res["centroid_growth"]]
                assert growth == sorted(growth)  # centroids only ever grow
    again = run_grid(cfg, out)
    assert (again.skipped, again.finished) == (9, 0)
    paths = write_report(out)
    for key in (
        "markdown",
        "html",
        "matrix_csv",
        "attacks_csv",
        "utility_csv",
        "history_csv",
        "accuracy_vs_queries",
        "privacy_utility",
        "centroids",
    ):
        assert paths[key].is_file() and paths[key].stat().st_size > 0, key
    text = paths["markdown"].read_text()
    assert "| attack | none | ModelGuard-S (epsilon=0.5) | ModelGuard-S (epsilon=1.0) |" in text
    assert "**protected accuracy**" in text


def test_failed_cell_is_recorded_and_retried(tmp_path, monkeypatch):
    from modelsteal.experiments import runner

    cfg = load_config(write(tmp_path))
    real = runner.run_cell

    def flaky(spec, **kw):
        if spec["kind"] == "attack" and spec["recipe"] == "pbayes":
            raise RuntimeError("simulated crash")
        return real(spec, **kw)

    monkeypatch.setattr(runner, "run_cell", flaky)
    first = run_grid(cfg, tmp_path / "run")
    assert (first.finished, first.failed) == (6, 3)
    failed = ResultStore(tmp_path / "run" / "results.sqlite").rows(status="failed")
    assert len(failed) == 3 and all("simulated crash" in r["error"] for r in failed)
    assert "Failed cells" in write_report(tmp_path / "run")["markdown"].read_text()
    monkeypatch.setattr(runner, "run_cell", real)
    second = run_grid(cfg, tmp_path / "run")
    assert (second.skipped, second.finished, second.failed) == (6, 3, 0)
    rows = ResultStore(tmp_path / "run" / "results.sqlite").rows(status=None)
    assert len(rows) == 9 and all(r["status"] == "done" for r in rows)


@pytest.mark.slow
def test_killed_run_resumes_with_every_cell_exactly_once(tmp_path):
    """SIGKILL the CLI mid-grid, run it again: every cell done once, none recomputed."""
    config = write(tmp_path, SMALL.replace("seeds = [0]", "seeds = [0, 1]"))
    out = tmp_path / "run"
    db = out / "results.sqlite"
    cmd = [
        sys.executable,
        "-m",
        "modelsteal.cli",
        "run",
        str(config),
        "--out",
        str(out),
        "--no-report",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )

    def done() -> int:
        if not db.is_file():
            return 0
        try:
            with sqlite3.connect(db, timeout=5) as con:
                return con.execute("SELECT COUNT(*) FROM cells WHERE status='done'").fetchone()[0]
        except sqlite3.OperationalError:
            return 0

    deadline = time.time() + 240
    while done() < 4 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the grid finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = done()
    total = len(load_config(config).cells())
    assert 4 <= before < total
    second = run_grid(load_config(config), out)
    assert second.skipped == before
    assert second.finished == total - before and second.failed == 0
    rows = ResultStore(db).rows(status=None)
    assert len(rows) == total == len({r["key"] for r in rows})
    assert all(r["status"] == "done" and r["attempts"] == 1 for r in rows)


def test_workers_and_ray_give_the_same_results_as_one_process(tmp_path):
    text = SMALL.replace("sweep = { epsilon = [0.5, 1.0] }", "params = { epsilon = 1.0 }")
    cfg = load_config(write(tmp_path, text))

    def results(out: Path) -> dict[str, dict]:
        return {
            r["key"]: strip_times(r["result"]) for r in ResultStore(out / "results.sqlite").rows()
        }

    run_grid(cfg, tmp_path / "inline")
    reference = results(tmp_path / "inline")
    assert len(reference) == 6
    pytest.importorskip("ray")
    run_grid(cfg, tmp_path / "ray", backend="ray", workers=2)
    assert results(tmp_path / "ray") == reference
    run_grid(cfg, tmp_path / "procs", workers=2)
    assert results(tmp_path / "procs") == reference


def test_bad_run_arguments(tmp_path):
    cfg = load_config(write(tmp_path))
    with pytest.raises(ValueError, match="'backend' parameter of run_grid must be one of"):
        run_grid(cfg, tmp_path / "x", backend="spark")
    with pytest.raises(ValueError, match="'workers' parameter of run_grid must be an int >= 1"):
        run_grid(cfg, tmp_path / "x", workers=0)
    with pytest.raises(FileNotFoundError, match="No result store"):
        write_report(tmp_path / "nothing")


def test_am_needs_ood_data(tmp_path):
    text = SMALL.replace('name = "none"', 'name = "am"\nparams = { tau = 0.9 }')
    summary = None
    with pytest.raises(ValueError, match="set data.ood"):
        summary = run_grid(load_config(write(tmp_path, text)), tmp_path / "run")
    assert summary is None


def test_to_toml_round_trips():
    import tomllib

    raw = {
        "name": "x",
        "seeds": [0, 1],
        "data": {"name": 'a b"c', "ratio": 0.5},
        "defenses": [{"name": "mad", "params": {"epsilon": 1.0, "oracle": "argmax"}}],
        "flag": True,
    }
    assert tomllib.loads(to_toml(raw)) == raw


def test_audit_on_a_saved_sklearn_model_and_csv(tmp_path):
    """The provider's audit: a scikit-learn model file and a CSV, end to end from the CLI."""
    import joblib
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from typer.testing import CliRunner

    from modelsteal.cli import app

    X, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X[:250], y[:250])
    joblib.dump(model, tmp_path / "model.joblib")
    header = ",".join([f"f{i}" for i in range(X.shape[1])] + ["label"])
    rows = np.column_stack([X[250:], y[250:]])
    np.savetxt(
        tmp_path / "data.csv",
        rows,
        delimiter=",",
        header=header,
        comments="",
        fmt=["%.6g"] * X.shape[1] + ["%d"],
    )
    out = tmp_path / "audit"
    result = CliRunner().invoke(
        app,
        [
            "audit",
            "--model",
            str(tmp_path / "model.joblib"),
            "--data",
            str(tmp_path / "data.csv"),
            "--out",
            str(out),
            "--defenses",
            "top1,modelguard_s",
            "--budgets",
            "40,120",
        ],
    )
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    assert "| attack | None | top1 | modelguard_s |" in text
    assert (out / "audit.toml").is_file() and (out / "report.html").is_file()
    # The generated grid is an ordinary config: `modelsteal run` accepts it as it is.
    assert len(load_config(out / "audit.toml").cells()) == 3 + 3 * 3
    with pytest.raises(Exception, match="Unknown defense 'nope'"):
        audit_config(tmp_path / "model.joblib", tmp_path / "data.csv", out, defenses=["nope"])


def test_only_runs_the_matching_cells_and_the_rest_later(tmp_path):
    cfg = load_config(write(tmp_path))
    first = run_grid(cfg, tmp_path / "run", only={"attack": "Naive"})
    # 3 utility cells (no attack label) + 3 naive cells; the 3 partial Bayes cells wait.
    assert (first.total, first.finished, first.skipped) == (9, 6, 0)
    kinds = sorted(
        r["labels"].get("attack", "-")
        for r in ResultStore(tmp_path / "run" / "results.sqlite").rows()
    )
    assert kinds == ["-", "-", "-", "Naive", "Naive", "Naive"]
    rest = run_grid(cfg, tmp_path / "run")
    assert (rest.skipped, rest.finished) == (6, 3)
    with pytest.raises(ValueError, match="cells have no label 'colour'"):
        run_grid(cfg, tmp_path / "run", only={"colour": "red"})


def test_activethief_cells_keep_every_round(tmp_path):
    text = (
        SMALL.split("[[defenses]]")[0].replace("budgets = [60, 120]", "budgets = [40, 80, 120]")
        + """
[[defenses]]
name = "none"

[[attacks]]
label = "entropy"
recipe = "activethief"
params = { selection = "entropy", initial_seed = 40, k = 40 }
"""
    )
    out = tmp_path / "run"
    run_grid(load_config(write(tmp_path, text, "at.toml")), out)
    (row,) = [r for r in ResultStore(out / "results.sqlite").rows() if r["kind"] == "attack"]
    res = row["result"]
    assert [h["queries"] for h in res["history"]] == [40, 80, 120]  # measured at every round end
    rounds = res["activethief"]
    assert rounds["round_queries"] == [40, 80]  # the selection rounds start at these counts
    assert len(rounds["batch_entropy"]) == 2 and all(h >= 0 for h in rounds["batch_entropy"])
    assert rounds["stop_at"] is None


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[1] / "configs").glob("*.toml")), ids=lambda p: p.name
)
def test_shipped_configs_are_valid(path):
    """Every config in configs/ parses and expands (no data is loaded)."""
    if path.name.startswith("multiplicity_"):
        from modelsteal.multiplicity.tasks import load_config as load_task_config

        load_task_config(path)
        return
    config = load_config(path)
    cells = config.cells()
    assert cells and len({cell.key for cell in cells}) == len(cells)
